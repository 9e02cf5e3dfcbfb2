"""All SQL of the notification service. Every function takes a connection (or a transaction's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

Row = Any  # asyncpg.Record

# --- projections ----------------------------------------------------------------------------------


async def upsert_channel(conn: Any, *, channel_id: str, name: str, owner_id: str | None) -> None:
    """Remember a channel's name and (when known) owner; a known owner is never replaced by NULL."""
    await conn.execute(
        "INSERT INTO channels (id, name, owner_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE"
        " SET name = EXCLUDED.name, owner_id = coalesce(EXCLUDED.owner_id, channels.owner_id)",
        channel_id,
        name,
        owner_id,
    )


async def channel_by_name(conn: Any, *, name: str) -> Row | None:
    """A channel (id, name, owner_id) by name."""
    return await conn.fetchrow("SELECT id, name, owner_id FROM channels WHERE name = lower($1)", name)


async def channel_by_id(conn: Any, *, channel_id: str) -> Row | None:
    """A channel (id, name, owner_id) by id."""
    return await conn.fetchrow("SELECT id, name, owner_id FROM channels WHERE id = $1", channel_id)


async def add_follow(conn: Any, *, channel_id: str, user_id: str, followed_at: datetime) -> None:
    """Record a follow (a repeat keeps the newer time)."""
    await conn.execute(
        "INSERT INTO follows (channel_id, user_id, followed_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (channel_id, user_id) DO UPDATE SET followed_at = greatest(follows.followed_at,"
        " EXCLUDED.followed_at)",
        channel_id,
        user_id,
        followed_at,
    )


async def remove_follow(conn: Any, *, channel_id: str, user_id: str, before: datetime) -> None:
    """Forget a follow made before `before` (a later re-follow delivered out of order stays)."""
    await conn.execute(
        "DELETE FROM follows WHERE channel_id = $1 AND user_id = $2 AND followed_at <= $3",
        channel_id,
        user_id,
        before,
    )


# --- sessions and fan-out -------------------------------------------------------------------------


async def lock_channel_sessions(conn: Any, *, channel_id: str) -> None:
    """Serialize the session events of one channel until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", channel_id)


async def session_known(conn: Any, *, session_id: str) -> bool:
    """Whether this session was seen already."""
    return await conn.fetchval("SELECT 1 FROM sessions WHERE session_id = $1", session_id) is not None


async def previous_session(conn: Any, *, channel_id: str, before: datetime) -> Row | None:
    """The channel's newest session that started before `before`."""
    return await conn.fetchrow(
        "SELECT session_id, started_at, ended_at FROM sessions WHERE channel_id = $1 AND started_at < $2"
        " ORDER BY started_at DESC LIMIT 1",
        channel_id,
        before,
    )


async def insert_session(
    conn: Any, *, session_id: str, channel_id: str, started_at: datetime, notified: bool
) -> None:
    """Note a session start."""
    await conn.execute(
        "INSERT INTO sessions (session_id, channel_id, started_at, notified) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (session_id) DO NOTHING",
        session_id,
        channel_id,
        started_at,
        notified,
    )


async def end_session(
    conn: Any, *, session_id: str, channel_id: str, started_at: datetime, ended_at: datetime
) -> bool:
    """Close a session (created closed when its start was never seen); False when already closed."""
    status: str = await conn.execute(
        "INSERT INTO sessions (session_id, channel_id, started_at, ended_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (session_id) DO UPDATE SET ended_at = EXCLUDED.ended_at"
        " WHERE sessions.ended_at IS NULL",
        session_id,
        channel_id,
        started_at,
        ended_at,
    )
    return status != "INSERT 0 0"


async def add_fanout_job(
    conn: Any, *, session_id: str, channel_id: str, channel_name: str, started_at: datetime
) -> None:
    """Queue the go-live fan-out of a session."""
    await conn.execute(
        "INSERT INTO fanout_jobs (session_id, channel_id, channel_name, started_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        session_id,
        channel_id,
        channel_name,
        started_at,
    )


async def pending_fanouts(conn: Any) -> list[str]:
    """Sessions whose fan-out is not finished, oldest first."""
    return [r[0] for r in await conn.fetch("SELECT session_id FROM fanout_jobs ORDER BY created_at")]


async def claim_fanout(conn: Any, *, session_id: str) -> Row | None:
    """Lock a fan-out job for this transaction (None when done or another replica holds it)."""
    return await conn.fetchrow(
        "SELECT session_id, channel_id, channel_name, cursor FROM fanout_jobs WHERE session_id = $1"
        " FOR UPDATE SKIP LOCKED",
        session_id,
    )


# One batch of followers, in user_id order after the cursor: their inbox rows (muted and silenced users
# skipped, an existing row kept) and their Web Push deliveries, in one statement.
_FANOUT_BATCH = """
WITH batch AS (
    SELECT user_id FROM follows WHERE channel_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3
), ins AS (
    INSERT INTO notifications (user_id, kind, dedup_key, channel_id, channel_name, created_at)
    SELECT b.user_id, 'live', $4, $1, $5, $6 FROM batch b
    LEFT JOIN preferences p ON p.user_id = b.user_id
    WHERE coalesce(p.enabled, true)
      AND NOT EXISTS (SELECT 1 FROM muted_channels m WHERE m.user_id = b.user_id AND m.channel_id = $1)
    ON CONFLICT (user_id, dedup_key) DO NOTHING
    RETURNING id, user_id
), push AS (
    INSERT INTO push_deliveries (notification_id, subscription_id)
    SELECT ins.id, s.id FROM ins
    JOIN push_subscriptions s ON s.user_id = ins.user_id
    LEFT JOIN preferences p ON p.user_id = ins.user_id
    WHERE coalesce(p.push_all, true)
       OR EXISTS (SELECT 1 FROM push_channels c WHERE c.user_id = ins.user_id AND c.channel_id = $1)
)
SELECT (SELECT count(*) FROM batch) AS seen, (SELECT max(user_id) FROM batch) AS last,
       array(SELECT id FROM ins) AS ids, array(SELECT user_id FROM ins) AS users
"""


