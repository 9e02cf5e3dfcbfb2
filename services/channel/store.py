"""All SQL of the channel service. Every function takes a connection (or a transaction's connection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.channel.domain import ChannelFields, Cursor

__all__ = [
    "delete_role",
    "fetch_channel",
    "fetch_key",
    "fetch_role",
    "find_user",
    "insert_channel",
    "list_channels",
    "list_roles",
    "lock_channel",
    "owned_channel",
    "put_image",
    "put_role",
    "record_session_end",
    "record_session_start",
    "refresh_live",
    "reload_channel",
    "set_stream_key",
    "update_fields",
    "upsert_user",
]

Row = Any  # asyncpg.Record

# The columns domain.channel_view reads: the channel, its owner's name and both images.
_CHANNEL_SELECT = """
SELECT c.id, c.name, c.owner_id, coalesce(u.username, '') AS owner_username,
       c.title, c.description, c.category, c.tags, c.language,
       c.live_session_id, c.live_since, c.created_at, c.updated_at, c.stream_key_prefix,
       a.etag AS avatar_etag, a.content_type AS avatar_content_type, a.width AS avatar_width,
       a.height AS avatar_height, a.updated_at AS avatar_updated_at,
       b.etag AS banner_etag, b.content_type AS banner_content_type, b.width AS banner_width,
       b.height AS banner_height, b.updated_at AS banner_updated_at
