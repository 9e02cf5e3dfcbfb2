"""All SQL of the edge service. Every function takes a connection (a transaction's, where it locks) and
returns Structs. Live sessions are read from the copy libs/replica.py keeps (copied_live_sessions, read
only here); edge's own tables are its viewers and its history of sessions."""

from __future__ import annotations

import msgspec

from libs.db import Connection
from proto import edge as pe
from proto.ingest import LiveSession
from services.edge.domain import CurveWindow, SessionStats, ViewerSession

__all__ = [
    "count_viewers",
    "fetch_live",
    "heartbeat",
    "index_copies",
    "insert_viewer",
    "leave",
    "leave_session",
    "left_among",
    "list_sessions",
    "record_session",
    "session_stats",
    "stale_viewers",
    "viewer_curve",
]


async def index_copies(conn: Connection) -> None:
    """Index the live-session copy for `fetch_live` (the copy's table is made at start, after the
    migrations); replicas starting together take turns."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || 'copies-index'))")
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS copied_live_sessions_open_by_channel"
            " ON copied_live_sessions (channel_name, started_at DESC) WHERE ended_at IS NULL"
        )


async def fetch_live(conn: Connection, channel_name: str) -> LiveSession | None:
    """The channel's open session (the newest, should an end still be on its way), or None."""
    row = await conn.fetchrow(
        "SELECT * FROM copied_live_sessions WHERE channel_name = $1 AND ended_at IS NULL "
        "ORDER BY started_at DESC LIMIT 1",
        channel_name,
    )
    return None if row is None else msgspec.convert(dict(row), LiveSession)


async def insert_viewer(
    conn: Connection, *, viewer_session_id: str, live: LiveSession, viewer_id: str, process_id: str
) -> ViewerSession:
    """A new viewer session of `live`."""
    row = await conn.fetchrow(
        "INSERT INTO viewers (id, channel_name, channel_id, session_id, viewer_id, process_id) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        viewer_session_id,
        live.channel_name,
        live.channel_id,
        live.session_id,
        viewer_id,
        process_id,
    )
    return msgspec.convert(dict(row), ViewerSession)


async def leave(conn: Connection, viewer_session_id: str) -> ViewerSession | None:
    """The viewer left; None if it already had."""
    row = await conn.fetchrow(
        "UPDATE viewers SET left_at = now() WHERE id = $1 AND left_at IS NULL RETURNING *", viewer_session_id
    )
    return None if row is None else msgspec.convert(dict(row), ViewerSession)


async def leave_session(conn: Connection, session_id: str) -> list[ViewerSession]:
    """Every viewer still watching the session leaves (it ended), whichever process serves them."""
    rows = await conn.fetch(
        "UPDATE viewers SET left_at = now() WHERE session_id = $1 AND left_at IS NULL RETURNING *", session_id
    )
    return [msgspec.convert(dict(r), ViewerSession) for r in rows]


async def left_among(conn: Connection, viewer_session_ids: list[str]) -> set[str]:
    """Which of these viewer sessions are over (their session ended, or they were taken for gone)."""
    rows = await conn.fetch(
        "SELECT id FROM viewers WHERE id = ANY($1::text[]) AND left_at IS NOT NULL", viewer_session_ids
    )
    return {r["id"] for r in rows}


async def heartbeat(conn: Connection, process_id: str) -> None:
    """This process still serves its viewers."""
    await conn.execute(
        "UPDATE viewers SET last_seen = now() WHERE process_id = $1 AND left_at IS NULL", process_id
    )


async def stale_viewers(conn: Connection, seconds: float, limit: int = 100) -> list[str]:
    """Viewer sessions whose process went silent, locked for this sweeper."""
    rows = await conn.fetch(
        "SELECT id FROM viewers WHERE left_at IS NULL AND last_seen < now() - make_interval(secs => $1) "
        "FOR UPDATE SKIP LOCKED LIMIT $2",
        seconds,
        limit,
    )
    return [r["id"] for r in rows]


async def count_viewers(conn: Connection, channel_name: str) -> int:
    """Viewers watching the channel now."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM viewers WHERE channel_name = $1 AND left_at IS NULL", channel_name
    )
    return n


async def record_session(conn: Connection, live: LiveSession) -> None:
    """Keep the session in the history, with its end once it has one (idempotent)."""
    await conn.execute(
        "INSERT INTO sessions (session_id, channel_id, channel_name, started_at, ended_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE "
        "SET ended_at = coalesce(EXCLUDED.ended_at, sessions.ended_at)",
        live.session_id,
        live.channel_id,
        live.channel_name,
        live.started_at,
        live.ended_at,
    )


async def list_sessions(conn: Connection, channel_id: str, limit: int) -> list[pe.SessionSummary]:
    """The channel's most recent sessions, newest first."""
    rows = await conn.fetch(
        "SELECT session_id, started_at, ended_at FROM sessions WHERE channel_id = $1 "
        "ORDER BY started_at DESC LIMIT $2",
        channel_id,
        limit,
    )
    return [msgspec.convert(dict(r), pe.SessionSummary) for r in rows]


async def viewer_curve(conn: Connection, window: CurveWindow) -> list[pe.ViewerPoint]:
    """Viewers watching at the end of each bucket of the window; the last bucket ends at its end (a viewer
    counts at `t` when joined_at <= t < left_at)."""
    rows = await conn.fetch(
        "WITH p AS (SELECT $2::timestamptz AS s, $3::timestamptz AS e, $4::float8 AS w), "
        "b AS (SELECT least(p.s + make_interval(secs => i * p.w), p.e) AS at FROM p, "
        "  generate_series(1, greatest(ceil(extract(epoch FROM p.e - p.s) / p.w)::int, 1)) AS i) "
        "SELECT b.at, (SELECT count(*) FROM viewers v WHERE v.session_id = $1 AND v.joined_at <= b.at "
        "  AND (v.left_at IS NULL OR v.left_at > b.at))::int AS viewers "
        "FROM b ORDER BY b.at",
        window.session.session_id,
        window.session.started_at,
        window.ended_at,
        float(window.bucket),
    )
    return [msgspec.convert(dict(r), pe.ViewerPoint) for r in rows]


async def session_stats(conn: Connection, window: CurveWindow) -> SessionStats:
    """The session's exact peak (most viewers at once) and average viewers (watch time / duration)."""
    row = await conn.fetchrow(
        "WITH p AS (SELECT $2::timestamptz AS s, $3::timestamptz AS e), "
        "v AS (SELECT greatest(joined_at, p.s) AS a, least(coalesce(left_at, p.e), p.e) AS b "
        "  FROM viewers, p WHERE session_id = $1), "
        "d AS (SELECT a AS at, 1 AS delta FROM v WHERE b > a UNION ALL SELECT b, -1 FROM v WHERE b > a), "
        "r AS (SELECT sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS n FROM d) "
        "SELECT coalesce((SELECT max(n) FROM r), 0)::int AS peak, "
        "  coalesce((SELECT sum(extract(epoch FROM b - a)) FROM v WHERE b > a), 0)::float8 "
        "  / greatest((SELECT extract(epoch FROM p.e - p.s) FROM p), 1)::float8 AS average",
        window.session.session_id,
        window.session.started_at,
        window.ended_at,
    )
    return msgspec.convert(dict(row), SessionStats)
