"""Rules of edge, pure, no I/O: which codec a viewer's track gets, the events of a viewer session, the
viewer history's limits and its curve's window (which frames a viewer gets is the KeyframeGate of
libs/media/rtp_fanout.py)."""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

from libs.bus import BadRequest, Forbidden, NotFound
from proto import edge as pe
from proto.ingest import LiveSession

__all__ = [
    "MAX_POINTS",
    "CurveWindow",
    "SessionStats",
    "ViewerSession",
    "check_history_request",
    "check_owner",
    "choose_session",
    "curve_bucket",
    "curve_window",
    "session_curve",
    "track_codec",
    "viewer_joined",
    "viewer_left",
]

MAX_POINTS = 1000
MAX_BUCKET_SECONDS = 86400
MAX_SESSIONS = 100


class ViewerSession(msgspec.Struct, frozen=True, kw_only=True):
    """One stored viewer session (a row of edge.viewers): who watches which live session, served by edge
    process `process_id`, which refreshes `last_seen` while it serves it."""

    id: str
    channel_name: str
    channel_id: str
    session_id: str
    viewer_id: str = ""
    process_id: str
    joined_at: datetime
    last_seen: datetime
    left_at: datetime | None = None


class SessionStats(msgspec.Struct, frozen=True, kw_only=True):
    """A session's most viewers at once and its average viewers (watch time / duration)."""

    peak: int
    average: float


class CurveWindow(msgspec.Struct, frozen=True, kw_only=True):
    """The span a session's curve covers, from its start to `ended_at` (its end, or now while it is live),
    and its bucket."""

    session: pe.SessionSummary
    ended_at: datetime
    bucket: int


def track_codec(live: LiveSession, kind: str) -> str:
    """The codec a viewer's `kind` track carries: the broadcast's ('' when it has no such track)."""
    return live.video_codec if kind == "video" else live.audio_codec


def viewer_joined(v: ViewerSession) -> pe.ViewerJoined:
    """The event of a viewer session that began."""
    return pe.ViewerJoined(
        viewer_session_id=v.id, channel_id=v.channel_id, channel_name=v.channel_name,
        session_id=v.session_id, viewer_id=v.viewer_id, joined_at=v.joined_at,
    )  # fmt: skip


def viewer_left(v: ViewerSession) -> pe.ViewerLeft:
    """The event of a viewer session that ended."""
    return pe.ViewerLeft(
        viewer_session_id=v.id, channel_id=v.channel_id, channel_name=v.channel_name,
        session_id=v.session_id, viewer_id=v.viewer_id, joined_at=v.joined_at,
        left_at=v.left_at or v.last_seen,
    )  # fmt: skip


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


def choose_session(
    sessions: list[pe.SessionSummary], session_id: str, *, channel: str
) -> pe.SessionSummary | None:
    """The session asked for (NotFound naming it if it is not among the recent ones), else the newest."""
    chosen = next((s for s in sessions if s.session_id == session_id), None)
    if session_id and chosen is None:
        raise NotFound(f'channel "{channel}" has no recent session "{session_id}"', code="session_not_found")
    return chosen or (sessions[0] if sessions else None)


def curve_bucket(duration_seconds: float, bucket_seconds: int) -> int:
    """The bucket asked for, widened so that the session has at most MAX_POINTS points."""
    return max(bucket_seconds, math.ceil(max(duration_seconds, 0.0) / MAX_POINTS))


def curve_window(session: pe.SessionSummary, bucket_seconds: int, now: datetime) -> CurveWindow:
    """The session's curve runs to its end (now while it is live) in buckets of at least `bucket_seconds`."""
    until = session.ended_at or now
    bucket = curve_bucket((until - session.started_at).total_seconds(), bucket_seconds)
    return CurveWindow(session=session, ended_at=until, bucket=bucket)


def session_curve(window: CurveWindow, points: list[pe.ViewerPoint], stats: SessionStats) -> pe.SessionCurve:
    """The curve as the owner sees it (the average to three places)."""
    session = window.session
    return pe.SessionCurve(
        session_id=session.session_id, started_at=session.started_at, ended_at=session.ended_at,
        bucket_seconds=window.bucket, points=points, peak=stats.peak, average=round(stats.average, 3),
    )  # fmt: skip
