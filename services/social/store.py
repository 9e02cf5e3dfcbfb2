"""All SQL of the social service. Every function takes a connection (or a transaction's connection) and
returns Structs. Users and channels are read from the copies libs/replica.py keeps (copied_users,
copied_channels; read only here); a copy may lag, so they are joined LEFT and their names default to ''."""

from __future__ import annotations

from datetime import datetime

import msgspec
from asyncpg import Record

from libs.db import Connection
from proto import social as ps
from proto.identity import UserCopy
from services.social.domain import Cursor, Held, SubState

__all__ = [
    "SUBSCRIPTION_SELECT",
    "audience_history",
    "counts",
    "delete_follow",
    "due_subscriptions",
    "fetch_follow",
    "fetch_subscription",
    "insert_follow",
    "insert_subscription",
    "list_followers",
    "list_following",
    "list_subscriptions",
    "lock_subscription",
    "next_version",
    "random_followers",
    "record_payment_event",
    "update_subscription",
]

# A subscription with its user's, channel's and gifter's names; the s.* columns are SubState's fields,
# the rest fill Held's user (user_id, username) and channel (channel_id, name, owner_id).
SUBSCRIPTION_SELECT = """
SELECT s.user_id, s.channel_id, s.id, s.tier, s.active, s.started_at, s.period_end, s.cancel_at_period_end,
       s.cumulative_months, s.streak_months, s.gifted_by_id, s.ended_at, s.end_reason,
       coalesce(u.username, '') AS username, coalesce(c.name, '') AS name,
       coalesce(c.owner_id, '') AS owner_id, coalesce(g.username, '') AS gifter
FROM subscriptions s
LEFT JOIN copied_channels c ON c.channel_id = s.channel_id
LEFT JOIN copied_users u ON u.user_id = s.user_id
LEFT JOIN copied_users g ON g.user_id = s.gifted_by_id
"""
# Constant text only; every value is a bound parameter.
_ONE = SUBSCRIPTION_SELECT + "WHERE s.user_id = $1 AND s.channel_id = $2"
_ONE_LOCKED = _ONE + " FOR UPDATE OF s"
_OF_USER = SUBSCRIPTION_SELECT + (
    "WHERE s.user_id = $1 AND (s.active OR $2) ORDER BY s.active DESC, s.period_end, c.name"
)
_DUE = SUBSCRIPTION_SELECT + (
    "WHERE s.active AND s.period_end < $1 ORDER BY s.period_end LIMIT $2 FOR UPDATE OF s SKIP LOCKED"
)
# A follow with the follower's and channel's names (FollowEntry's fields).
_FOLLOW_SELECT = (
    "SELECT f.user_id, coalesce(u.username, '') AS username, f.channel_id,"
    " coalesce(c.name, '') AS channel_name, f.followed_at"
    " FROM follows f LEFT JOIN copied_channels c ON c.channel_id = f.channel_id"
    " LEFT JOIN copied_users u ON u.user_id = f.user_id"
)
# A page of follows by channel or by user: $1 the key, $2 and $3 the cursor, $4 the limit.
_FOLLOWERS = _FOLLOW_SELECT + (
    " WHERE f.channel_id = $1"
    " AND ($2::timestamptz IS NULL OR (f.followed_at, f.user_id) < ($2::timestamptz, $3::text))"
    " ORDER BY f.followed_at DESC, f.user_id DESC LIMIT $4"
)
_FOLLOWING = _FOLLOW_SELECT + (
    " WHERE f.user_id = $1"
    " AND ($2::timestamptz IS NULL OR (f.followed_at, f.channel_id) < ($2::timestamptz, $3::text))"
    " ORDER BY f.followed_at DESC, f.channel_id DESC LIMIT $4"
)


def _held(record: Record) -> Held:
    row = dict(record)
    return msgspec.convert({"state": row, "user": row, "channel": row, "gifter": row["gifter"]}, Held)


