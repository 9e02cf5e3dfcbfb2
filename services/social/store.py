"""All SQL of the social service. Every function takes a connection (or a transaction's connection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.social.domain import Cursor, SubState

__all__ = [
    "active_subscribers",
    "audience_history",
    "delete_follow",
    "due_subscriptions",
    "fetch_channel",
    "fetch_follow",
    "fetch_subscription",
    "find_user",
    "find_user_by_id",
    "follower_count",
    "insert_follow",
    "insert_subscription",
    "list_followers",
    "list_following",
    "list_subscriptions",
    "lock_subscription",
    "random_followers",
    "record_payment_event",
    "update_subscription",
    "upsert_channel",
    "upsert_user",
]

Row = Any  # asyncpg.Record

# A subscription with its user's, channel's and gifter's names; the s.* columns are SubState's fields.
SUBSCRIPTION_SELECT = """
SELECT s.user_id, s.channel_id, s.id, s.tier, s.active, s.started_at, s.period_end, s.cancel_at_period_end,
       s.cumulative_months, s.streak_months, s.gifted_by_id, s.ended_at, s.end_reason,
       coalesce(u.username, '') AS username, c.name AS channel_name, coalesce(g.username, '') AS gifter
FROM subscriptions s
JOIN channels c ON c.id = s.channel_id
LEFT JOIN users u ON u.id = s.user_id
LEFT JOIN users g ON g.id = s.gifted_by_id
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


async def upsert_channel(conn: Any, *, channel_id: str, name: str, owner_id: str) -> None:
    """Remember a channel and its owner (names and owners never change)."""
    await conn.execute(
        "INSERT INTO channels (id, name, owner_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        channel_id,
        name,
        owner_id,
    )


async def fetch_channel(conn: Any, *, name: str) -> Row | None:
    """A channel (id, name, owner_id, follower_count) by its lower-case name."""
    return await conn.fetchrow(
        "SELECT id, name, owner_id, follower_count FROM channels WHERE name = $1", name
    )


async def insert_follow(conn: Any, *, user_id: str, channel_id: str) -> datetime | None:
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
            "UPDATE channels SET follower_count = follower_count + 1 WHERE id = $1", channel_id
        )
    return followed_at


async def delete_follow(conn: Any, *, user_id: str, channel_id: str) -> bool:
    """Unfollow; False when there was no follow."""
    gone = await conn.fetchval(
        "DELETE FROM follows WHERE user_id = $1 AND channel_id = $2 RETURNING 1", user_id, channel_id
    )
    if gone is None:
        return False
    await conn.execute("UPDATE channels SET follower_count = follower_count - 1 WHERE id = $1", channel_id)
    return True


async def fetch_follow(conn: Any, *, user_id: str, channel_id: str) -> datetime | None:
    """When the user started following the channel, or None."""
    followed_at: datetime | None = await conn.fetchval(
        "SELECT followed_at FROM follows WHERE user_id = $1 AND channel_id = $2", user_id, channel_id
    )
    return followed_at


async def list_followers(conn: Any, *, channel_id: str, after: Cursor | None, limit: int) -> list[Row]:
    """A page of a channel's followers, newest first."""
    return list(
        await conn.fetch(
            "SELECT f.user_id, coalesce(u.username, '') AS username, c.id AS channel_id,"
            " c.name AS channel_name, f.followed_at"
            " FROM follows f JOIN channels c ON c.id = f.channel_id LEFT JOIN users u ON u.id = f.user_id"
            " WHERE f.channel_id = $1"
            " AND ($2::timestamptz IS NULL OR (f.followed_at, f.user_id) < ($2::timestamptz, $3::text))"
            " ORDER BY f.followed_at DESC, f.user_id DESC LIMIT $4",
            channel_id,
            after.followed_at if after else None,
            after.id if after else None,
            limit,
        )
    )


async def list_following(conn: Any, *, user_id: str, after: Cursor | None, limit: int) -> list[Row]:
    """A page of the channels a user follows, newest follow first."""
    return list(
        await conn.fetch(
            "SELECT f.user_id, coalesce(u.username, '') AS username, c.id AS channel_id,"
            " c.name AS channel_name, f.followed_at"
            " FROM follows f JOIN channels c ON c.id = f.channel_id LEFT JOIN users u ON u.id = f.user_id"
            " WHERE f.user_id = $1"
            " AND ($2::timestamptz IS NULL OR (f.followed_at, f.channel_id) < ($2::timestamptz, $3::text))"
            " ORDER BY f.followed_at DESC, f.channel_id DESC LIMIT $4",
            user_id,
            after.followed_at if after else None,
            after.id if after else None,
            limit,
        )
    )


