"""edge: viewer sessions (WHEP) and viewer counts. Owned by services/edge."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from proto.base import Event, Rpc, StreamSpec

STREAM = StreamSpec(
    name="EDGE",
    subjects=("edge.*.*",),
    max_age_seconds=7 * 24 * 3600,
    description="viewer sessions joined and left",
)


class WhepOffer(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str
    sdp: str
    viewer_id: str = ""


class WhepAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """DELETE goes to `edge.<process_id>.viewer.delete` with `resource`, the viewer session's secret."""

    viewer_session_id: str
    process_id: str
    resource: str
    sdp: str
    ice_links: list[str] = []


class ViewerRef(msgspec.Struct, frozen=True, kw_only=True):
    resource: str


class ViewerLeftReply(msgspec.Struct, frozen=True, kw_only=True):
    viewer_session_id: str


class CountViewers(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str


class ViewerCount(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str
    viewers: int


OFFER = Rpc("edge.offer", WhepOffer, WhepAnswer)
VIEWERS = Rpc("edge.viewers", CountViewers, ViewerCount)


def delete_rpc(process_id: str) -> Rpc[ViewerRef, ViewerLeftReply]:
    """DELETE of a viewer session held by edge process `process_id` (four tokens: the EDGE stream binds
    every three-token `edge.*.*` subject and would answer a three-token request with a PubAck)."""
    return Rpc(f"edge.{process_id}.viewer.delete", ViewerRef, ViewerLeftReply)


class Viewing(Event, frozen=True, kw_only=True):
    """What both viewer events say of a viewer session (not published itself: it has no subject)."""

    viewer_session_id: str
    channel_id: str
    channel_name: str
    session_id: str
    viewer_id: str = ""
    joined_at: datetime


class ViewerJoined(Viewing, frozen=True, kw_only=True):
    subject: ClassVar[str] = "edge.viewer.joined"


class ViewerLeft(Viewing, frozen=True, kw_only=True):
    subject: ClassVar[str] = "edge.viewer.left"

    left_at: datetime


class ViewerHistoryRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The channel's owner (`actor_id`) asks for one session's curve: `session_id`, or the latest."""

    channel: str
    actor_id: str
    session_id: str = ""
    bucket_seconds: int = 60
    sessions: int = 20


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    started_at: datetime
    ended_at: datetime | None = None


class ViewerPoint(msgspec.Struct, frozen=True, kw_only=True):
    """Viewers watching at `at`, the end of a bucket."""

    at: datetime
    viewers: int


class SessionCurve(msgspec.Struct, frozen=True, kw_only=True):
    """`bucket_seconds` may be wider than asked, so that a long session stays under 1,000 points."""

    session_id: str
    started_at: datetime
    ended_at: datetime | None
    bucket_seconds: int
    points: list[ViewerPoint]
    peak: int
    average: float


class ViewerHistory(msgspec.Struct, frozen=True, kw_only=True):
    """The channel's recent sessions, newest first, and the curve of the one asked for (None if none)."""

    channel_id: str
    channel_name: str
    sessions: list[SessionSummary]
    curve: SessionCurve | None = None


VIEWER_HISTORY = Rpc("edge.viewer_history", ViewerHistoryRequest, ViewerHistory)