FROM channels c
LEFT JOIN users u ON u.id = c.owner_id
LEFT JOIN channel_images a ON a.channel_id = c.id AND a.kind = 'avatar'
LEFT JOIN channel_images b ON b.channel_id = c.id AND b.kind = 'banner'
"""
# Constant text only; every value is a bound parameter.
_BY_NAME = _CHANNEL_SELECT + "WHERE c.name = $1"
_BY_NAME_LOCKED = _CHANNEL_SELECT + "WHERE c.name = $1 FOR UPDATE OF c"
_BY_ID = _CHANNEL_SELECT + "WHERE c.id = $1"
# Empty filters match everything; the cursor's row comparison follows the ORDER BY.
_LIST_WHERE = r"""
WHERE ($1 = '' OR c.name ILIKE $1 ESCAPE '\' OR c.title ILIKE $1 ESCAPE '\'
       OR EXISTS (SELECT 1 FROM unnest(c.tags) t WHERE t ILIKE $1 ESCAPE '\'))
  AND ($2 = '' OR c.category = $2)
  AND ($3 = '' OR EXISTS (SELECT 1 FROM unnest(c.tags) t WHERE lower(t) = lower($3)))
  AND ($4::boolean IS NULL OR (c.live_session_id IS NOT NULL) = $4)
  AND ($5::boolean IS NULL
       OR ((c.live_session_id IS NOT NULL), c.created_at, c.id) < ($5::boolean, $6::timestamptz, $7::text))
ORDER BY (c.live_session_id IS NOT NULL) DESC, c.created_at DESC, c.id DESC
LIMIT $8"""
_LIST = _CHANNEL_SELECT + _LIST_WHERE


async def upsert_user(conn: Any, *, user_id: str, username: str) -> None:
    """Remember a user's name (from identity's event or a verified token)."""
    await conn.execute(
        "INSERT INTO users (id, username) VALUES ($1, $2)"
        " ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username"
        " WHERE users.username IS DISTINCT FROM EXCLUDED.username",
        user_id,
        username,
    )


async def find_user(conn: Any, *, username: str) -> Row | None:
    """The user (id, username) with this name, ignoring case."""
    return await conn.fetchrow(
        "SELECT id, username FROM users WHERE lower(username) = lower($1) LIMIT 1", username
    )


async def owned_channel(conn: Any, *, owner_id: str) -> str | None:
    """The name of the channel a user owns, if any."""
    name: str | None = await conn.fetchval("SELECT name FROM channels WHERE owner_id = $1", owner_id)
    return name


async def insert_channel(
    conn: Any, *, channel_id: str, owner_id: str, name: str, fields: ChannelFields
) -> None:
    """Create a channel row; raises asyncpg.UniqueViolationError naming the constraint on a clash."""
    await conn.execute(
        "INSERT INTO channels (id, owner_id, name, title, description, category, tags, language)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        channel_id,
        owner_id,
        name,
        fields.title,
        fields.description,
        fields.category,
        fields.tags,
        fields.language,
    )


async def fetch_channel(conn: Any, *, name: str, lock: bool = False) -> Row | None:
    """A channel by name with its owner's name and images; `lock` holds its row until commit."""
    return await conn.fetchrow(_BY_NAME_LOCKED if lock else _BY_NAME, name)


async def reload_channel(conn: Any, *, channel_id: str) -> Row:
    """A channel this transaction has just written (so it exists)."""
    return await conn.fetchrow(_BY_ID, channel_id)


async def list_channels(
    conn: Any, *, pattern: str, category: str, tag: str, live: bool | None, after: Cursor | None, limit: int
) -> list[Row]:
    """One page in list order (live first, then newest); empty filters match everything."""
    return list(
        await conn.fetch(
            _LIST,
            pattern,
            category,
            tag,
            live,
            after.live if after else None,
            after.created_at if after else None,
            after.id if after else None,
            limit,
        )
    )


async def update_fields(conn: Any, *, channel_id: str, fields: ChannelFields) -> None:
    """Write a channel's editable fields."""
    await conn.execute(
        "UPDATE channels SET title = $2, description = $3, category = $4, tags = $5, language = $6,"
        " updated_at = now() WHERE id = $1",
        channel_id,
        fields.title,
        fields.description,
        fields.category,
        fields.tags,
        fields.language,
    )


async def set_stream_key(conn: Any, *, channel_id: str, key_hash: bytes, prefix: str) -> None:
    """Replace the channel's stream key hash (the old key stops matching at commit)."""
    await conn.execute(
        "UPDATE channels SET stream_key_hash = $2, stream_key_prefix = $3, stream_key_rotated_at = now()"
        " WHERE id = $1",
        channel_id,
        key_hash,
        prefix,
    )


async def fetch_key(conn: Any, *, name: str) -> Row | None:
    """The channel's id, owner and stream key hash."""
    return await conn.fetchrow(
        "SELECT id, owner_id, name, stream_key_hash FROM channels WHERE name = $1", name
    )


async def put_image(
    conn: Any, *, channel_id: str, kind: str, etag: str, content_type: str, width: int, height: int
) -> datetime:
    """Record the channel's new image; returns its `updated_at`."""
    updated_at: datetime = await conn.fetchval(
        "INSERT INTO channel_images (channel_id, kind, etag, content_type, width, height)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (channel_id, kind) DO UPDATE SET etag = EXCLUDED.etag,"
        " content_type = EXCLUDED.content_type, width = EXCLUDED.width, height = EXCLUDED.height,"
        " updated_at = now()"
        " RETURNING updated_at",
        channel_id,
        kind,
        etag,
        content_type,
        width,
        height,
    )
    return updated_at


async def fetch_role(conn: Any, *, channel_id: str, user_id: str) -> str | None:
    """The role a user holds on a channel, if any."""
    role: str | None = await conn.fetchval(
        "SELECT role FROM channel_roles WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
    )
    return role


async def put_role(conn: Any, *, channel_id: str, user_id: str, role: str) -> None:
    """Give a user a role on a channel."""
    await conn.execute(
        "INSERT INTO channel_roles (channel_id, user_id, role) VALUES ($1, $2, $3)",
        channel_id,
        user_id,
        role,
    )


async def delete_role(conn: Any, *, channel_id: str, user_id: str, role: str) -> bool:
    """Take a role away; False when the user did not hold it."""
    result: str = await conn.execute(
        "DELETE FROM channel_roles WHERE channel_id = $1 AND user_id = $2 AND role = $3",
        channel_id,
        user_id,
        role,
    )
    return result != "DELETE 0"


async def list_roles(conn: Any, *, channel_id: str, role: str) -> list[Row]:
    """Holders of a role on a channel, oldest first."""
    return list(
        await conn.fetch(
            "SELECT r.user_id, coalesce(u.username, '') AS username, r.role, r.granted_at"
            " FROM channel_roles r LEFT JOIN users u ON u.id = r.user_id"
            " WHERE r.channel_id = $1 AND r.role = $2 ORDER BY r.granted_at, r.user_id",
            channel_id,
            role,
        )
    )


async def lock_channel(conn: Any, *, channel_id: str) -> bool:
    """Hold the channel's row until commit (so its live state is computed one event at a time);
    False when there is no such channel."""
    found = await conn.fetchval("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE", channel_id)
    return found is not None


async def record_session_start(conn: Any, *, session_id: str, channel_id: str, started_at: datetime) -> None:
    """Note a live session (again: a repeat, or a start arriving after its end, changes nothing)."""
    await conn.execute(
        "INSERT INTO live_sessions (session_id, channel_id, started_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (session_id) DO NOTHING",
        session_id,
        channel_id,
        started_at,
    )


async def record_session_end(
    conn: Any, *, session_id: str, channel_id: str, started_at: datetime, ended_at: datetime
) -> None:
    """Close a live session, creating it closed when its start was never seen."""
    await conn.execute(
        "INSERT INTO live_sessions (session_id, channel_id, started_at, ended_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (session_id) DO UPDATE SET ended_at = EXCLUDED.ended_at",
        session_id,
        channel_id,
        started_at,
        ended_at,
    )


async def refresh_live(conn: Any, *, channel_id: str) -> Row:
    """Set the channel live with its newest open session, or offline; returns the result."""
    return await conn.fetchrow(
        "UPDATE channels SET (live_session_id, live_since) = ("
        "  SELECT session_id, started_at FROM live_sessions"
        "  WHERE channel_id = $1 AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1)"
        " WHERE id = $1 RETURNING live_session_id, live_since",
        channel_id,
    )


async def list_emotes(conn: Any, *, channel_id: str) -> list[Row]:
    """A channel's emotes ('' for the global set), oldest first."""
    rows: list[Row] = await conn.fetch(
        "SELECT * FROM emotes WHERE channel_id = $1 ORDER BY created_at, code", channel_id
    )
    return rows


async def emote_code_taken(conn: Any, *, channel_id: str, code: str) -> bool:
    """True when `code` is used by the channel or by the global set (case-insensitive)."""
    found = await conn.fetchval(
        "SELECT 1 FROM emotes WHERE channel_id IN ('', $1) AND lower(code) = lower($2)", channel_id, code
    )
    return found is not None


async def insert_emote(
    conn: Any, *, emote_id: str, channel_id: str, code: str, tier: int, animated: bool, content_type: str
) -> Row:
    """Add an emote; returns its row."""
    return await conn.fetchrow(
        "INSERT INTO emotes (id, channel_id, code, tier, animated, content_type)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        emote_id,
        channel_id,
        code,
        tier,
        animated,
        content_type,
    )


async def delete_emote(conn: Any, *, channel_id: str, code: str) -> Row | None:
    """Remove an emote by code; returns the removed row."""
    return await conn.fetchrow(
        "DELETE FROM emotes WHERE channel_id = $1 AND code = $2 RETURNING *", channel_id, code
    )
