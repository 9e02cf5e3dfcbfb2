"""All SQL of the chat service: functions that take a connection and return Structs. Users and channels
are the copies libs/replica.py keeps (copied_users, copied_channels; read through the Replica, never
here); what chat owns of a room (its modes) is room_modes, keyed by the room id, which is the channel id."""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.db import Connection
from proto import chat as pc
from services.chat.domain import Emote, Standing

__all__ = [
    "StoredMessage",
    "add_log",
    "blocked_terms",
    "clear_room",
    "delete_ban",
    "delete_emote",
    "delete_message",
    "delete_user_messages",
    "deleted_among",
    "find_message",
    "granted_role",
    "insert_message",
    "list_log",
    "lock_room",
    "lock_sender",
    "prune_messages",
    "put_ban",
    "put_emote",
    "room_emotes",
    "room_modes",
    "set_follow",
    "set_modes",
    "set_role",
    "set_subscription",
    "set_term",
    "standing",
]


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message accepted into a room's stream, as recorded for limits and deletions."""

    message_id: str
    room_id: str
    user_id: str
    seq: int
    sent_at: datetime
    deleted: bool


def _changed(status: str) -> bool:
    """Whether a command's status ("INSERT 0 1", "DELETE 0", ...) names at least one row."""
    return status.split()[-1] != "0"


# --- rooms ---------------------------------------------------------------------------------------------


async def room_modes(conn: Connection, *, room_id: str) -> pc.Modes:
    """A room's modes (all off until a moderator sets one)."""
    row = await conn.fetchrow(
        "SELECT slow_seconds, followers_only_minutes, subscribers_only, emote_only FROM room_modes"
        " WHERE room_id = $1",
        room_id,
    )
    return pc.Modes() if row is None else msgspec.convert(dict(row), pc.Modes)


async def set_modes(conn: Connection, *, room_id: str, modes: pc.Modes) -> None:
    """Store a room's modes."""
    await conn.execute(
        "INSERT INTO room_modes (room_id, slow_seconds, followers_only_minutes, subscribers_only, emote_only)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) DO UPDATE SET slow_seconds = $2,"
        " followers_only_minutes = $3, subscribers_only = $4, emote_only = $5",
        room_id,
        modes.slow_seconds,
        modes.followers_only_minutes,
        modes.subscribers_only,
        modes.emote_only,
    )


async def lock_room(conn: Connection, *, room_id: str) -> None:
    """Serialise moderation in one room until commit (a mode change reads the modes it changes)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"room/{room_id}")


# --- what chat keeps of the channel's and social's events ---------------------------------------------


async def granted_role(conn: Connection, *, room_id: str, user_id: str) -> str:
    """The role the channel granted a user in a room ("moderator", "vip"), or ""."""
    role: str | None = await conn.fetchval(
        "SELECT role FROM roles WHERE room_id = $1 AND user_id = $2", room_id, user_id
    )
    return role or ""


async def set_role(conn: Connection, *, room_id: str, user_id: str, role: str, granted: bool) -> None:
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


async def set_follow(conn: Connection, *, room_id: str, user_id: str, followed_at: datetime | None) -> None:
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
    conn: Connection,
    *,
    room_id: str,
    user_id: str,
    tier: int,
    months: int,
    period_end: datetime,
    active: bool,
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


async def put_emote(conn: Connection, emote: Emote) -> None:
    """An emote usable in its room (every room for room id '')."""
    await conn.execute(
        "INSERT INTO emotes (emote_id, room_id, code, tier, animated) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (emote_id) DO NOTHING",
        emote.emote_id,
        emote.room_id,
        emote.code,
        emote.tier,
        emote.animated,
    )


async def delete_emote(conn: Connection, *, emote_id: str) -> None:
    """Forget a removed emote."""
    await conn.execute("DELETE FROM emotes WHERE emote_id = $1", emote_id)


async def room_emotes(conn: Connection, *, room_id: str) -> list[Emote]:
    """The global emotes and those of `room_id`."""
    rows = await conn.fetch(
        "SELECT emote_id, room_id, code, tier, animated FROM emotes WHERE room_id IN ('', $1)", room_id
    )
    return [msgspec.convert(dict(r), Emote) for r in rows]


# --- senders and messages ------------------------------------------------------------------------------

# The columns are Standing's fields; the role is the granted one (the owner is made broadcaster by the
# rules, which know the room).
_STANDING = """
SELECT
  coalesce((SELECT role FROM roles WHERE room_id = $1 AND user_id = $2), '') AS role,
  coalesce(s.tier, 0) AS sub_tier, coalesce(s.months, 0) AS sub_months,
  (SELECT followed_at FROM follows WHERE room_id = $1 AND user_id = $2) AS followed_at,
  (b.user_id IS NOT NULL AND b.until IS NULL) AS banned, coalesce(b.reason, '') AS ban_reason,
  b.until AS timeout_until,
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


