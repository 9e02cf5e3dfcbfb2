"""Rules of the edge's viewer history: parameter limits, ownership, the widened bucket."""

from __future__ import annotations

import pytest

from libs.bus import BadRequest, Forbidden
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
