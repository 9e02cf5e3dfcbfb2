"""All SQL of the ingest service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "end_session",
    "fetch_open",
    "fetch_resource",
    "heartbeat",
    "insert_session",
    "mark_announced",
    "resume_session",
    "set_grace",
    "sweep_candidates",
]


async def fetch_open(conn: Any, channel_id: str) -> Any:
    """The channel's unfinished session, locked until commit, or None."""
    return await conn.fetchrow(
        "SELECT * FROM sessions WHERE channel_id = $1 AND state <> 'ended' FOR UPDATE", channel_id
    )


async def fetch_resource(conn: Any, resource: str, *, lock: bool = True) -> Any:
    """The unfinished session whose secret is `resource`, or None."""
    query = "SELECT * FROM sessions WHERE resource = $1 AND state <> 'ended'"
    return await conn.fetchrow(query + " FOR UPDATE" if lock else query, resource)


async def fetch_session(conn: Any, session_id: str) -> Any:
    """One session by id, locked until commit, or None."""
    return await conn.fetchrow("SELECT * FROM sessions WHERE id = $1 FOR UPDATE", session_id)


async def insert_session(
    conn: Any,
    *,
    session_id: str,
    channel_id: str,
    channel_name: str,
    kind: str,
    process_id: str,
    resource: str,
    video_codec: str,
    audio_codec: str,
) -> Any:
    """A new live session."""
    return await conn.fetchrow(
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


async def resume_session(conn: Any, session_id: str, *, kind: str, process_id: str, resource: str) -> Any:
    """The same session, live again, now held by `process_id`."""
    return await conn.fetchrow(
        "UPDATE sessions SET state = 'live', kind = $2, process_id = $3, resource = $4, last_seen = now(), "
        "grace_until = NULL WHERE id = $1 RETURNING *",
        session_id,
        kind,
        process_id,
        resource,
    )


async def set_grace(conn: Any, session_id: str, grace_until: datetime) -> None:
    """The broadcaster dropped: the session waits for it until `grace_until`."""
    await conn.execute(
        "UPDATE sessions SET state = 'grace', resource = '', grace_until = $2 "
        "WHERE id = $1 AND state = 'live'",
        session_id,
        grace_until,
    )


async def end_session(conn: Any, session_id: str) -> Any:
    """The session is over; returns the row (None if it already was)."""
    return await conn.fetchrow(
        "UPDATE sessions SET state = 'ended', resource = '', ended_at = now() "
        "WHERE id = $1 AND state <> 'ended' RETURNING *",
        session_id,
    )


async def mark_announced(conn: Any, session_id: str) -> bool:
    """Record that the started event left; False if it already had."""
    row = await conn.fetchrow(
        "UPDATE sessions SET announced = true WHERE id = $1 AND NOT announced RETURNING id", session_id
    )
    return row is not None


async def heartbeat(conn: Any, process_id: str) -> None:
    """This process still holds its live sessions."""
    await conn.execute(
        "UPDATE sessions SET last_seen = now() WHERE process_id = $1 AND state = 'live' AND kind = 'whip'",
        process_id,
    )


async def sweep_candidates(conn: Any) -> list[Any]:
    """Unfinished sessions no other process is sweeping right now (locked until commit)."""
    rows: list[Any] = await conn.fetch(
        "SELECT * FROM sessions WHERE state <> 'ended' FOR UPDATE SKIP LOCKED LIMIT 100"
    )
    return rows
