"""Rules of edge: the viewer history's limits, ownership, the chosen session and its curve's window, a
track's codec and the events of a viewer session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from libs.bus import BadRequest, Forbidden, NotFound
from proto import edge as pe
from proto.ingest import LiveSession
from services.edge import domain


def test_bucket_and_sessions_limits_name_the_parameter() -> None:
    domain.check_history_request(1, 1)
    domain.check_history_request(86400, 100)
    for bucket, sessions, word in ((0, 20, "bucket"), (86401, 20, "bucket"), (60, 0, "sessions")):
        with pytest.raises(BadRequest, match=word):
            domain.check_history_request(bucket, sessions)


def test_only_the_owner_sees_the_history() -> None:
    domain.check_owner("u1", "u1", channel="c")
    for actor in ("u2", ""):
        with pytest.raises(Forbidden, match='channel "c"'):
            domain.check_owner("u1", actor, channel="c")


def test_a_long_session_gets_a_wider_bucket_to_stay_under_the_point_limit() -> None:
    assert domain.curve_bucket(600, 60) == 60
    assert domain.curve_bucket(3600 * 10, 1) == 36
    assert domain.curve_bucket(-5, 10) == 10
    assert 3600 * 24 / domain.curve_bucket(3600 * 24, 5) <= domain.MAX_POINTS


NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_a_track_gets_the_broadcast_codec_of_its_kind() -> None:
    live = LiveSession(
        session_id="s", channel_id="c", channel_name="n", started_at=NOW, video_codec="vp8", audio_codec=""
    )
    assert domain.track_codec(live, "video") == "vp8"
    assert domain.track_codec(live, "audio") == ""


def test_the_session_asked_for_else_the_newest_and_an_unknown_one_is_named() -> None:
    newer = pe.SessionSummary(session_id="b", started_at=NOW)
    older = pe.SessionSummary(session_id="a", started_at=NOW - timedelta(hours=1), ended_at=NOW)
    assert domain.choose_session([newer, older], "a", channel="c") is older
    assert domain.choose_session([newer, older], "", channel="c") is newer
    assert domain.choose_session([], "", channel="c") is None
    with pytest.raises(NotFound, match='"nope"'):
        domain.choose_session([newer], "nope", channel="c")


def test_a_live_session_curve_runs_to_now_and_an_ended_one_to_its_end() -> None:
    live = pe.SessionSummary(session_id="b", started_at=NOW - timedelta(minutes=10))
    assert domain.curve_window(live, 60, NOW).ended_at == NOW
    ended = pe.SessionSummary(
        session_id="a", started_at=NOW - timedelta(days=2), ended_at=NOW - timedelta(days=1)
    )
    window = domain.curve_window(ended, 1, NOW)
    assert (window.ended_at, window.bucket) == (ended.ended_at, 87)


def test_a_viewer_that_left_is_one_left_event_with_its_times() -> None:
    v = domain.ViewerSession(
        id="v", channel_name="n", channel_id="c", session_id="s", process_id="p",
        joined_at=NOW - timedelta(minutes=1), last_seen=NOW, left_at=NOW,
    )  # fmt: skip
    assert domain.viewer_joined(v).joined_at == v.joined_at
    left = domain.viewer_left(v)
    assert (left.viewer_session_id, left.left_at, left.session_id) == ("v", NOW, "s")