async def insert_follow(conn: Connection, *, user_id: str, channel_id: str) -> datetime | None:
    """Follow; returns the follow time, or None when the user already followed (row kept as it was).
    A concurrent follow of the same pair waits on the primary key and then does nothing."""
    followed_at: datetime | None = await conn.fetchval(
        "INSERT INTO follows (user_id, channel_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING followed_at",
        user_id,
        channel_id,
    )
    if followed_at is not None:
        await conn.execute(
            "INSERT INTO channel_stats AS t (channel_id, follower_count) VALUES ($1, 1)"
            " ON CONFLICT (channel_id) DO UPDATE SET follower_count = t.follower_count + 1",
            channel_id,
        )
    return followed_at


async def delete_follow(conn: Connection, *, user_id: str, channel_id: str) -> bool:
    """Unfollow; False when there was no follow."""
    gone = await conn.fetchval(
        "DELETE FROM follows WHERE user_id = $1 AND channel_id = $2 RETURNING 1", user_id, channel_id
    )
    if gone is None:
        return False
    await conn.execute(
        "UPDATE channel_stats SET follower_count = follower_count - 1 WHERE channel_id = $1", channel_id
    )
    return True


async def fetch_follow(conn: Connection, *, user_id: str, channel_id: str) -> datetime | None:
    """When the user started following the channel, or None."""
    followed_at: datetime | None = await conn.fetchval(
        "SELECT followed_at FROM follows WHERE user_id = $1 AND channel_id = $2", user_id, channel_id
    )
    return followed_at


async def list_followers(
    conn: Connection, *, channel_id: str, after: Cursor | None, limit: int
) -> list[ps.FollowEntry]:
    """A page of a channel's followers, newest first."""
    return await _follow_page(conn, _FOLLOWERS, channel_id, after, limit)


async def list_following(
    conn: Connection, *, user_id: str, after: Cursor | None, limit: int
) -> list[ps.FollowEntry]:
    """A page of the channels a user follows, newest follow first."""
    return await _follow_page(conn, _FOLLOWING, user_id, after, limit)


async def _follow_page(
    conn: Connection, query: str, key: str, after: Cursor | None, limit: int
) -> list[ps.FollowEntry]:
    rows = await conn.fetch(
        query, key, after.followed_at if after else None, after.id if after else None, limit
    )
    return [msgspec.convert(dict(r), ps.FollowEntry) for r in rows]


async def counts(conn: Connection, *, channel_id: str) -> tuple[int, int]:
    """Followers and active subscribers of a channel."""
    # A SELECT without FROM always yields its one row.
    followers, subscribers = await conn.fetchrow(
        "SELECT coalesce((SELECT follower_count FROM channel_stats WHERE channel_id = $1), 0),"
        " (SELECT count(*) FROM subscriptions s WHERE s.channel_id = $1 AND s.active)",
        channel_id,
    )
    return followers, subscribers


async def audience_history(conn: Connection, *, channel_id: str, days: int) -> list[ps.AudiencePoint]:
    """Per UTC day, oldest first: follows made by the day's end (or now) and subscriptions active then.
    Unfollows delete their row and a restarted subscription keeps only its latest start, so past days
    undercount what was lost since; only the present is exact."""
    rows = await conn.fetch(
        "WITH d AS (SELECT day::date AS day, least((day + interval '1 day') AT TIME ZONE 'UTC', now()) AS t "
        "  FROM generate_series(((now() AT TIME ZONE 'UTC')::date - ($2::int - 1))::timestamp, "
        "    (now() AT TIME ZONE 'UTC')::date::timestamp, interval '1 day') AS day) "
        "SELECT d.day, "
        " (SELECT count(*) FROM follows f WHERE f.channel_id = $1 AND f.followed_at <= d.t)::int"
        "   AS followers,"
        " (SELECT count(*) FROM subscriptions s WHERE s.channel_id = $1 AND s.started_at <= d.t"
        "   AND (s.ended_at IS NULL OR s.ended_at > d.t))::int AS subscribers "
        "FROM d ORDER BY d.day",
        channel_id,
        days,
    )
    return [msgspec.convert(dict(r), ps.AudiencePoint) for r in rows]


