"""All SQL of the transcode service; each function takes a connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "claim_session",
    "delete_recording",
    "expired_recordings",
    "fetch_recording",
    "fetch_session",
    "finish_session",
    "heartbeat",
    "insert_recording",
    "insert_segment",
    "latest_session",
    "list_recordings",
    "list_segments",
    "mark_ended",
    "owner_of",
    "upsert_owner",
    "upsert_session",
]


async def upsert_session(
    conn: Any, *, session_id: str, channel_id: str, channel_name: str, started_at: datetime
) -> None:
    """Remember a live session (from stream.session.started); a replay changes nothing."""
    await conn.execute(
        "INSERT INTO sessions (session_id, channel_id, channel_name, started_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (session_id) DO NOTHING",
        session_id,
        channel_id,
        channel_name,
        started_at,
    )


async def claim_session(conn: Any, *, session_id: str, process_id: str, epoch_us: int, encoder: str) -> Any:
    """Take the session for `process_id`, keeping the timeline epoch of an earlier owner; the row, locked."""
    return await conn.fetchrow(
        "UPDATE sessions SET process_id = $2, heartbeat_at = now(), encoder = $4,"
        " epoch_us = COALESCE(epoch_us, $3) WHERE session_id = $1 RETURNING *",
        session_id,
        process_id,
        epoch_us,
        encoder,
    )


async def fetch_session(conn: Any, *, session_id: str, lock: bool = False) -> Any:
    """One session row or None."""
    if lock:
        return await conn.fetchrow("SELECT * FROM sessions WHERE session_id = $1 FOR UPDATE", session_id)
    return await conn.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id)


async def latest_session(conn: Any, *, channel_name: str) -> Any:
    """The channel's most recent session or None."""
    return await conn.fetchrow(
        "SELECT * FROM sessions WHERE channel_name = $1 ORDER BY started_at DESC LIMIT 1", channel_name
    )


async def heartbeat(conn: Any, *, session_id: str, process_id: str, rungs: str, has_audio: bool) -> bool:
    """Say `process_id` still transcodes the session; False when another replica has taken it."""
    status = await conn.execute(
        "UPDATE sessions SET heartbeat_at = now(), rungs = $3::jsonb, has_audio = has_audio OR $4"
        " WHERE session_id = $1 AND process_id = $2",
        session_id,
        process_id,
        rungs,
        has_audio,
    )
    return bool(status == "UPDATE 1")


async def mark_ended(conn: Any, *, session_id: str, ended_at: datetime) -> None:
    """Record the end of a session (from stream.session.ended)."""
    await conn.execute(
        "UPDATE sessions SET ended_at = COALESCE(ended_at, $2) WHERE session_id = $1", session_id, ended_at
    )


async def finish_session(conn: Any, *, session_id: str) -> None:
    """No more segments will come for the session."""
    await conn.execute(
        "UPDATE sessions SET finished = true, process_id = NULL WHERE session_id = $1", session_id
    )


async def insert_segment(
    conn: Any, *, session_id: str, number: int, start_ms: int, duration_ms: int, size: int
) -> None:
    """Record a stored segment; storing the same number again (a replay) keeps the newer timing."""
    await conn.execute(
        "INSERT INTO segments (session_id, number, start_ms, duration_ms, bytes) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (session_id, number) DO UPDATE SET start_ms = $3, duration_ms = $4, bytes = $5",
        session_id,
        number,
        start_ms,
        duration_ms,
        size,
    )


async def list_segments(conn: Any, *, session_id: str) -> list[Any]:
    """The session's segments in order."""
    rows: list[Any] = await conn.fetch(
        "SELECT number, start_ms, duration_ms FROM segments WHERE session_id = $1 ORDER BY number", session_id
    )
    return rows


async def insert_recording(conn: Any, *, session: Any, duration_ms: int, segments: int) -> bool:
    """Create the session's recording; False when it already exists."""
    status = await conn.execute(
        "INSERT INTO recordings (recording_id, channel_id, channel_name, started_at, ended_at, duration_ms,"
        " segments) VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7) ON CONFLICT DO NOTHING",
        session["session_id"],
        session["channel_id"],
        session["channel_name"],
        session["started_at"],
        session["ended_at"],
        duration_ms,
        segments,
    )
    return bool(status == "INSERT 0 1")


async def list_recordings(conn: Any, *, channel_name: str, limit: int) -> list[Any]:
    """A channel's recordings, newest first."""
    rows: list[Any] = await conn.fetch(
        "SELECT * FROM recordings WHERE channel_name = $1 ORDER BY started_at DESC LIMIT $2",
        channel_name,
        limit,
    )
    return rows


async def fetch_recording(conn: Any, *, recording_id: str) -> Any:
    """One recording row, locked, or None."""
    return await conn.fetchrow("SELECT * FROM recordings WHERE recording_id = $1 FOR UPDATE", recording_id)


async def delete_recording(conn: Any, *, recording_id: str) -> None:
    """Forget a recording and its segments (the objects are removed by the caller)."""
    await conn.execute("DELETE FROM sessions WHERE session_id = $1", recording_id)


async def expired_recordings(conn: Any, *, older_than: datetime, limit: int = 50) -> list[Any]:
    """Recordings that ended before `older_than`."""
    rows: list[Any] = await conn.fetch(
        "SELECT * FROM recordings WHERE ended_at < $1 ORDER BY ended_at LIMIT $2", older_than, limit
    )
    return rows


async def upsert_owner(conn: Any, *, channel_id: str, name: str, owner_id: str) -> None:
    """Remember who owns a channel."""
    await conn.execute(
        "INSERT INTO channel_owners (channel_id, name, owner_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (channel_id) DO UPDATE SET name = $2, owner_id = $3",
        channel_id,
        name,
        owner_id,
    )


async def owner_of(conn: Any, *, channel_id: str) -> str | None:
    """The owner's user id, or None when the channel is unknown here."""
    owner: str | None = await conn.fetchval(
        "SELECT owner_id FROM channel_owners WHERE channel_id = $1", channel_id
    )
    return owner
