"""All SQL of the edge service."""

from __future__ import annotations

from typing import Any

__all__ = [
    "count_viewers",
    "end_live",
    "fetch_live",
    "heartbeat",
    "insert_viewer",
    "leave",
    "put_live",
    "stale_viewers",
]


async def put_live(
    conn: Any,
    *,
    channel_name: str,
    channel_id: str,
    session_id: str,
    video_codec: str,
    audio_codec: str,
    started_at: Any,
) -> None:
    """Record (or replace) the channel's live session."""
    await conn.execute(
        "INSERT INTO live_sessions (channel_name, channel_id, session_id, video_codec, audio_codec, "
        "started_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel_name) DO UPDATE SET channel_id = $2, "
        "session_id = $3, video_codec = $4, audio_codec = $5, started_at = $6",
        channel_name,
        channel_id,
        session_id,
        video_codec,
        audio_codec,
        started_at,
    )


async def end_live(conn: Any, session_id: str) -> None:
    """Forget the session (idempotent)."""
    await conn.execute("DELETE FROM live_sessions WHERE session_id = $1", session_id)


async def fetch_live(conn: Any, channel_name: str) -> Any:
    """The channel's live session, or None."""
    return await conn.fetchrow("SELECT * FROM live_sessions WHERE channel_name = $1", channel_name)


async def insert_viewer(
    conn: Any, *, viewer_session_id: str, live: Any, viewer_id: str, process_id: str
) -> Any:
    """A new viewer session."""
    return await conn.fetchrow(
        "INSERT INTO viewers (id, channel_name, channel_id, session_id, viewer_id, process_id) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        viewer_session_id,
        live["channel_name"],
        live["channel_id"],
        live["session_id"],
        viewer_id,
        process_id,
    )


async def leave(conn: Any, viewer_session_id: str) -> Any:
    """The viewer left; the row, or None if it already had."""
    return await conn.fetchrow(
        "UPDATE viewers SET left_at = now() WHERE id = $1 AND left_at IS NULL RETURNING *", viewer_session_id
    )


async def heartbeat(conn: Any, process_id: str) -> None:
    """This process still serves its viewers."""
    await conn.execute(
        "UPDATE viewers SET last_seen = now() WHERE process_id = $1 AND left_at IS NULL", process_id
    )


async def stale_viewers(conn: Any, seconds: float) -> list[Any]:
    """Viewers whose process went silent, locked for this sweeper."""
    rows: list[Any] = await conn.fetch(
        "SELECT id FROM viewers WHERE left_at IS NULL AND last_seen < now() - make_interval(secs => $1) "
        "FOR UPDATE SKIP LOCKED LIMIT 100",
        seconds,
    )
    return rows


async def count_viewers(conn: Any, channel_name: str) -> int:
    """Viewers watching the channel now."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM viewers WHERE channel_name = $1 AND left_at IS NULL", channel_name
    )
    return n
