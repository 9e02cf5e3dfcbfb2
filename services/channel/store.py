"""All SQL of the channel service. Every function takes a connection (or a transaction's connection) and
returns Structs. Users and live sessions are read from the copies libs/replica.py keeps (copied_users,
copied_live_sessions; read only here); a user the copy has not seen yet has the name ''."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from asyncpg import Record

from libs.db import Connection
from proto.channel import ChannelCopy, Emote, Image, RoleMember, emote_urls
from services.channel.domain import ChannelFields, Cursor, StoredChannel, StoredKey
from services.channel.images import Processed

__all__ = [
    "channel_copy",
    "delete_emote",
    "delete_role",
    "emote_code_taken",
    "emote_exists",
    "fetch_channel",
    "fetch_key",
    "fetch_role",
    "insert_channel",
    "insert_emote",
    "list_channels",
    "list_emotes",
    "list_roles",
    "lock_channel",
    "next_version",
    "owned_channel",
    "put_image",
    "put_role",
    "refresh_live",
    "reload_channel",
    "set_stream_key",
    "update_fields",
]

T = TypeVar("T", bound=msgspec.Struct)

_IMAGE_FIELDS = ("etag", "content_type", "width", "height", "updated_at")
# The columns StoredChannel reads: the channel, its owner's name and both images.
_CHANNEL_SELECT = """
SELECT c.id, c.name, c.owner_id, coalesce(u.username, '') AS owner_username,
       c.title, c.description, c.category, c.tags, c.language, c.version,
       c.live_session_id, c.live_since, c.created_at, c.updated_at, c.stream_key_prefix,
       a.etag AS avatar_etag, a.content_type AS avatar_content_type, a.width AS avatar_width,
       a.height AS avatar_height, a.updated_at AS avatar_updated_at,
       b.etag AS banner_etag, b.content_type AS banner_content_type, b.width AS banner_width,
       b.height AS banner_height, b.updated_at AS banner_updated_at
FROM channels c
LEFT JOIN copied_users u ON u.user_id = c.owner_id
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
_COPY_SELECT = "SELECT id AS channel_id, name, owner_id, version FROM channels "
_COPY_BY_ID = _COPY_SELECT + "WHERE id = $1"
_COPY_BY_NAME = _COPY_SELECT + "WHERE name = lower($1)"
# An Emote's stored columns, spelled out in each statement (its urls follow from its id).
_EMOTES_OF = (
    "SELECT id, channel_id, code, tier, animated, content_type, created_at"
    " FROM emotes WHERE channel_id = $1 ORDER BY created_at, code"
)
_INSERT_EMOTE = (
    "INSERT INTO emotes (id, channel_id, code, tier, animated, content_type)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
    " RETURNING id, channel_id, code, tier, animated, content_type, created_at"
)
_DELETE_EMOTE = (
    "DELETE FROM emotes WHERE channel_id = $1 AND code = $2"
    " RETURNING id, channel_id, code, tier, animated, content_type, created_at"
)


def _one(record: Record | None, struct: type[T]) -> T | None:
    return None if record is None else msgspec.convert(dict(record), struct)


def _emote(record: Record) -> Emote:
    return msgspec.convert({**record, "urls": emote_urls(record["id"])}, Emote)


def _channel(record: Record) -> StoredChannel:
    row = dict(record)
    for kind in ("avatar", "banner"):
        has = row[f"{kind}_etag"] is not None
        row[kind] = {f: row[f"{kind}_{f}"] for f in _IMAGE_FIELDS} if has else None
    return msgspec.convert(row, StoredChannel)


async def owned_channel(conn: Connection, *, owner_id: str) -> str | None:
    """The name of the channel a user owns, if any."""
    name: str | None = await conn.fetchval("SELECT name FROM channels WHERE owner_id = $1", owner_id)
    return name


