"""All SQL of the edge service."""

from __future__ import annotations

from typing import Any

__all__ = [
    "count_viewers",
    "end_live",
    "end_session",
    "fetch_live",
    "heartbeat",
    "insert_viewer",
    "leave",
    "list_sessions",
    "put_live",
    "put_session",
    "session_stats",
    "stale_viewers",
    "viewer_curve",
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


async def put_session(
    conn: Any, *, session_id: str, channel_id: str, channel_name: str, started_at: Any
) -> None:
    """Keep the session for its history (idempotent)."""
    await conn.execute(
        "INSERT INTO sessions (session_id, channel_id, channel_name, started_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (session_id) DO NOTHING",
        session_id,
        channel_id,
        channel_name,
        started_at,
    )


async def end_session(
    conn: Any, *, session_id: str, channel_id: str, channel_name: str, started_at: Any, ended_at: Any
) -> None:
    """The session ended (idempotent; records it even if its start was never seen)."""
    await conn.execute(
        "INSERT INTO sessions (session_id, channel_id, channel_name, started_at, ended_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE SET ended_at = $5",
        session_id,
        channel_id,
        channel_name,
        started_at,
        ended_at,
    )


async def list_sessions(conn: Any, channel_id: str, limit: int) -> list[Any]:
    """The channel's most recent sessions, newest first."""
    rows: list[Any] = await conn.fetch(
        "SELECT session_id, started_at, ended_at FROM sessions WHERE channel_id = $1 "
        "ORDER BY started_at DESC LIMIT $2",
        channel_id,
        limit,
    )
    return rows


async def viewer_curve(
    conn: Any, *, session_id: str, started_at: Any, ended_at: Any, bucket: int
) -> list[Any]:
    """Viewers watching at the end of each `bucket`-second bucket from `started_at` to `ended_at`; the last
    bucket ends at `ended_at` (a viewer counts at `t` when joined_at <= t < left_at)."""
    rows: list[Any] = await conn.fetch(
        "WITH p AS (SELECT $2::timestamptz AS s, $3::timestamptz AS e, $4::float8 AS w), "
        "b AS (SELECT least(p.s + make_interval(secs => i * p.w), p.e) AS at FROM p, "
        "  generate_series(1, greatest(ceil(extract(epoch FROM p.e - p.s) / p.w)::int, 1)) AS i) "
        "SELECT b.at, (SELECT count(*) FROM viewers v WHERE v.session_id = $1 AND v.joined_at <= b.at "
        "  AND (v.left_at IS NULL OR v.left_at > b.at))::int AS viewers "
        "FROM b ORDER BY b.at",
        session_id,
        started_at,
        ended_at,
        float(bucket),
    )
    return rows


async def session_stats(conn: Any, *, session_id: str, started_at: Any, ended_at: Any) -> Any:
    """The session's exact peak (most viewers at once) and average viewers (watch time / duration)."""
    return await conn.fetchrow(
        "WITH p AS (SELECT $2::timestamptz AS s, $3::timestamptz AS e), "
        "v AS (SELECT greatest(joined_at, p.s) AS a, least(coalesce(left_at, p.e), p.e) AS b "
        "  FROM viewers, p WHERE session_id = $1), "
        "d AS (SELECT a AS at, 1 AS delta FROM v WHERE b > a UNION ALL SELECT b, -1 FROM v WHERE b > a), "
        "r AS (SELECT sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS n FROM d) "
        "SELECT coalesce((SELECT max(n) FROM r), 0)::int AS peak, "
        "  coalesce((SELECT sum(extract(epoch FROM b - a)) FROM v WHERE b > a), 0)::float8 "
        "  / greatest((SELECT extract(epoch FROM p.e - p.s) FROM p), 1)::float8 AS average",
        session_id,
        started_at,
        ended_at,
    )
