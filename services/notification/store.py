"""SQL of the notification service's projections, sessions, fan-out, inbox and preferences (delivery_store.py
holds push, ticket and webhook SQL). Every function takes a connection and returns Structs.

Channels and live sessions are copies (`copied_channels`, `copied_live_sessions`, kept by libs/replica.py
from their owners' events, read only here); what the service owns of a session is in `session_reactions`."""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.db import Connection
from proto.ingest import LiveSession
from proto.notification import Notification, Preferences

__all__ = [
    "FanoutBatch",
    "FanoutJob",
    "add_fanout_job",
    "add_follow",
    "add_notification",
    "advance_fanout",
    "channel_ids",
    "claim_end",
    "claim_fanout",
    "claim_start",
    "fanout_batch",
    "get_preferences",
    "index_copies",
    "list_inbox",
    "lock_channel_sessions",
    "mark_read",
    "pending_fanouts",
    "previous_session",
    "put_preferences",
    "remove_follow",
    "unread_count",
]


class FanoutJob(msgspec.Struct, frozen=True, kw_only=True):
    """A go-live fan-out in progress; `cursor` is the last follower whose inbox row is committed."""

    session_id: str
    channel_id: str
    channel_name: str
    cursor: str


class FanoutBatch(msgspec.Struct, frozen=True, kw_only=True):
    """What one fan-out batch wrote: followers seen, the last of them, new inbox ids with their users, and
    how many Web Push sends it queued."""

    seen: int
    last: str | None
    ids: list[int]
    users: list[str]
    pushes: int


# --- copies and follows ---------------------------------------------------------------------------


async def index_copies(conn: Connection) -> None:
    """Index the live-session copy by channel for `previous_session` (the copy's table is made at start,
    after the migrations); replicas starting together take turns."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || 'copies-index'))")
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS copied_live_sessions_by_channel"
            " ON copied_live_sessions (channel_id, started_at DESC)"
        )


async def channel_ids(conn: Connection, *, names: list[str]) -> dict[str, str]:
    """Ids of the channels among `names` (lower case) that the copy knows."""
    rows = await conn.fetch(
        "SELECT lower(name) AS name, channel_id FROM copied_channels WHERE lower(name) = ANY($1::text[])",
        names,
    )
    return {r["name"]: r["channel_id"] for r in rows}


async def add_follow(conn: Connection, *, channel_id: str, user_id: str, followed_at: datetime) -> None:
    """Record a follow (a repeat keeps the newer time)."""
    await conn.execute(
        "INSERT INTO follows (channel_id, user_id, followed_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (channel_id, user_id) DO UPDATE SET followed_at = greatest(follows.followed_at,"
        " EXCLUDED.followed_at)",
        channel_id,
        user_id,
        followed_at,
    )


async def remove_follow(conn: Connection, *, channel_id: str, user_id: str, before: datetime) -> None:
    """Forget a follow made before `before` (a later re-follow delivered out of order stays)."""
    await conn.execute(
        "DELETE FROM follows WHERE channel_id = $1 AND user_id = $2 AND followed_at <= $3",
        channel_id,
        user_id,
        before,
    )


# --- sessions and fan-out -------------------------------------------------------------------------


async def lock_channel_sessions(conn: Connection, *, channel_id: str) -> None:
    """Serialize the session reactions of one channel until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", channel_id)


async def previous_session(
    conn: Connection, *, channel_id: str, session_id: str, before: datetime
) -> LiveSession | None:
    """The channel's newest other session in the copy that started before `before`."""
    row = await conn.fetchrow(
        "SELECT * FROM copied_live_sessions"
        " WHERE channel_id = $1 AND started_at < $2 AND session_id <> $3"
        " ORDER BY started_at DESC LIMIT 1",
        channel_id,
        before,
        session_id,
    )
    return None if row is None else msgspec.convert(dict(row), LiveSession)


async def claim_start(conn: Connection, *, session_id: str, notified: bool) -> bool:
    """Note that the session's start is handled now; False when it was handled before."""
    claimed = await conn.fetchval(
        "INSERT INTO session_reactions (session_id, started_handled, notified) VALUES ($1, true, $2)"
        " ON CONFLICT (session_id) DO UPDATE SET started_handled = true, notified = EXCLUDED.notified"
        " WHERE NOT session_reactions.started_handled RETURNING true",
        session_id,
        notified,
    )
    return claimed is not None


async def claim_end(conn: Connection, *, session_id: str) -> bool:
    """Note that the session's end is handled now; False when it was handled before."""
    claimed = await conn.fetchval(
        "INSERT INTO session_reactions (session_id, ended_handled) VALUES ($1, true)"
        " ON CONFLICT (session_id) DO UPDATE SET ended_handled = true"
        " WHERE NOT session_reactions.ended_handled RETURNING true",
        session_id,
    )
    return claimed is not None


