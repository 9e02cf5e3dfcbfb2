"""Rules of ingest's session lifecycle: start decisions, expiry, the events a session sends, its copy and
the WHIP PATCH fragment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from libs.bus import BadRequest, Conflict, Unprocessable
from proto import ingest as pi
from services.ingest import domain

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
GRACE, STALE = timedelta(seconds=10), timedelta(seconds=6)


def session(**changes: object) -> domain.Session:
    base = domain.Session(
        id="s1", channel_id="c1", channel_name="chan", kind="whip", state="live", video_codec="vp8",
        started_at=NOW - timedelta(minutes=5), last_seen=NOW,
    )  # fmt: skip
    return msgspec.structs.replace(base, **changes)


def decide(s: domain.Session | None, kind: str = "whip") -> str:
    return domain.decide_start(s, kind, NOW, grace=GRACE, stale=STALE)


def test_a_live_broadcaster_refuses_a_second_one_naming_the_channel() -> None:
    assert decide(session()) == "conflict"
    with pytest.raises(Conflict, match='"chan" is already live with another broadcaster'):
        domain.start_or_refuse(session(), "whip", NOW, channel="chan", grace=GRACE, stale=STALE)
    with pytest.raises(Conflict, match="with a broadcaster"):
        domain.start_or_refuse(session(), "operator", NOW, channel="chan", grace=GRACE, stale=STALE)


def test_a_dropped_or_silent_broadcaster_resumes_and_an_expired_one_starts_anew() -> None:
    assert decide(None) == "new"
    assert decide(session(state="grace", grace_until=NOW + GRACE)) == "resume"
    assert decide(session(state="grace", grace_until=NOW)) == "new"
    assert decide(session(last_seen=NOW - STALE)) == "resume"
    assert decide(session(last_seen=NOW - STALE - GRACE)) == "new"


def test_an_operator_session_never_expires_and_a_second_operator_start_is_the_same() -> None:
    op = session(kind="operator", last_seen=NOW - timedelta(days=1))
    assert not domain.is_expired(op, NOW, grace=GRACE, stale=STALE)
    assert decide(op, "operator") == "same"
    assert decide(op, "whip") == "conflict"


def test_a_session_ended_before_it_announced_sends_its_start_first() -> None:
    ended = session(state="ended", ended_at=NOW)
    events = domain.end_events(ended)
    assert [type(e) for e in events] == [pi.SessionStarted, pi.SessionEnded]
    assert [e.version for e in events] == [1, 2]
    assert [type(e) for e in domain.end_events(msgspec.structs.replace(ended, announced=True))] == [
        pi.SessionEnded
    ]


def test_the_copy_is_version_1_while_live_and_2_once_ended() -> None:
    live = domain.live_session(session(width=640, height=360))
    assert (live.version, live.ended_at, live.width, live.session_id) == (1, None, 640, "s1")
    assert domain.live_session(session(state="grace")).version == 1
    ended = domain.live_session(session(state="ended", ended_at=NOW))
    assert (ended.version, ended.ended_at) == (2, NOW)


def test_a_trickle_fragment_gives_its_candidates_and_an_ice_restart_is_refused() -> None:
    offer = "v=0\r\na=ice-ufrag:abcd\r\n"
    fragment = "a=ice-ufrag:abcd\r\na=mid:1\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n"
    trickle = domain.trickle_candidates(fragment, offer)
    assert trickle == domain.TrickleCandidates("1", ["1 1 udp 1 10.0.0.1 5000 typ host"])
    with pytest.raises(BadRequest, match="empty"):
        domain.trickle_candidates(" \r\n", offer)
    with pytest.raises(Unprocessable, match="ICE restart"):
        domain.trickle_candidates("a=ice-ufrag:other\r\n", offer)


def test_kbps() -> None:
    assert domain.kbps(125_000, 1.0) == 1000
    assert domain.kbps(10, 0) == 0
