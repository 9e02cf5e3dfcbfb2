"""ingest: live broadcast sessions (WHIP), their lifecycle events and the media subjects.
Owned by services/ingest; the channel and notification services react to the events."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from proto.base import Entity, Event, Lookup, Rpc, StreamSpec

STREAM = StreamSpec(
    name="STREAM",
    subjects=("stream.*.*",),
    max_age_seconds=30 * 24 * 3600,
    description="live stream session lifecycle",
)


class SessionStarted(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "stream.session.started"

    session_id: str
    channel_id: str
    channel_name: str
    started_at: datetime
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    bitrate_kbps: int = 0
    version: int = 1


class SessionEnded(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "stream.session.ended"

    session_id: str
    channel_id: str
    channel_name: str
    started_at: datetime
    ended_at: datetime
    version: int = 2


# Media on core NATS (never in a stream): one subject per session and track, payload libs.media.frames.
# Keyframe requests from any consumer go to media.<session_id>.keyframe (empty payload).


def media_subject(session_id: str, kind: str) -> str:
    """Encoded frames of one track of a session: `kind` is "video" or "audio"."""
    return f"media.{session_id}.{kind}"


def keyframe_subject(session_id: str) -> str:
    """Where a consumer asks the broadcaster of `session_id` for a keyframe."""
    return f"media.{session_id}.keyframe"


# Requests and replies ---------------------------------------------------------------------------------


class WhipOffer(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str
    stream_key: str
    sdp: str


class WhipAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer and where the session lives: PATCH/DELETE go to `ingest.<process_id>.patch|delete`
    with `resource`, the session's secret."""

    session_id: str
    process_id: str
    resource: str
    sdp: str
    resumed: bool = False
    ice_links: list[str] = []


class SessionPatch(msgspec.Struct, frozen=True, kw_only=True):
    """Trickle ICE or ICE restart: an SDP fragment (RFC 8840) for the session `resource`."""

    resource: str
    fragment: str


class PatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """`fragment` is the answer fragment of an ICE restart, empty for a trickle."""

    fragment: str = ""


class SessionRef(msgspec.Struct, frozen=True, kw_only=True):
    resource: str


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str


class OperatorSession(msgspec.Struct, frozen=True, kw_only=True):
    """Start or end a session without media; `drop` ends it as a lost connection would (grace period)."""

    channel_name: str
    drop: bool = False


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    channel_id: str
    channel_name: str
    state: str
    started_at: datetime
    ended_at: datetime | None = None


OFFER = Rpc("ingest.offer", WhipOffer, WhipAnswer)
OPERATOR_START = Rpc("ingest.start", OperatorSession, SessionState)
OPERATOR_END = Rpc("ingest.end", OperatorSession, SessionState)


def patch_rpc(process_id: str) -> Rpc[SessionPatch, PatchResult]:
    """PATCH of a session held by ingest process `process_id`."""
    return Rpc(f"ingest.{process_id}.patch", SessionPatch, PatchResult)


def delete_rpc(process_id: str) -> Rpc[SessionRef, SessionClosed]:
    """DELETE of a session held by ingest process `process_id`."""
    return Rpc(f"ingest.{process_id}.delete", SessionRef, SessionClosed)


# What other services may keep of a live session (libs.replica): started is version 1, ended version 2.


class LiveSession(msgspec.Struct, frozen=True, kw_only=True):
    """A broadcast session as other services keep it; `ended_at` is None while it is live."""

    session_id: str
    channel_id: str
    channel_name: str
    started_at: datetime
    ended_at: datetime | None = None
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    bitrate_kbps: int = 0
    version: int = 1


LOOKUP_SESSION = Rpc("ingest.lookup_session", Lookup, LiveSession)

LIVE_SESSION = Entity(
    name="live_session",
    struct=LiveSession,
    key="session_id",
    lookups=("session_id",),
    stream=STREAM,
    events=(SessionStarted, SessionEnded),
    lookup=LOOKUP_SESSION,
)
