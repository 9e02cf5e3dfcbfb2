"""The edge schema's move to copies on a real PostgreSQL: a database made before it loses only its old
live_sessions table, keeps its viewers and its history of sessions, finds a channel's open session in the
copy, and a session's end (the copy's on_change) records it and lets its viewers leave."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from libs.bus import utcnow
from libs.replica import Replica
from proto import ingest as pi
from services.edge import store
from services.edge.app import MIGRATIONS
from services.edge.events import SessionEvents
from tests.integration.upgrades import upgraded

_OLD_ROWS = """
INSERT INTO live_sessions (channel_name, channel_id, session_id, video_codec, audio_codec, started_at)
VALUES ('painter', 'c1', 's1', 'vp8', 'opus', now() - interval '1 hour');
INSERT INTO sessions (session_id, channel_id, channel_name, started_at)
VALUES ('s1', 'c1', 'painter', now() - interval '1 hour');
INSERT INTO viewers (id, channel_name, channel_id, session_id, process_id)
VALUES ('v1', 'painter', 'c1', 's1', 'p1'), ('v2', 'painter', 'c1', 's1', 'p2');
"""


async def test_a_database_from_before_the_copies_reads_live_sessions_from_the_copy(
    database_url: str, tmp_path: Path
) -> None:
    async with upgraded(database_url, MIGRATIONS, tmp_path, upto=2, old_rows=_OLD_ROWS) as up:
        conn, tables = up.conn, up.tables
        assert up.applied == [3]
        assert "live_sessions" not in tables
        assert [s.session_id for s in await store.list_sessions(conn, "c1", 10)] == ["s1"]
        assert await store.count_viewers(conn, "painter") == 2

        sessions = Replica(pi.LIVE_SESSION)
        await sessions.install(conn)
        await store.index_copies(conn)
        assert await store.fetch_live(conn, "painter") is None  # until the copy has replayed
        started_at = utcnow() - timedelta(hours=1)
        common = {
            "session_id": "s1",
            "channel_id": "c1",
            "channel_name": "painter",
            "started_at": started_at,
        }
        async with conn.transaction():
            live = await sessions.apply(conn, pi.SessionStarted(**common, video_codec="vp8"))
        assert live is not None
        found = await store.fetch_live(conn, "painter")
        assert found is not None
        assert (found.session_id, found.video_codec, found.ended_at) == ("s1", "vp8", None)

        closed: list[str] = []
        events = SessionEvents(close_local=closed.append)
        async with conn.transaction():
            ended = await sessions.apply(conn, pi.SessionEnded(**common, ended_at=utcnow()))
            assert ended is not None
            await events.on_change(conn, ended, pi.SessionEnded(**common, ended_at=utcnow()))
        assert closed == ["s1"]
        assert await store.fetch_live(conn, "painter") is None
        assert await store.count_viewers(conn, "painter") == 0
        assert await store.left_among(conn, ["v1", "v2", "v3"]) == {"v1", "v2"}
        [history] = await store.list_sessions(conn, "c1", 10)
        assert history.ended_at is not None
