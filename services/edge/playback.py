"""Viewer side: one NATS subscription per live session and track; each frame is packetized once and
written to every viewer's RTP stream right away (libs/media/rtp_fanout.py): no decode, no encode, no
per-viewer packetizing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import av
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Gauge

from libs.media.aiortc_ext import Packetizer
from libs.media.frames import request_keyframe, unpack_frame
from libs.media.rtp_fanout import DirectSender
from libs.obs.logging import get_logger
from proto.ingest import media_subject

__all__ = ["SessionFeed"]

log = get_logger("edge")

VIEWERS = Gauge("cpc_media_viewers", "WebRTC viewers this edge process serves.")

KEYFRAME_REQUEST_INTERVAL = 0.5


class SessionFeed:
    """The frames of one live session in this process, shared by all its viewers."""

    def __init__(self, nc: Client, session_id: str) -> None:
        self.nc = nc
        self.session_id = session_id
        self.senders: dict[str, set[DirectSender]] = {"video": set(), "audio": set()}
        self._subs: list[Subscription] = []
        self._last_request = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._packetizers: dict[str, Packetizer] = {}

    async def start(self) -> None:
        """Subscribe to the session's tracks."""
        for kind in ("video", "audio"):
            self._subs.append(
                await self.nc.subscribe(media_subject(self.session_id, kind), cb=self._handler(kind))
            )

    def _handler(self, kind: str) -> Callable[[Msg], Awaitable[None]]:
        async def on_frame(msg: Msg) -> None:
            try:
                frame = unpack_frame(msg.data)
            except ValueError as exc:
                log.warning("media_frame_invalid", session_id=self.session_id, error=str(exc))
                return
            senders = self.senders[kind]
            if not senders:
                return
            packet = av.Packet(frame.data)
            packet.pts = frame.pts
            packet.time_base = frame.time_base
            packetizer = self._packetizers.get(frame.codec)
            if packetizer is None:
                packetizer = self._packetizers[frame.codec] = Packetizer(frame.codec)
            packed = packetizer.pack(packet)  # once for every viewer of this process
            dropped = False
            for sender in senders:
                dropped |= not sender.send(packed, frame.keyframe)
            if dropped and kind == "video":
                self.ask_keyframe()

        return on_frame

    def add(self, sender: DirectSender) -> None:
        """Feed `sender` from the next keyframe on (and ask the broadcaster for one now)."""
        if sender.kind == "video" and sender not in self.senders["video"]:
            VIEWERS.inc()  # a viewer is counted by its video sender
        self.senders[sender.kind].add(sender)
        if sender.kind == "video":
            self.ask_keyframe(force=True)

    def remove(self, sender: DirectSender) -> None:
        """Stop feeding `sender`."""
        if sender.kind == "video" and sender in self.senders["video"]:
            VIEWERS.dec()
        self.senders[sender.kind].discard(sender)

    @property
    def empty(self) -> bool:
        """No viewer left."""
        return not any(self.senders.values())

    def ask_keyframe(self, *, force: bool = False) -> None:
        """Ask ingest for a keyframe (rate-limited unless a new viewer needs one)."""
        now = time.monotonic()
        if not force and now - self._last_request < KEYFRAME_REQUEST_INTERVAL:
            return
        self._last_request = now
        task = asyncio.ensure_future(request_keyframe(self.nc, self.session_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Unsubscribe."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
