"""Rules of edge: the viewer history's limits; pure, no I/O (which frames a viewer gets is the
KeyframeGate of libs/media/rtp_fanout.py)."""

from __future__ import annotations

import math

from libs.bus import BadRequest, Forbidden

__all__ = ["MAX_POINTS", "check_history_request", "check_owner", "curve_bucket"]

MAX_POINTS = 1000
MAX_BUCKET_SECONDS = 86400
MAX_SESSIONS = 100


def check_history_request(bucket_seconds: int, sessions: int) -> None:
    """A bucket of 1 s to a day and 1 to 100 sessions, or BadRequest naming the parameter."""
    if not 1 <= bucket_seconds <= MAX_BUCKET_SECONDS:
        raise BadRequest(
            f"bucket must be between 1 and {MAX_BUCKET_SECONDS} seconds, not {bucket_seconds}",
            code="invalid_bucket",
        )
    if not 1 <= sessions <= MAX_SESSIONS:
        raise BadRequest(
            f"sessions must be between 1 and {MAX_SESSIONS}, not {sessions}", code="invalid_sessions"
        )


def check_owner(owner_id: str, actor_id: str, *, channel: str) -> None:
    """Only the channel's owner sees its viewer history."""
    if not actor_id or owner_id != actor_id:
        raise Forbidden(f'only the owner of channel "{channel}" may see its viewer history', code="not_owner")


def curve_bucket(duration_seconds: float, bucket_seconds: int) -> int:
    """The bucket asked for, widened so that the session has at most MAX_POINTS points."""
    return max(bucket_seconds, math.ceil(max(duration_seconds, 0.0) / MAX_POINTS))
