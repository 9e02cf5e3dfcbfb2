"""One broadcaster's peer connection: encoded frames out of aiortc's receivers onto NATS (through
libs.media.frames.publish_frame), keyframe requests from NATS into PLIs, and a watchdog that notices a
broadcaster who is gone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from fractions import Fraction

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.media.aiortc_ext import request_keyframe, tap_receiver
from libs.media.frames import MediaFrame, h264_size, is_keyframe, pack_frame, publish_frame, vp8_size
from libs.obs.logging import get_logger
from proto.ingest import keyframe_subject
from services.ingest.domain import kbps

__all__ = ["BroadcastPeer", "Measured"]

log = get_logger("ingest")

# (width, height, kbit/s) measured over the first second of media
Measured = tuple[int, int, int]
PLI_MIN_INTERVAL = 0.25
MEASURE_SECONDS = 1.0


class BroadcastPeer:
    """Holds the pc of session `session_id`; calls `on_measured` once and `on_gone` when media stops."""

    def __init__(
        self,
        *,
        nc: Client,
        pc: RTCPeerConnection,
        session_id: str,
        resource: str,
        on_measured: Callable[[BroadcastPeer, Measured], Coroutine[None, None, None]],
        on_gone: Callable[[BroadcastPeer, str], Awaitable[None]],
        media_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.nc, self.pc = nc, pc
        self.session_id, self.resource = session_id, resource
        self.codecs: dict[str, str] = {}
        self._on_measured, self._on_gone = on_measured, on_gone
        self._media_timeout, self._connect_timeout = media_timeout, connect_timeout
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=2048)  # (kind, packed frame)
        self._seq: dict[str, int] = {}
        self._video_receiver: RTCRtpReceiver | None = None
        self._last_pli = 0.0
        self._last_media = 0.0
        self._size = (0, 0)
        self._measure_start = 0.0
        self._measured_bytes = 0
        self._measured = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None
        self.closed = False

    async def accept(self, offer_sdp: str) -> str:
        """Apply the offer, tap every receiver and return the answer SDP."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            self.codecs[kind] = transceiver._codecs[0].name.lower()
            tap_receiver(transceiver.receiver, self._sink(kind))
            if kind == "video":
                self._video_receiver = transceiver.receiver
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def start(self) -> None:
        """Begin publishing and listening for keyframe requests."""
        self._sub = await self.nc.subscribe(keyframe_subject(self.session_id), cb=self._keyframe_requested)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name=f"publish-{self.session_id}"),
            asyncio.create_task(self._watchdog(), name=f"watchdog-{self.session_id}"),
        ]

    def _sink(self, kind: str) -> Callable[[str, int, int, bytes], None]:
        def on_frame(codec: str, clock_rate: int, timestamp: int, data: bytes) -> None:
            now = time.time()
            self._last_media = time.monotonic()
            key = is_keyframe(codec, data)
            seq = self._seq.get(kind, 0)
            self._seq[kind] = seq + 1
            frame = MediaFrame(
                codec=codec,
                keyframe=key,
                pts=timestamp,
                time_base=Fraction(1, clock_rate),
                capture_us=int(now * 1_000_000),
                seq=seq,
                data=data,
            )
            self._measure(kind, codec, key, data)
            try:
                self._outbox.put_nowait((kind, pack_frame(frame)))
            except asyncio.QueueFull:
                log.warning("media_frame_dropped", session_id=self.session_id, kind=kind)

        return on_frame

    def _measure(self, kind: str, codec: str, key: bool, data: bytes) -> None:
        if self._measured:
            return
        if not self._measure_start:
            if kind == "video" and not key:
                return
            if kind == "video" and codec == "vp8":
                self._size = vp8_size(data)
            elif kind == "video" and codec == "h264":
                self._size = h264_size(data)
            self._measure_start = time.monotonic()
        self._measured_bytes += len(data)
        elapsed = time.monotonic() - self._measure_start
        if elapsed >= MEASURE_SECONDS:
            self._measured = True
            measured = (*self._size, kbps(self._measured_bytes, elapsed))
            self._tasks.append(asyncio.create_task(self._on_measured(self, measured)))

    async def _publish_loop(self) -> None:
        """Drain the outbox onto NATS, one frame at a time, in order.

        A task of this peer rather than a stream consumer: the frames come from aiortc's receiver callbacks,
        which are synchronous and must never wait on NATS, and they exist only while this peer does (it
        is cancelled on close). Media is core NATS, fire-and-forget: while NATS reconnects nats-py buffers
        what is published; a publish that fails anyway (its buffer full, the connection closed) loses that
        frame only, and the loop goes on (the next keyframe repairs the picture)."""
        failing = False
        while True:
            kind, payload = await self._outbox.get()
            try:
                await publish_frame(self.nc, self.session_id, kind, payload)
            except Exception as exc:
                if not failing:
                    log.warning("media_publish_failed", session_id=self.session_id, error=repr(exc))
                failing = True
                continue
            if failing:
                log.info("media_publish_recovered", session_id=self.session_id)
                failing = False

    async def _keyframe_requested(self, msg: Msg) -> None:
        await self.ask_keyframe()

    async def ask_keyframe(self) -> None:
        """PLI to the broadcaster, at most every 250 ms (every viewer joining asks)."""
        now = time.monotonic()
        if self._video_receiver is None or now - self._last_pli < PLI_MIN_INTERVAL:
            return
        self._last_pli = now
        with contextlib.suppress(Exception):
            await request_keyframe(self._video_receiver)

    async def _watchdog(self) -> None:
        started = time.monotonic()
        while not self.closed:
            await asyncio.sleep(0.5)
            state = self.pc.connectionState
            now = time.monotonic()
            if state in ("failed", "closed"):
                reason = f"connection_{state}"
            elif not self._last_media and now - started > self._connect_timeout:
                reason = "no_media"
            elif self._last_media and now - self._last_media > self._media_timeout:
                reason = "media_timeout"
            else:
                continue
            log.info("broadcaster_gone", session_id=self.session_id, reason=reason)
            await self._on_gone(self, reason)
            return

    async def close(self) -> None:
        """Stop publishing and close the peer connection (frees its UDP ports)."""
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        await self.pc.close()