async def follower_count(conn: Any, *, channel_id: str) -> tuple[int, int]:
    """Followers and active subscribers of a channel."""
    row = await conn.fetchrow(
        "SELECT c.follower_count,"
        " (SELECT count(*) FROM subscriptions s WHERE s.channel_id = c.id AND s.active) AS subscribers"
        " FROM channels c WHERE c.id = $1",
        channel_id,
    )
    return int(row["follower_count"]), int(row["subscribers"])


async def audience_history(conn: Any, *, channel_id: str, days: int) -> list[Row]:
    """Per UTC day, oldest first: follows made by the day's end (or now) and subscriptions active then.
    Unfollows delete their row and a restarted subscription keeps only its latest start, so past days
    undercount what was lost since; only the present is exact."""
    rows: list[Row] = await conn.fetch(
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
    return rows


async def fetch_subscription(conn: Any, *, user_id: str, channel_id: str) -> Row | None:
    """A user's subscription row to a channel (active or ended), with the gifter's name."""
    return await conn.fetchrow(
        _ONE,
        user_id,
        channel_id,
    )


async def lock_subscription(conn: Any, *, user_id: str, channel_id: str) -> SubState | None:
    """The subscription row, held until commit, so changes to one subscription happen one at a time."""
    row = await conn.fetchrow(
        _ONE_LOCKED,
        user_id,
        channel_id,
    )
    return None if row is None else SubState.of(row)


async def insert_subscription(conn: Any, *, user_id: str, channel_id: str, state: SubState) -> bool:
    """Create a subscription row; False when one appeared meanwhile (lock it and try again)."""
    done = await conn.fetchval(
        "INSERT INTO subscriptions (user_id, channel_id, id, tier, active, started_at, period_end,"
        " cancel_at_period_end, cumulative_months, streak_months, gifted_by_id, ended_at, end_reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        user_id,
        channel_id,
        *_state_values(state),
    )
    return done is not None


async def update_subscription(conn: Any, *, user_id: str, channel_id: str, state: SubState) -> None:
    """Write a subscription's new state."""
    await conn.execute(
        "UPDATE subscriptions SET (id, tier, active, started_at, period_end, cancel_at_period_end,"
        " cumulative_months, streak_months, gifted_by_id, ended_at, end_reason, updated_at)"
        " = ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())"
        " WHERE user_id = $1 AND channel_id = $2",
        user_id,
        channel_id,
        *_state_values(state),
    )


def _state_values(s: SubState) -> tuple[Any, ...]:
    return (
        s.id,
        s.tier,
        s.active,
        s.started_at,
        s.period_end,
        s.cancel_at_period_end,
        s.cumulative_months,
        s.streak_months,
        s.gifted_by_id,
        s.ended_at,
        s.end_reason,
    )


async def list_subscriptions(conn: Any, *, user_id: str, include_ended: bool) -> list[Row]:
    """A user's subscriptions with channel and gifter names, the soonest period end first."""
    return list(
        await conn.fetch(
            _OF_USER,
            user_id,
            include_ended,
        )
    )


async def random_followers(conn: Any, *, channel_id: str, exclude: str, count: int) -> list[Row]:
    """Up to `count` random followers of a channel without an active subscription, `exclude` left out."""
    return list(
        await conn.fetch(
            "SELECT u.id, coalesce(u.username, '') AS username FROM follows f"
            " JOIN users u ON u.id = f.user_id"
            " WHERE f.channel_id = $1 AND f.user_id <> $2 AND NOT EXISTS ("
            "  SELECT 1 FROM subscriptions s WHERE s.user_id = f.user_id AND s.channel_id = $1 AND s.active)"
            " ORDER BY random() LIMIT $3",
            channel_id,
            exclude,
            count,
        )
    )


async def active_subscribers(conn: Any, *, channel_id: str) -> int:
    """How many active subscriptions a channel has."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM subscriptions WHERE channel_id = $1 AND active", channel_id
    )
    return n


async def due_subscriptions(conn: Any, *, before: datetime, limit: int) -> list[Row]:
    """Active subscriptions whose period ended before `before`, locked (replicas skip each other's)."""
    return list(
        await conn.fetch(
            _DUE,
            before,
            limit,
        )
    )


async def record_payment_event(conn: Any, *, event_id: str, type: str, signature: str) -> str:
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


async def find_user_by_id(conn: Any, *, user_id: str) -> Row | None:
    """The user (id, username) with this id."""
    return await conn.fetchrow("SELECT id, username FROM users WHERE id = $1", user_id)