async def insert_channel(
    conn: Connection, *, channel_id: str, owner_id: str, name: str, fields: ChannelFields
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


async def fetch_channel(conn: Connection, *, name: str, lock: bool = False) -> StoredChannel | None:
    """A channel by name with its owner's name and images; `lock` holds its row until commit."""
    record = await conn.fetchrow(_BY_NAME_LOCKED if lock else _BY_NAME, name)
    return None if record is None else _channel(record)


async def reload_channel(conn: Connection, *, channel_id: str) -> StoredChannel:
    """A channel this transaction has just written (so it exists)."""
    return _channel(await conn.fetchrow(_BY_ID, channel_id))


async def list_channels(
    conn: Connection,
    *,
    pattern: str,
    category: str,
    tag: str,
    live: bool | None,
    after: Cursor | None,
    limit: int,
) -> list[StoredChannel]:
    """One page in list order (live first, then newest); empty filters match everything."""
    records = await conn.fetch(
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
    return [_channel(r) for r in records]


async def update_fields(conn: Connection, *, channel_id: str, fields: ChannelFields) -> int:
    """Write a channel's editable fields; returns the channel's new version."""
    version: int = await conn.fetchval(
        "UPDATE channels SET title = $2, description = $3, category = $4, tags = $5, language = $6,"
        " updated_at = now(), version = version + 1 WHERE id = $1 RETURNING version",
        channel_id,
        fields.title,
        fields.description,
        fields.category,
        fields.tags,
        fields.language,
    )
    return version


async def channel_copy(conn: Connection, *, by: str, value: str) -> ChannelCopy | None:
    """The channel whose `by` (channel_id, or name in any case) is `value`, as others copy it."""
    record = await conn.fetchrow(_COPY_BY_ID if by == "channel_id" else _COPY_BY_NAME, value)
    return _one(record, ChannelCopy)


async def set_stream_key(conn: Connection, *, channel_id: str, key_hash: bytes, prefix: str) -> None:
    """Replace the channel's stream key hash (the old key stops matching at commit)."""
    await conn.execute(
        "UPDATE channels SET stream_key_hash = $2, stream_key_prefix = $3, stream_key_rotated_at = now()"
        " WHERE id = $1",
        channel_id,
        key_hash,
        prefix,
    )


async def fetch_key(conn: Connection, *, name: str) -> StoredKey | None:
    """The channel's id, owner and stream key hash."""
    record = await conn.fetchrow(
        "SELECT id, owner_id, name, stream_key_hash FROM channels WHERE name = $1", name
    )
    return _one(record, StoredKey)


async def put_image(conn: Connection, *, channel_id: str, kind: str, image: Processed) -> Image:
    """Record the channel's new image (its bytes already stored); returns it as the channel now shows it."""
    record = await conn.fetchrow(
        "INSERT INTO channel_images (channel_id, kind, etag, content_type, width, height)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (channel_id, kind) DO UPDATE SET etag = EXCLUDED.etag,"
        " content_type = EXCLUDED.content_type, width = EXCLUDED.width, height = EXCLUDED.height,"
        " updated_at = now()"
        " RETURNING etag, content_type, width, height, updated_at",
        channel_id,
        kind,
        image.etag,
        image.content_type,
        image.width,
        image.height,
    )
    return msgspec.convert(dict(record), Image)


async def fetch_role(conn: Connection, *, channel_id: str, user_id: str) -> str | None:
    """The role a user holds on a channel, if any."""
    role: str | None = await conn.fetchval(
        "SELECT role FROM channel_roles WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
    )
    return role


async def put_role(conn: Connection, *, channel_id: str, user_id: str, role: str) -> None:
    """Give a user a role on a channel."""
    await conn.execute(
        "INSERT INTO channel_roles (channel_id, user_id, role) VALUES ($1, $2, $3)",
        channel_id,
        user_id,
        role,
    )


async def delete_role(conn: Connection, *, channel_id: str, user_id: str, role: str) -> bool:
    """Take a role away; False when the user did not hold it."""
    result: str = await conn.execute(
        "DELETE FROM channel_roles WHERE channel_id = $1 AND user_id = $2 AND role = $3",
        channel_id,
        user_id,
        role,
    )
    return result != "DELETE 0"


async def list_roles(conn: Connection, *, channel_id: str, role: str) -> list[RoleMember]:
    """Holders of a role on a channel, oldest first."""
    records = await conn.fetch(
        "SELECT r.user_id, coalesce(u.username, '') AS username, r.role, r.granted_at"
        " FROM channel_roles r LEFT JOIN copied_users u ON u.user_id = r.user_id"
        " WHERE r.channel_id = $1 AND r.role = $2 ORDER BY r.granted_at, r.user_id",
        channel_id,
        role,
    )
    return [msgspec.convert(dict(r), RoleMember) for r in records]


async def lock_channel(conn: Connection, *, channel_id: str) -> bool:
    """Hold the channel's row until commit (so its live state is computed one event at a time);
    False when there is no such channel."""
    found = await conn.fetchval("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE", channel_id)
    return found is not None


async def refresh_live(conn: Connection, *, channel_id: str) -> str | None:
    """Set the channel live with its newest open session in the copy, or offline; returns that session's
    id (None: offline)."""
    session_id: str | None = await conn.fetchval(
        "UPDATE channels SET (live_session_id, live_since) = ("
        "  SELECT session_id, started_at FROM copied_live_sessions"
        "  WHERE channel_id = $1 AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1)"
        " WHERE id = $1 RETURNING live_session_id",
        channel_id,
    )
    return session_id


async def list_emotes(conn: Connection, *, channel_id: str) -> list[Emote]:
    """A channel's emotes ('' for the global set), oldest first."""
    return [_emote(r) for r in await conn.fetch(_EMOTES_OF, channel_id)]


async def emote_exists(conn: Connection, *, emote_id: str) -> bool:
    """Whether an emote with this id is stored (the global set is installed once)."""
    return await conn.fetchval("SELECT 1 FROM emotes WHERE id = $1", emote_id) is not None


async def emote_code_taken(conn: Connection, *, channel_id: str, code: str) -> bool:
    """True when `code` is used by the channel or by the global set (case-insensitive)."""
    found = await conn.fetchval(
        "SELECT 1 FROM emotes WHERE channel_id IN ('', $1) AND lower(code) = lower($2)", channel_id, code
    )
    return found is not None


async def insert_emote(
    conn: Connection,
    *,
    emote_id: str,
    channel_id: str,
    code: str,
    tier: int,
    animated: bool,
    content_type: str,
) -> Emote:
    """Add an emote; raises asyncpg.UniqueViolationError when its id or code is taken."""
    record = await conn.fetchrow(_INSERT_EMOTE, emote_id, channel_id, code, tier, animated, content_type)
    return _emote(record)


async def delete_emote(conn: Connection, *, channel_id: str, code: str) -> Emote | None:
    """Remove an emote by code; returns the removed emote."""
    record = await conn.fetchrow(_DELETE_EMOTE, channel_id, code)
    return None if record is None else _emote(record)


async def next_version(conn: Connection, *, aggregate: str) -> int:
    """One more change of `aggregate` (proto's *_aggregate keys): its new version, 1 for the first. Call
    it in the transaction that writes the change's event; the row lock orders concurrent changes."""
    version: int = await conn.fetchval(
        "INSERT INTO aggregate_versions AS t (aggregate, version) VALUES ($1, 1)"
        " ON CONFLICT (aggregate) DO UPDATE SET version = t.version + 1 RETURNING version",
        aggregate,
    )
    return version
