"""transcode: the adaptive ladder (AV1/Opus in WebM, DASH) of live sessions and their recordings.
Owned by services/transcode; the gateway serves the bucket's objects over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from proto.base import Event, Rpc, StreamSpec

STREAM = StreamSpec(
    name="TRANSCODE",
    subjects=("transcode.*.*",),
    max_age_seconds=30 * 24 * 3600,
    description="renditions and recordings",
)

# Init and media segments and manifests, under `<channel>/<session_id>/...` (see the helpers below).
BUCKET = "transcode-media"


# Chunks of the segments being made (low-latency DASH): in memory, kept about a window, read by the gateway
# with an ordered consumer per request (history, then live, with no gap between them).
CHUNK_STREAM = StreamSpec(
    name="TRANSCODE_CHUNKS",
    subjects=("dash.chunk.>",),
    max_age_seconds=30,
    duplicate_window_seconds=30,
    max_bytes=512 * 1024 * 1024,
    storage="memory",
    description="chunks of the live segments being made",
)
# Set on the last message of a segment's track: the segment is complete.
FINAL_CHUNK_HEADER = "Cpc-Final-Chunk"


def chunk_subject(session_id: str, track: str, number: int) -> str:
    """Where the chunks of one segment of one track are published, in order."""
    return f"dash.chunk.{session_id}.{track}.{number}"


def ll_manifest_object(channel: str) -> str:
    """The low-latency (chunked) dynamic manifest of the channel's current live session."""
    return f"{channel}/live-ll.mpd"


def live_manifest_object(channel: str) -> str:
    """The dynamic manifest of the channel's current live session."""
    return f"{channel}/live.mpd"


def vod_manifest_object(channel: str, session_id: str) -> str:
    """The static manifest of a recording."""
    return f"{channel}/{session_id}/vod.mpd"


def media_object(channel: str, session_id: str, track: str, name: str) -> str:
    """A segment or init segment: `track` is `v0`, `v1`, ... (video rungs) or `a` (audio)."""
    return f"{channel}/{session_id}/{track}/{name}"


class RenditionStarted(Event, frozen=True, kw_only=True):
    """A transcoder took the session: its ladder is (or will be) at `/live/<channel>/manifest.mpd`."""

    subject: ClassVar[str] = "transcode.rendition.started"

    session_id: str
    channel_id: str
    channel_name: str
    process_id: str
    encoder: str


class RecordingReady(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "transcode.recording.ready"

    recording_id: str
    channel_id: str
    channel_name: str
    duration_ms: int


class RecordingDeleted(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "transcode.recording.deleted"

    recording_id: str
    channel_id: str
    channel_name: str
    reason: str


# Requests and replies ---------------------------------------------------------------------------------


class Recording(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    channel_name: str
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    segments: int
    manifest_url: str


class ListRecordings(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str
    limit: int = 20


class RecordingList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Recording]


class DeleteRecording(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str
    recording_id: str
    actor_id: str


class GetPlayback(msgspec.Struct, frozen=True, kw_only=True):
    channel_name: str


class Playback(msgspec.Struct, frozen=True, kw_only=True):
    """How a channel can be watched now: `transcoded` is false when no transcoder took its live session
    (WebRTC playback still works); `dash_url` is set once the first segment is out."""

    channel_name: str
    live: bool
    transcoded: bool
    dash_url: str | None = None
    session_id: str | None = None
    renditions: list[str] = []


LIST_RECORDINGS = Rpc("transcode.recordings", ListRecordings, RecordingList)
DELETE_RECORDING = Rpc("transcode.delete", DeleteRecording, Recording)
PLAYBACK = Rpc("transcode.playback", GetPlayback, Playback)
