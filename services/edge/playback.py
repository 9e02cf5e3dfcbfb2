"""Viewer side: one NATS subscription per live session and track, fanned out as shared `Any`s to
bounded per-viewer tracks that aiortc's sender packetizes as they are (no decode, no encode)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from nats.aio.client import Client
from prometheus_client import Gauge

from libs.media.aiortc_ext import Packetizer
from libs.media.frames import unpack_frame
from libs.obs.logging import get_logger
from proto.ingest import keyframe_subject, media_subject
from services.edge.domain import ViewerQueue

__all__ = ["PacketTrack", "SessionFeed"]

log = get_logger("edge")

VIEWERS = Gauge("cpc_media_viewers", "WebRTC viewers this edge process serves.")

KEYFRAME_REQUEST_INTERVAL = 0.5


class PacketTrack(MediaStreamTrack):
    """A track whose `recv()` yields the encoded packets queued for one viewer."""

    def __init__(self, kind: str, capacity: int) -> None:
        super().__init__()
        self.kind = kind
        self.queue: ViewerQueue[Any] = ViewerQueue(capacity)
        self._ready = asyncio.Event()

    def push(self, packet: Any, keyframe: bool) -> bool:
        """Queue a packet for this viewer; False if it was dropped."""
        queued = self.queue.offer(packet, keyframe)
        if queued:
            self._ready.set()
        return queued

    async def recv(self) -> Any:
        """The next packet for the sender."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            packet = self.queue.take()
            if packet is not None:
                return packet
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        """End the track and wake its sender."""
        super().stop()
        self._ready.set()


class SessionFeed:
    """The frames of one live session in this process, shared by all its viewers."""

    def __init__(self, nc: Client, session_id: str) -> None:
        self.nc = nc
        self.session_id = session_id
        self.tracks: dict[str, set[PacketTrack]] = {"video": set(), "audio": set()}
        self._subs: list[Any] = []
        self._last_request = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._packetizers: dict[str, Packetizer] = {}

    async def start(self) -> None:
        """Subscribe to the session's tracks."""
        for kind in ("video", "audio"):
            self._subs.append(
                await self.nc.subscribe(media_subject(self.session_id, kind), cb=self._handler(kind))
            )

    def _handler(self, kind: str) -> Any:
        async def on_frame(msg: Any) -> None:
            try:
                frame = unpack_frame(msg.data)
            except ValueError as exc:
                log.warning("media_frame_invalid", session_id=self.session_id, error=str(exc))
                return
            tracks = self.tracks[kind]
            if not tracks:
                return
            packet = av.Packet(frame.data)
            packet.pts = frame.pts
            packet.time_base = frame.time_base
            packetizer = self._packetizers.get(frame.codec)
            if packetizer is None:
                packetizer = self._packetizers[frame.codec] = Packetizer(frame.codec)
            packed = packetizer.pack(packet)  # once for every viewer of this process
            dropped = False
            for track in tracks:
                dropped |= not track.push(packed, frame.keyframe)
            if dropped and kind == "video":
                self.ask_keyframe()

        return on_frame

    def add(self, track: PacketTrack) -> None:
        """Feed `track` from the next keyframe on (and ask the broadcaster for one now)."""
        if track.kind == "video" and track not in self.tracks["video"]:
            VIEWERS.inc()  # a viewer is counted by its video track
        self.tracks[track.kind].add(track)
        if track.kind == "video":
            self.ask_keyframe(force=True)

    def remove(self, track: PacketTrack) -> None:
        """Stop feeding `track`."""
        if track.kind == "video" and track in self.tracks["video"]:
            VIEWERS.dec()
        self.tracks[track.kind].discard(track)

    @property
    def empty(self) -> bool:
        """No viewer left."""
        return not any(self.tracks.values())

    def ask_keyframe(self, *, force: bool = False) -> None:
        """Ask ingest for a keyframe (rate-limited unless a new viewer needs one)."""
        now = time.monotonic()
        if not force and now - self._last_request < KEYFRAME_REQUEST_INTERVAL:
            return
        self._last_request = now
        task = asyncio.ensure_future(self.nc.publish(keyframe_subject(self.session_id), b""))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Unsubscribe."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
