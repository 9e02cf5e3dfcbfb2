"""All SQL of the transcode service; each function takes a connection and returns Structs.

A session is the live-session copy (`copied_live_sessions`, kept by libs/replica.py from ingest's
events, read only here) joined with the transcoder's own state of it (`transcodes`)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.db import Connection
from services.transcode import domain

__all__ = [
    "RecordingRow",
    "Session",
    "Transcode",
    "add_transcode",
    "claim_session",
    "delete_recording",
    "expired_recordings",
    "fetch_recording",
    "fetch_session",
    "finish_session",
    "has_segments",
    "heartbeat",
    "index_copies",
    "insert_recording",
    "insert_segment",
    "latest_session",
    "list_recordings",
    "list_segments",
]


class Transcode(msgspec.Struct, frozen=True, kw_only=True):
    """The transcoder's own state of one session."""

    session_id: str
    # Media timestamps (ms) count from here; a replica that takes over keeps the same timeline.
    epoch_us: int | None = None
    rungs: list[domain.Rung] = []
    has_audio: bool = False
    encoder: str = ""
    process_id: str | None = None
    heartbeat_at: datetime | None = None
    finished: bool = False


class Session(Transcode, frozen=True, kw_only=True):
    """A live session (the copy's fields) with the transcoder's state of it (defaults when it has none)."""

    channel_id: str
    channel_name: str
    started_at: datetime
    ended_at: datetime | None = None


class RecordingRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored recording: a finished session's segments under a static manifest."""

    recording_id: str
    channel_id: str
    channel_name: str
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    segments: int
    created_at: datetime


_SESSION = (
    "SELECT c.session_id, c.channel_id, c.channel_name, c.started_at, c.ended_at, t.epoch_us,"
    " COALESCE(t.rungs, '[]') AS rungs, COALESCE(t.has_audio, false) AS has_audio,"
    " COALESCE(t.encoder, '') AS encoder, t.process_id, t.heartbeat_at,"
    " COALESCE(t.finished, false) AS finished"
)


async def index_copies(conn: Connection) -> None:
    """Index the live-session copy by channel for `latest_session` (the copy's table is made at start, after
    the migrations); replicas starting together take turns."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || 'copies-index'))")
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS copied_live_sessions_channel"
            " ON copied_live_sessions (channel_name, started_at DESC)"
        )


async def add_transcode(conn: Connection, *, session_id: str) -> None:
    """Start the transcoder's state of a session; a repeat changes nothing."""
    await conn.execute(
        "INSERT INTO transcodes (session_id) VALUES ($1) ON CONFLICT (session_id) DO NOTHING", session_id
    )


async def claim_session(
    conn: Connection, *, session_id: str, process_id: str, epoch_us: int, encoder: str
) -> Transcode | None:
    """Take the session for `process_id`, keeping the timeline epoch of an earlier owner."""
    row = await conn.fetchrow(
        "UPDATE transcodes SET process_id = $2, heartbeat_at = now(), encoder = $4,"
        " epoch_us = COALESCE(epoch_us, $3) WHERE session_id = $1 RETURNING *",
        session_id,
        process_id,
        epoch_us,
        encoder,
    )
    return None if row is None else msgspec.convert(dict(row), Transcode)


async def fetch_session(conn: Connection, *, session_id: str, lock: bool = False) -> Session | None:
    """One session (copy and own state), its own state locked if asked; None when either is missing."""
    sql = (
        f"{_SESSION} FROM transcodes t JOIN copied_live_sessions c USING (session_id) WHERE t.session_id = $1"
    )
    row = await conn.fetchrow(f"{sql} FOR UPDATE OF t" if lock else sql, session_id)
    return None if row is None else msgspec.convert(dict(row), Session)


async def latest_session(conn: Connection, *, channel_name: str) -> Session | None:
    """The channel's most recent session, transcoded or not, or None."""
    row = await conn.fetchrow(
        f"{_SESSION} FROM copied_live_sessions c LEFT JOIN transcodes t USING (session_id)"
        " WHERE c.channel_name = $1 ORDER BY c.started_at DESC LIMIT 1",
        channel_name,
    )
    return None if row is None else msgspec.convert(dict(row), Session)


async def heartbeat(
    conn: Connection, *, session_id: str, process_id: str, rungs: list[domain.Rung], has_audio: bool
) -> bool:
    """Say `process_id` still transcodes the session; False when another replica has taken it."""
    status = await conn.execute(
        "UPDATE transcodes SET heartbeat_at = now(), rungs = $3, has_audio = has_audio OR $4"
        " WHERE session_id = $1 AND process_id = $2",
        session_id,
        process_id,
        msgspec.to_builtins(rungs),
        has_audio,
    )
    return bool(status == "UPDATE 1")


async def finish_session(conn: Connection, *, session_id: str) -> None:
    """No more segments will come for the session."""
    await conn.execute(
        "UPDATE transcodes SET finished = true, process_id = NULL WHERE session_id = $1", session_id
    )


async def insert_segment(
    conn: Connection, *, session_id: str, number: int, start_ms: int, duration_ms: int, size: int
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


async def list_segments(conn: Connection, *, session_id: str) -> list[domain.SegmentInfo]:
    """The session's segments in order."""
    rows = await conn.fetch(
        "SELECT number, start_ms, duration_ms FROM segments WHERE session_id = $1 ORDER BY number", session_id
    )
    return [msgspec.convert(dict(r), domain.SegmentInfo) for r in rows]


async def has_segments(conn: Connection, *, session_id: str) -> bool:
    """Whether any segment of the session is stored."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM segments WHERE session_id = $1)", session_id
    )
    return found


async def insert_recording(conn: Connection, *, session: Session, duration_ms: int, segments: int) -> bool:
    """Create the session's recording; False when it already exists."""
    status = await conn.execute(
        "INSERT INTO recordings (recording_id, channel_id, channel_name, started_at, ended_at, duration_ms,"
        " segments) VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7) ON CONFLICT DO NOTHING",
        session.session_id,
        session.channel_id,
        session.channel_name,
        session.started_at,
        session.ended_at,
        duration_ms,
        segments,
    )
    return bool(status == "INSERT 0 1")


async def list_recordings(conn: Connection, *, channel_name: str, limit: int) -> list[RecordingRow]:
    """A channel's recordings, newest first."""
    rows = await conn.fetch(
        "SELECT * FROM recordings WHERE channel_name = $1 ORDER BY started_at DESC LIMIT $2",
        channel_name,
        limit,
    )
    return [msgspec.convert(dict(r), RecordingRow) for r in rows]


async def fetch_recording(conn: Connection, *, recording_id: str) -> RecordingRow | None:
    """One recording, locked, or None."""
    row = await conn.fetchrow("SELECT * FROM recordings WHERE recording_id = $1 FOR UPDATE", recording_id)
    return None if row is None else msgspec.convert(dict(row), RecordingRow)


async def delete_recording(conn: Connection, *, recording_id: str) -> None:
    """Forget a recording, its segments and the transcoder's state (the objects are removed by the caller)."""
    await conn.execute("DELETE FROM transcodes WHERE session_id = $1", recording_id)


async def expired_recordings(conn: Connection, *, older_than: datetime, limit: int) -> list[RecordingRow]:
    """Up to `limit` recordings that ended before `older_than`, oldest first, locked (skipping locked)."""
    rows = await conn.fetch(
        "SELECT * FROM recordings WHERE ended_at < $1 ORDER BY ended_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        older_than,
        limit,
    )
    return [msgspec.convert(dict(r), RecordingRow) for r in rows]
