"""ingest: live broadcast sessions (WHIP). Owned by services/ingest (issue 5); defined early because
the channel and notification services react to it."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from libs.bus import Event, StreamSpec

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


class SessionEnded(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "stream.session.ended"

    session_id: str
    channel_id: str
    channel_name: str
    started_at: datetime
    ended_at: datetime