async def standing(conn: Connection, *, room_id: str, user_id: str, window_start: datetime) -> Standing:
    """Granted role, subscription, follow, ban and recent sends of a user in a room, in one query."""
    return msgspec.convert(dict(await conn.fetchrow(_STANDING, room_id, user_id, window_start)), Standing)


async def lock_sender(conn: Connection, *, room_id: str, user_id: str) -> None:
    """Serialise one user's sends in one room until commit (rate limits stay exact across replicas)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{room_id}/{user_id}")


async def find_message(conn: Connection, *, message_id: str) -> StoredMessage | None:
    """A stored message by id."""
    row = await conn.fetchrow(
        "SELECT message_id, room_id, user_id, seq, sent_at, deleted FROM messages WHERE message_id = $1",
        message_id,
    )
    return None if row is None else msgspec.convert(dict(row), StoredMessage)


async def insert_message(
    conn: Connection, *, message_id: str, room_id: str, user_id: str, seq: int, sent_at: datetime
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


async def delete_message(conn: Connection, *, room_id: str, message_id: str) -> None:
    """Mark one message of a room deleted."""
    await conn.execute(
        "UPDATE messages SET deleted = true WHERE message_id = $1 AND room_id = $2", message_id, room_id
    )


async def delete_user_messages(conn: Connection, *, room_id: str, user_id: str) -> list[int]:
    """Mark a user's messages in a room deleted; returns their stream sequences."""
    rows = await conn.fetch(
        "UPDATE messages SET deleted = true"
        " WHERE room_id = $1 AND user_id = $2 AND NOT deleted RETURNING seq",
        room_id,
        user_id,
    )
    return [r["seq"] for r in rows]


async def clear_room(conn: Connection, *, room_id: str) -> None:
    """Mark every message of a room deleted."""
    await conn.execute("UPDATE messages SET deleted = true WHERE room_id = $1 AND NOT deleted", room_id)


async def deleted_among(conn: Connection, *, ids: list[str]) -> set[str]:
    """Which of `ids` were deleted (history shown on join leaves them out)."""
    rows = await conn.fetch(
        "SELECT message_id FROM messages WHERE message_id = ANY($1::text[]) AND deleted", ids
    )
    return {r["message_id"] for r in rows}


async def prune_messages(conn: Connection, *, before: datetime) -> int:
    """Forget messages older than the room stream keeps; how many."""
    result: str = await conn.execute("DELETE FROM messages WHERE sent_at < $1", before)
    return int(result.split()[-1])


# --- moderation ----------------------------------------------------------------------------------------


async def put_ban(
    conn: Connection, *, room_id: str, user_id: str, until: datetime | None, reason: str, actor_id: str
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


async def delete_ban(conn: Connection, *, room_id: str, user_id: str, timeout: bool) -> bool:
    """Lift a ban (timeout False) or a timeout; True when there was one."""
    kind = "until IS NOT NULL" if timeout else "until IS NULL"
    result: str = await conn.execute(
        f"DELETE FROM bans WHERE room_id = $1 AND user_id = $2 AND {kind}",  # noqa: S608
        room_id,
        user_id,
    )
    return _changed(result)


async def blocked_terms(conn: Connection, *, room_id: str) -> list[pc.BlockedTerm]:
    """A room's blocked terms, oldest first."""
    rows = await conn.fetch(
        "SELECT term, added_by, added_at FROM blocked_terms WHERE room_id = $1 ORDER BY added_at", room_id
    )
    return [msgspec.convert(dict(r), pc.BlockedTerm) for r in rows]


async def set_term(conn: Connection, *, room_id: str, term: str, actor_id: str, blocked: bool) -> bool:
    """Add or remove a blocked term; True when something changed."""
    if blocked:
        result: str = await conn.execute(
            "INSERT INTO blocked_terms (room_id, term, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            room_id,
            term,
            actor_id,
        )
    else:
        result = await conn.execute(
            "DELETE FROM blocked_terms WHERE room_id = $1 AND term = $2", room_id, term
        )
    return _changed(result)


async def add_log(conn: Connection, applied: pc.ModerationApplied, *, actor_username: str) -> None:
    """Record one moderation action, as its event tells it, with the actor's name."""
    await conn.execute(
        "INSERT INTO mod_log (room_id, actor_id, actor_username, action, target, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        applied.room_id,
        applied.actor_id,
        actor_username,
        applied.action,
        applied.target,
        applied.detail,
    )


async def list_log(conn: Connection, *, room_id: str, limit: int) -> list[pc.ModLogEntry]:
    """The latest moderation actions of a room, newest first."""
    rows = await conn.fetch(
        "SELECT actor_id, actor_username, action, target, detail, at FROM mod_log"
        " WHERE room_id = $1 ORDER BY id DESC LIMIT $2",
        room_id,
        limit,
    )
    return [msgspec.convert(dict(r), pc.ModLogEntry) for r in rows]