async def fanout_batch(
    conn: Any, *, job: Row, batch: int, created_at: datetime
) -> tuple[int, str | None, list[int], list[str]]:
    """Write one batch of go-live inbox rows; returns followers seen, the last one, new ids and users."""
    row = await conn.fetchrow(
        _FANOUT_BATCH,
        job["channel_id"],
        job["cursor"],
        batch,
        "live:" + job["session_id"],
        job["channel_name"],
        created_at,
    )
    return row["seen"], row["last"], list(row["ids"]), list(row["users"])


async def advance_fanout(conn: Any, *, session_id: str, cursor: str | None) -> None:
    """Move the job's cursor, or finish the job (None)."""
    if cursor is None:
        await conn.execute("DELETE FROM fanout_jobs WHERE session_id = $1", session_id)
    else:
        await conn.execute("UPDATE fanout_jobs SET cursor = $2 WHERE session_id = $1", session_id, cursor)


# --- inbox ----------------------------------------------------------------------------------------

# Constant text only; every value is a bound parameter.
_ADD_NOTIFICATION = (
    "INSERT INTO notifications (user_id, kind, dedup_key, channel_id, channel_name, actor_username, tier)"
    " SELECT $1, $2, $3, $4, $5, $6, $7"
    " WHERE coalesce((SELECT enabled FROM preferences WHERE user_id = $1), true)"
    " ON CONFLICT (user_id, dedup_key) DO NOTHING"
    " RETURNING id, kind, channel_id, channel_name, actor_username, tier, created_at, read_at"
)
_LIST_INBOX = (
    "SELECT id, kind, channel_id, channel_name, actor_username, tier, created_at, read_at"
    " FROM notifications WHERE user_id = $1"
    " AND ($2::bigint IS NULL OR id < $2) AND (NOT $3 OR read_at IS NULL) ORDER BY id DESC LIMIT $4"
)


async def add_notification(
    conn: Any, *, user_id: str, kind: str, dedup_key: str, channel_id: str, channel_name: str,
    actor_username: str = "", tier: int = 0,
) -> Row | None:  # fmt: skip
    """One inbox row unless the user silenced notifications or it exists; returns it when new."""
    return await conn.fetchrow(
        _ADD_NOTIFICATION,
        user_id,
        kind,
        dedup_key,
        channel_id,
        channel_name,
        actor_username,
        tier,
    )


async def list_inbox(conn: Any, *, user_id: str, before: int | None, limit: int, unread: bool) -> list[Row]:
    """A page of a user's notifications, newest first."""
    return list(
        await conn.fetch(
            _LIST_INBOX,
            user_id,
            before,
            unread,
            limit,
        )
    )


async def unread_count(conn: Any, *, user_id: str) -> int:
    """How many of a user's notifications are unread."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id
    )
    return count


async def mark_read(conn: Any, *, user_id: str, ids: list[int] | None) -> int:
    """Mark the user's `ids` (every one when None) read; returns how many changed."""
    status: str = await conn.execute(
        "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL"
        " AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))",
        user_id,
        ids,
    )
    return int(status.split()[-1])


# --- preferences ----------------------------------------------------------------------------------


async def get_preferences(conn: Any, *, user_id: str) -> Row:
    """enabled, push_all and the names of muted and push channels."""
    return await conn.fetchrow(
        "SELECT coalesce(p.enabled, true) AS enabled, coalesce(p.push_all, true) AS push_all,"
        " array(SELECT c.name FROM muted_channels m JOIN channels c ON c.id = m.channel_id"
        "       WHERE m.user_id = $1 ORDER BY c.name) AS muted,"
        " array(SELECT c.name FROM push_channels m JOIN channels c ON c.id = m.channel_id"
        "       WHERE m.user_id = $1 ORDER BY c.name) AS push"
        " FROM (SELECT $1::text AS user_id) u LEFT JOIN preferences p ON p.user_id = u.user_id",
        user_id,
    )


async def channel_ids(conn: Any, *, names: list[str]) -> dict[str, str]:
    """Ids of the known channels among `names`."""
    rows = await conn.fetch("SELECT name, id FROM channels WHERE name = ANY($1::text[])", names)
    return {r["name"]: r["id"] for r in rows}


async def put_preferences(
    conn: Any, *, user_id: str, enabled: bool, push_all: bool, muted: list[str], push: list[str]
) -> None:
    """Replace a user's preferences (channel ids)."""
    await conn.execute(
        "INSERT INTO preferences (user_id, enabled, push_all) VALUES ($1, $2, $3) ON CONFLICT (user_id)"
        " DO UPDATE SET enabled = EXCLUDED.enabled, push_all = EXCLUDED.push_all",
        user_id,
        enabled,
        push_all,
    )
    for table, ids in (("muted_channels", muted), ("push_channels", push)):
        await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)  # noqa: S608
        await conn.execute(
            f"INSERT INTO {table} (user_id, channel_id) SELECT $1, unnest($2::text[])",
            user_id,
            ids,
        )
