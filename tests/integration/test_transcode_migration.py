"""The transcode schema's move to copies on a real PostgreSQL: a database made before it keeps the
transcoder's own state of each session, and a session reads back as copy plus own state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from libs.replica import Replica
from proto import ingest
from services.transcode import store
from services.transcode.app import MIGRATIONS
from services.transcode.domain import Rung, SegmentInfo
from tests.integration.upgrades import upgraded

_OLD_ROWS = """
INSERT INTO sessions (session_id, channel_id, channel_name, started_at, epoch_us, rungs, has_audio, encoder,
                      process_id, finished)
VALUES ('s1', 'c1', 'chan', now(), 42, '"[{\\"width\\": 320, \\"height\\": 180, \\"kbps\\": 300}]"', true,
        'libsvtav1', NULL, true);
INSERT INTO segments (session_id, number, start_ms, duration_ms, bytes) VALUES ('s1', 1, 0, 1000, 10);
INSERT INTO channel_owners (channel_id, name, owner_id) VALUES ('c1', 'chan', 'u1');
"""


async def test_a_database_from_before_the_copies_keeps_the_transcoders_own_state(
    database_url: str, tmp_path: Path
) -> None:
    async with upgraded(database_url, MIGRATIONS, tmp_path, upto=1, old_rows=_OLD_ROWS) as up:
        conn, tables = up.conn, up.tables
        assert up.applied == [2]
        assert "channel_owners" not in tables
        assert "sessions" not in tables
        sessions = Replica(ingest.LIVE_SESSION)
        await sessions.install(conn)
        await store.index_copies(conn)
        started = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        event = ingest.SessionStarted(
            session_id="s1", channel_id="c1", channel_name="chan", started_at=started
        )
        await sessions.apply(conn, event)
        session = await store.fetch_session(conn, session_id="s1")
        assert session is not None
        assert (session.channel_name, session.started_at, session.ended_at) == ("chan", started, None)
        assert session.rungs == [Rung(width=320, height=180, kbps=300)]  # the old JSON string, unwrapped
        assert (session.epoch_us, session.has_audio, session.encoder, session.finished) == (
            42, True, "libsvtav1", True
        )  # fmt: skip
        assert await store.list_segments(conn, session_id="s1") == [
            SegmentInfo(number=1, start_ms=0, duration_ms=1000)
        ]
        latest = await store.latest_session(conn, channel_name="chan")
        assert latest is not None
        assert latest.session_id == "s1"
        await store.delete_recording(conn, recording_id="s1")  # the segments go with the own state
        assert await store.list_segments(conn, session_id="s1") == []
