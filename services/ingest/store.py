"""All SQL of the ingest service. Every function takes a connection (a transaction's, where it locks) and
returns domain.Session Structs."""

from __future__ import annotations

from datetime import datetime

import msgspec
from asyncpg import Record

from libs.db import Connection
from services.ingest.domain import Session

__all__ = [
    "end_session",
    "fetch_open",
    "fetch_session",
    "heartbeat",
    "insert_session",
    "mark_announced",
    "resume_session",
    "set_grace",
    "sweep_candidates",
]


def _session(row: Record | None) -> Session | None:
    return None if row is None else msgspec.convert(dict(row), Session)


async def fetch_open(conn: Connection, channel_id: str) -> Session | None:
    """The channel's unfinished session, locked until commit, or None."""
    return _session(
        await conn.fetchrow(
            "SELECT * FROM sessions WHERE channel_id = $1 AND state <> 'ended' FOR UPDATE", channel_id
        )
    )


async def fetch_session(conn: Connection, session_id: str, *, lock: bool = True) -> Session | None:
    """One session by id (locked until commit unless `lock` is False), or None."""
    query = "SELECT * FROM sessions WHERE id = $1"
    return _session(await conn.fetchrow(query + " FOR UPDATE" if lock else query, session_id))


async def insert_session(
    conn: Connection,
    *,
    session_id: str,
    channel_id: str,
    channel_name: str,
    kind: str,
    process_id: str = "",
    resource: str = "",
    video_codec: str = "",
    audio_codec: str = "",
) -> Session:
    """A new live session."""
    row = await conn.fetchrow(
        "INSERT INTO sessions (id, channel_id, channel_name, kind, state, process_id, resource, "
        "video_codec, audio_codec) VALUES ($1, $2, $3, $4, 'live', $5, $6, $7, $8) "
        "RETURNING *",
        session_id,
        channel_id,
        channel_name,
        kind,
        process_id,
        resource,
        video_codec,
        audio_codec,
    )
    return msgspec.convert(dict(row), Session)


async def resume_session(
    conn: Connection, session_id: str, *, kind: str, process_id: str = "", resource: str = ""
) -> Session:
    """The same session, live again, now held by `process_id`."""
    row = await conn.fetchrow(
        "UPDATE sessions SET state = 'live', kind = $2, process_id = $3, resource = $4, last_seen = now(), "
        "grace_until = NULL WHERE id = $1 RETURNING *",
        session_id,
        kind,
        process_id,
        resource,
    )
    return msgspec.convert(dict(row), Session)


async def set_grace(conn: Connection, session_id: str, grace_until: datetime) -> Session | None:
    """The broadcaster dropped: the session waits for it until `grace_until`. None unless it was live."""
    return _session(
        await conn.fetchrow(
            "UPDATE sessions SET state = 'grace', resource = '', grace_until = $2 "
            "WHERE id = $1 AND state = 'live' RETURNING *",
            session_id,
            grace_until,
        )
    )


async def end_session(conn: Connection, session_id: str) -> Session | None:
    """The session is over; None if it already was."""
    return _session(
        await conn.fetchrow(
            "UPDATE sessions SET state = 'ended', resource = '', ended_at = now() "
            "WHERE id = $1 AND state <> 'ended' RETURNING *",
            session_id,
        )
    )


async def mark_announced(
    conn: Connection, session_id: str, *, width: int = 0, height: int = 0, bitrate_kbps: int = 0
) -> Session | None:
    """Record that the started event leaves, with what it measured; None if it already had."""
    return _session(
        await conn.fetchrow(
            "UPDATE sessions SET announced = true, width = $2, height = $3, bitrate_kbps = $4 "
            "WHERE id = $1 AND NOT announced RETURNING *",
            session_id,
            width,
            height,
            bitrate_kbps,
        )
    )


async def heartbeat(conn: Connection, process_id: str) -> None:
    """This process still holds its live sessions."""
    await conn.execute(
        "UPDATE sessions SET last_seen = now() WHERE process_id = $1 AND state = 'live' AND kind = 'whip'",
        process_id,
    )


async def sweep_candidates(conn: Connection, limit: int = 100) -> list[Session]:
    """Unfinished sessions that can expire (in grace, or a broadcaster's), the longest unrefreshed first,
    that no other process is sweeping right now (locked until commit)."""
    rows = await conn.fetch(
        "SELECT * FROM sessions WHERE state <> 'ended' AND (state = 'grace' OR kind = 'whip') "
        "ORDER BY coalesce(grace_until, last_seen) FOR UPDATE SKIP LOCKED LIMIT $1",
        limit,
    )
    return [msgspec.convert(dict(r), Session) for r in rows]
