"""All SQL of the chat service: functions that take a connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["Row"]

Row = Any  # asyncpg.Record


async def upsert_user(conn: Any, *, user_id: str, username: str) -> None:
    """Remember a user's name (idempotent)."""
    await conn.execute(
        "INSERT INTO users (id, username) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET username = $2",
        user_id,
        username,
    )


async def find_user(conn: Any, *, username: str) -> Row | None:
    """A user by name, case-insensitive."""
    return await conn.fetchrow("SELECT id, username FROM users WHERE lower(username) = lower($1)", username)


async def upsert_room(conn: Any, *, room_id: str, name: str, owner_id: str) -> None:
    """The room of a new channel (idempotent)."""
    await conn.execute(
        "INSERT INTO rooms (room_id, name, owner_id) VALUES ($1, $2, $3) ON CONFLICT (room_id) DO NOTHING",
        room_id,
        name.lower(),
        owner_id,
    )


async def room_by_name(conn: Any, *, name: str, lock: bool = False) -> Row | None:
    """A room by its channel's name."""
    if lock:
        return await conn.fetchrow("SELECT * FROM rooms WHERE name = lower($1) FOR UPDATE", name)
    return await conn.fetchrow("SELECT * FROM rooms WHERE name = lower($1)", name)


async def set_role(conn: Any, *, room_id: str, user_id: str, role: str, granted: bool) -> None:
    """Apply a role grant or revocation (idempotent)."""
    if granted:
        await conn.execute(
            "INSERT INTO roles (room_id, user_id, role) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET role = $3",
            room_id,
            user_id,
            role,
        )
    else:
        await conn.execute(
            "DELETE FROM roles WHERE room_id = $1 AND user_id = $2 AND role = $3", room_id, user_id, role
        )


async def set_follow(conn: Any, *, room_id: str, user_id: str, followed_at: datetime | None) -> None:
    """Record a follow (`followed_at`) or an unfollow (None)."""
    if followed_at is None:
        await conn.execute("DELETE FROM follows WHERE room_id = $1 AND user_id = $2", room_id, user_id)
        return
    await conn.execute(
        "INSERT INTO follows (room_id, user_id, followed_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (room_id, user_id) DO UPDATE SET followed_at = $3",
        room_id,
        user_id,
        followed_at,
    )


async def set_subscription(
    conn: Any, *, room_id: str, user_id: str, tier: int, months: int, period_end: datetime, active: bool
) -> None:
    """The subscription of a user to a room as it is now."""
    await conn.execute(
        "INSERT INTO subscriptions (room_id, user_id, tier, months, period_end, active)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, user_id)"
        " DO UPDATE SET tier = $3, months = $4, period_end = $5, active = $6",
        room_id,
        user_id,
        tier,
        months,
        period_end,
        active,
    )


async def put_emote(conn: Any, *, emote_id: str, room_id: str, code: str, tier: int, animated: bool) -> None:
    """An emote usable in `room_id` ('' for every room)."""
    await conn.execute(
        "INSERT INTO emotes (emote_id, room_id, code, tier, animated) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (emote_id) DO NOTHING",
        emote_id,
        room_id,
        code,
        tier,
        animated,
    )


async def delete_emote(conn: Any, *, emote_id: str) -> None:
    """Forget a removed emote."""
    await conn.execute("DELETE FROM emotes WHERE emote_id = $1", emote_id)


async def room_emotes(conn: Any, *, room_id: str) -> list[Row]:
    """The global emotes and those of `room_id`."""
    rows: list[Row] = await conn.fetch(
        "SELECT emote_id, room_id, code, tier, animated FROM emotes WHERE room_id IN ('', $1)", room_id
    )
    return rows


_STANDING = """
SELECT
  (SELECT role FROM roles WHERE room_id = $1 AND user_id = $2) AS role,
  s.tier AS sub_tier, s.months AS sub_months,
  (SELECT followed_at FROM follows WHERE room_id = $1 AND user_id = $2) AS followed_at,
  b.until AS ban_until, b.reason AS ban_reason, (b.user_id IS NOT NULL) AS has_ban,
  (SELECT max(sent_at) FROM messages WHERE room_id = $1 AND user_id = $2) AS last_sent_at,
  w.n AS sent_in_window, w.oldest AS oldest_in_window
FROM (SELECT 1) one
LEFT JOIN subscriptions s ON s.room_id = $1 AND s.user_id = $2 AND s.active AND s.period_end > now()
LEFT JOIN bans b ON b.room_id = $1 AND b.user_id = $2
CROSS JOIN LATERAL (
  SELECT count(*) AS n, min(sent_at) AS oldest FROM messages
  WHERE room_id = $1 AND user_id = $2 AND sent_at > $3
) w
"""


async def standing(conn: Any, *, room_id: str, user_id: str, window_start: datetime) -> Row:
    """Role, subscription, follow, ban and recent sends of a user in a room, in one query."""
    return await conn.fetchrow(_STANDING, room_id, user_id, window_start)