async def fetch_subscription(conn: Connection, *, user_id: str, channel_id: str) -> Held | None:
    """A user's subscription to a channel (active or ended), with the names around it."""
    row = await conn.fetchrow(_ONE, user_id, channel_id)
    return None if row is None else _held(row)


async def lock_subscription(conn: Connection, *, user_id: str, channel_id: str) -> SubState | None:
    """The subscription row, held until commit, so changes to one subscription happen one at a time."""
    row = await conn.fetchrow(_ONE_LOCKED, user_id, channel_id)
    return None if row is None else msgspec.convert(dict(row), SubState)


async def insert_subscription(conn: Connection, *, user_id: str, channel_id: str, state: SubState) -> bool:
    """Create a subscription row; False when one appeared meanwhile (lock it and try again)."""
    done = await conn.fetchval(
        "INSERT INTO subscriptions (user_id, channel_id, id, tier, active, started_at, period_end,"
        " cancel_at_period_end, cumulative_months, streak_months, gifted_by_id, ended_at, end_reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        user_id,
        channel_id,
        *msgspec.structs.astuple(state),
    )
    return done is not None


async def update_subscription(conn: Connection, *, user_id: str, channel_id: str, state: SubState) -> None:
    """Write a subscription's new state."""
    await conn.execute(
        "UPDATE subscriptions SET (id, tier, active, started_at, period_end, cancel_at_period_end,"
        " cumulative_months, streak_months, gifted_by_id, ended_at, end_reason, updated_at)"
        " = ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())"
        " WHERE user_id = $1 AND channel_id = $2",
        user_id,
        channel_id,
        *msgspec.structs.astuple(state),
    )


async def list_subscriptions(conn: Connection, *, user_id: str, include_ended: bool) -> list[Held]:
    """A user's subscriptions with channel and gifter names, the soonest period end first."""
    return [_held(r) for r in await conn.fetch(_OF_USER, user_id, include_ended)]


async def random_followers(conn: Connection, *, channel_id: str, exclude: str, count: int) -> list[UserCopy]:
    """Up to `count` random followers of a channel without an active subscription, `exclude` left out."""
    rows = await conn.fetch(
        "SELECT u.user_id, u.username, u.version FROM follows f"
        " JOIN copied_users u ON u.user_id = f.user_id"
        " WHERE f.channel_id = $1 AND f.user_id <> $2 AND NOT EXISTS ("
        "  SELECT 1 FROM subscriptions s WHERE s.user_id = f.user_id AND s.channel_id = $1 AND s.active)"
        " ORDER BY random() LIMIT $3",
        channel_id,
        exclude,
        count,
    )
    return [msgspec.convert(dict(r), UserCopy) for r in rows]


async def due_subscriptions(conn: Connection, *, before: datetime, limit: int) -> list[Held]:
    """Active subscriptions whose period ended before `before`, locked (replicas skip each other's)."""
    return [_held(r) for r in await conn.fetch(_DUE, before, limit)]


async def record_payment_event(conn: Connection, *, event_id: str, type: str, signature: str) -> str:
    """Note a provider event as handled: "new", "duplicate" (its id was seen) or "replayed" (its
    signature was seen). A concurrent copy waits on the key and then reads as a duplicate."""
    done = await conn.fetchval(
        "INSERT INTO payment_events (event_id, type, signature) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        event_id,
        type,
        signature,
    )
    if done is not None:
        return "new"
    seen = await conn.fetchval("SELECT 1 FROM payment_events WHERE signature = $1", signature)
    return "replayed" if seen is not None else "duplicate"


async def next_version(conn: Connection, *, aggregate: str) -> int:
    """One more change of `aggregate` (proto's *_aggregate keys): its new version, 1 for the first. Call
    it in the transaction that writes the change's event; the row lock orders concurrent changes."""
    version: int = await conn.fetchval(
        "INSERT INTO aggregate_versions AS t (aggregate, version) VALUES ($1, 1)"
        " ON CONFLICT (aggregate) DO UPDATE SET version = t.version + 1 RETURNING version",
        aggregate,
    )
    return version