async def add_fanout_job(
    conn: Connection, *, session_id: str, channel_id: str, channel_name: str, started_at: datetime
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


async def pending_fanouts(conn: Connection) -> list[str]:
    """Sessions whose fan-out is not finished, oldest first."""
    return [r[0] for r in await conn.fetch("SELECT session_id FROM fanout_jobs ORDER BY created_at")]


async def claim_fanout(conn: Connection, *, session_id: str) -> FanoutJob | None:
    """Lock a fan-out job for this transaction (None when done or another replica holds it)."""
    row = await conn.fetchrow(
        "SELECT session_id, channel_id, channel_name, cursor FROM fanout_jobs WHERE session_id = $1"
        " FOR UPDATE SKIP LOCKED",
        session_id,
    )
    return None if row is None else msgspec.convert(dict(row), FanoutJob)


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
    RETURNING id
)
SELECT (SELECT count(*) FROM batch) AS seen, (SELECT max(user_id) FROM batch) AS last,
       array(SELECT id FROM ins) AS ids, array(SELECT user_id FROM ins) AS users,
       (SELECT count(*) FROM push) AS pushes
"""


async def fanout_batch(conn: Connection, *, job: FanoutJob, batch: int, created_at: datetime) -> FanoutBatch:
    """Write one batch of go-live inbox rows and their Web Push sends."""
    row = await conn.fetchrow(
        _FANOUT_BATCH,
        job.channel_id,
        job.cursor,
        batch,
        "live:" + job.session_id,
        job.channel_name,
        created_at,
    )
    return msgspec.convert(dict(row), FanoutBatch)


async def advance_fanout(conn: Connection, *, session_id: str, cursor: str | None) -> None:
    """Move the job's cursor, or finish the job (None)."""
    if cursor is None:
        await conn.execute("DELETE FROM fanout_jobs WHERE session_id = $1", session_id)
    else:
        await conn.execute("UPDATE fanout_jobs SET cursor = $2 WHERE session_id = $1", session_id, cursor)


# --- inbox ----------------------------------------------------------------------------------------

# Constant text only; every value is a bound parameter. Rows are read as the Notification their user sees.
_ADD_NOTIFICATION = (
    "INSERT INTO notifications (user_id, kind, dedup_key, channel_id, channel_name, actor_username, tier)"
    " SELECT $1, $2, $3, $4, $5, $6, $7"
    " WHERE coalesce((SELECT enabled FROM preferences WHERE user_id = $1), true)"
    " ON CONFLICT (user_id, dedup_key) DO NOTHING"
    " RETURNING id, kind, channel_id, channel_name, actor_username, tier, created_at,"
    " read_at IS NOT NULL AS read"
)
_LIST_INBOX = (
    "SELECT id, kind, channel_id, channel_name, actor_username, tier, created_at, read_at IS NOT NULL AS read"
    " FROM notifications WHERE user_id = $1"
    " AND ($2::bigint IS NULL OR id < $2) AND (NOT $3 OR read_at IS NULL) ORDER BY id DESC LIMIT $4"
)


async def add_notification(
    conn: Connection, *, user_id: str, kind: str, dedup_key: str, channel_id: str, channel_name: str,
    actor_username: str = "", tier: int = 0,
) -> Notification | None:  # fmt: skip
    """One inbox row unless the user silenced notifications or it exists; returns it when new."""
    row = await conn.fetchrow(
        _ADD_NOTIFICATION, user_id, kind, dedup_key, channel_id, channel_name, actor_username, tier
    )
    return None if row is None else msgspec.convert(dict(row), Notification)


async def list_inbox(
    conn: Connection, *, user_id: str, before: int | None, limit: int, unread: bool
) -> list[Notification]:
    """A page of a user's notifications, newest first."""
    rows = await conn.fetch(_LIST_INBOX, user_id, before, unread, limit)
    return msgspec.convert([dict(r) for r in rows], list[Notification])


async def unread_count(conn: Connection, *, user_id: str) -> int:
    """How many of a user's notifications are unread."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id
    )
    return count


async def mark_read(conn: Connection, *, user_id: str, ids: list[int] | None) -> int:
    """Mark the user's `ids` (every one when None) read; returns how many changed."""
    status: str = await conn.execute(
        "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL"
        " AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))",
        user_id,
        ids,
    )
    return int(status.split()[-1])


# --- preferences ----------------------------------------------------------------------------------


async def get_preferences(conn: Connection, *, user_id: str) -> Preferences:
    """enabled, push_all and the names of muted and push channels (the defaults when none are stored)."""
    row = await conn.fetchrow(
        "SELECT coalesce(p.enabled, true) AS enabled, coalesce(p.push_all, true) AS push_all,"
        " array(SELECT c.name FROM muted_channels m JOIN copied_channels c ON c.channel_id = m.channel_id"
        "       WHERE m.user_id = $1 ORDER BY c.name) AS muted_channels,"
        " array(SELECT c.name FROM push_channels m JOIN copied_channels c ON c.channel_id = m.channel_id"
        "       WHERE m.user_id = $1 ORDER BY c.name) AS push_channels"
        " FROM (SELECT $1::text AS user_id) u LEFT JOIN preferences p ON p.user_id = u.user_id",
        user_id,
    )
    return msgspec.convert(dict(row), Preferences)


async def put_preferences(
    conn: Connection, *, user_id: str, enabled: bool, push_all: bool, muted: list[str], push: list[str]
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