async def lock_sender(conn: Any, *, room_id: str, user_id: str) -> None:
    """Serialise one user's sends in one room until commit (rate limits stay exact across replicas)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{room_id}/{user_id}")


async def find_message(conn: Any, *, message_id: str) -> Row | None:
    """A stored message by id."""
    return await conn.fetchrow("SELECT * FROM messages WHERE message_id = $1", message_id)


async def insert_message(
    conn: Any, *, message_id: str, room_id: str, user_id: str, seq: int, sent_at: datetime
) -> None:
    """Record a message accepted into the room's stream (a retried one is already there)."""
    await conn.execute(
        "INSERT INTO messages (message_id, room_id, user_id, seq, sent_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (message_id) DO NOTHING",
        message_id,
        room_id,
        user_id,
        seq,
        sent_at,
    )


async def delete_message(conn: Any, *, room_id: str, message_id: str) -> Row | None:
    """Mark one message deleted; returns it (None if it is not in this room)."""
    return await conn.fetchrow(
        "UPDATE messages SET deleted = true WHERE message_id = $1 AND room_id = $2 RETURNING user_id, seq",
        message_id,
        room_id,
    )


async def delete_user_messages(conn: Any, *, room_id: str, user_id: str) -> list[int]:
    """Mark a user's messages in a room deleted; returns their stream sequences."""
    rows = await conn.fetch(
        "UPDATE messages SET deleted = true"
        " WHERE room_id = $1 AND user_id = $2 AND NOT deleted RETURNING seq",
        room_id,
        user_id,
    )
    return [r["seq"] for r in rows]


async def clear_room(conn: Any, *, room_id: str) -> None:
    """Mark every message of a room deleted."""
    await conn.execute("UPDATE messages SET deleted = true WHERE room_id = $1 AND NOT deleted", room_id)


async def deleted_among(conn: Any, *, ids: list[str]) -> set[str]:
    """Which of `ids` were deleted (history shown on join leaves them out)."""
    rows = await conn.fetch(
        "SELECT message_id FROM messages WHERE message_id = ANY($1::text[]) AND deleted", ids
    )
    return {r["message_id"] for r in rows}


async def set_modes(conn: Any, *, room_id: str, modes: Any) -> None:
    """Store a room's modes."""
    await conn.execute(
        "UPDATE rooms SET slow_seconds = $2, followers_only_minutes = $3, subscribers_only = $4,"
        " emote_only = $5 WHERE room_id = $1",
        room_id,
        modes.slow_seconds,
        modes.followers_only_minutes,
        modes.subscribers_only,
        modes.emote_only,
    )


async def put_ban(
    conn: Any, *, room_id: str, user_id: str, until: datetime | None, reason: str, actor_id: str
) -> None:
    """Ban (until None) or time out a user."""
    await conn.execute(
        "INSERT INTO bans (room_id, user_id, until, reason, actor_id) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (room_id, user_id) DO UPDATE SET until = $3, reason = $4, actor_id = $5,"
        " created_at = now()",
        room_id,
        user_id,
        until,
        reason,
        actor_id,
    )


async def delete_ban(conn: Any, *, room_id: str, user_id: str, timeout: bool) -> bool:
    """Lift a ban (timeout False) or a timeout; True when there was one."""
    kind = "until IS NOT NULL" if timeout else "until IS NULL"
    result: str = await conn.execute(
        f"DELETE FROM bans WHERE room_id = $1 AND user_id = $2 AND {kind}",  # noqa: S608
        room_id,
        user_id,
    )
    return result != "DELETE 0"


async def blocked_terms(conn: Any, *, room_id: str) -> list[Row]:
    """A room's blocked terms, oldest first."""
    rows: list[Row] = await conn.fetch(
        "SELECT term, added_by, added_at FROM blocked_terms WHERE room_id = $1 ORDER BY added_at", room_id
    )
    return rows


async def set_term(conn: Any, *, room_id: str, term: str, actor_id: str, blocked: bool) -> bool:
    """Add or remove a blocked term; True when something changed."""
    if blocked:
        result: str = await conn.execute(
            "INSERT INTO blocked_terms (room_id, term, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            room_id,
            term,
            actor_id,
        )
        return result != "INSERT 0 0"
    result = await conn.execute("DELETE FROM blocked_terms WHERE room_id = $1 AND term = $2", room_id, term)
    return result != "DELETE 0"


async def add_log(
    conn: Any, *, room_id: str, actor_id: str, actor_username: str, action: str, target: str, detail: str
) -> None:
    """Record one moderation action."""
    await conn.execute(
        "INSERT INTO mod_log (room_id, actor_id, actor_username, action, target, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        room_id,
        actor_id,
        actor_username,
        action,
        target,
        detail,
    )


async def list_log(conn: Any, *, room_id: str, limit: int) -> list[Row]:
    """The latest moderation actions of a room, newest first."""
    rows: list[Row] = await conn.fetch(
        "SELECT actor_id, actor_username, action, target, detail, at FROM mod_log"
        " WHERE room_id = $1 ORDER BY id DESC LIMIT $2",
        room_id,
        limit,
    )
    return rows


async def prune_messages(conn: Any, *, before: datetime) -> int:
    """Forget messages older than the room stream keeps."""
    result: str = await conn.execute("DELETE FROM messages WHERE sent_at < $1", before)
    return int(result.split()[-1])
