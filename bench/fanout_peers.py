"""The processes of bench/webrtc_fanout.py other than the one that orchestrates: many aiortc viewers in
one process (edge viewers that never decode, baseline viewers that do), and the baseline server that
re-encodes per viewer (aiortc's default path: decode once, MediaRelay, one encoder per viewer).

Every process binds ICE on loopback only and uses no STUN server: no packet leaves the host.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import av
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import vpx
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from libs.media.aiortc_ext import tap_receiver
from libs.media.ice import IceSettings, configure_ice
from libs.media.testpattern import read_marks

SOURCE_BPS = 2_500_000
JOIN_CONCURRENCY = 8
LATE_SECONDS = 1.0


def setup_process() -> None:
    """Loopback ICE, and aiortc's VP8 encoder aiming at ~2.5 Mbit/s instead of its 0.5 (max 1.5)."""
    configure_ice(IceSettings(hosts=["127.0.0.1"]))
    vpx.DEFAULT_BITRATE = SOURCE_BPS
    vpx.MAX_BITRATE = SOURCE_BPS + 500_000


def new_pc() -> RTCPeerConnection:
    """A peer connection without STUN (aiortc would otherwise ask Google's)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank), 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ReferenceDecoder:
    """Decodes one viewer's copy of the stream in a thread and maps each encoded frame (by the hash of its
    bytes, identical for every edge viewer since nobody re-encodes) to its marked counter and capture time."""

    def __init__(self) -> None:
        self.marks: dict[int, tuple[int, float]] = {}
        self.bytes_at: list[tuple[float, int]] = []
        self._queue: queue.Queue[tuple[int, str, bytes] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def drain(self, timeout: float) -> None:
        """Wait until every queued frame is decoded (it falls behind when the viewer process is loaded)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def feed(self, key: int, codec: str, data: bytes) -> None:
        """Queue a frame for decoding (called on the event loop)."""
        self.bytes_at.append((time.time(), len(data)))
        self._queue.put((key, codec, data))

    def _run(self) -> None:
        contexts: dict[str, Any] = {}
        while (item := self._queue.get()) is not None:
            key, codec, data = item
            ctx = contexts.get(codec) or contexts.setdefault(codec, av.CodecContext.create(codec, "r"))
            try:
                for frame in ctx.decode(av.Packet(data)):
                    if (marks := read_marks(frame)) is not None:  # damaged pictures count as lost
                        self.marks[key] = marks
            except av.error.FFmpegError:
                pass
            finally:
                self._queue.task_done()

    def stop(self) -> None:
        """End the thread."""
        self._queue.put(None)
        self._thread.join(timeout=5)


class EdgeViewer:
    """A WHEP viewer whose receivers are tapped: it records when each encoded frame arrives, no decode."""

    def __init__(self, reference: ReferenceDecoder | None) -> None:
        self.pc = new_pc()
        self.arrivals: list[tuple[int, float]] = []
        self.location = ""
        self._reference = reference
        video = self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        tap_receiver(video.receiver, self._on_video)
        tap_receiver(audio.receiver, lambda *_: None)

    def _on_video(self, codec: str, clock_rate: int, timestamp: int, data: bytes) -> None:
        key = hash(data)
        self.arrivals.append((key, time.time()))
        if self._reference is not None:
            self._reference.feed(key, codec, data)

    async def join(self, client: httpx.AsyncClient, channel: str) -> None:
        """WHEP POST through the gateway."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        r = await client.post(
            f"/api/v1/channels/{channel}/whep",
            content=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        r.raise_for_status()
        self.location = r.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))


class DecodingViewer:
    """A viewer of the baseline server with aiortc's default receiver: it decodes and reads the marks."""

    def __init__(self) -> None:
        self.pc = new_pc()
        self.samples: list[tuple[int, float, float]] = []  # counter, capture, arrival
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video" and (marks := read_marks(frame)) is not None:
                self.samples.append((*marks, time.time()))

    async def join(self, ask: Callable[[str], Any]) -> None:
        """Offer to the baseline server over the pipe, apply its answer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await ask(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


def _edge_stats(viewers: list[EdgeViewer], ref: ReferenceDecoder, t0: float, t1: float) -> dict[str, Any]:
    window = {k: v for k, v in ref.marks.items() if t0 <= v[1] <= t1}
    counters = [c for c, _ in window.values()]
    expected = (max(counters) - min(counters) + 1) if counters else 0
    delivered, latencies = 0, []
    for viewer in viewers:
        seen = set()
        for key, arrival in viewer.arrivals:
            mark = window.get(key)
            if mark is not None and key not in seen:
                seen.add(key)
                latencies.append(arrival - mark[1])
        delivered += len(seen)
    sent = sum(n for t, n in ref.bytes_at if t0 <= t <= t1)
    return _summary(len(viewers), expected, delivered, latencies, sent * 8 / max(t1 - t0, 1e-9))


def _baseline_stats(viewers: list[DecodingViewer], t0: float, t1: float) -> dict[str, Any]:
    counters = [c for v in viewers for c, cap, _ in v.samples if t0 <= cap <= t1]
    expected = (max(counters) - min(counters) + 1) if counters else 0
    delivered, latencies = 0, []
    for viewer in viewers:
        seen = {c: arrival - cap for c, cap, arrival in viewer.samples if t0 <= cap <= t1}
        delivered += len(seen)
        latencies.extend(seen.values())
    return _summary(len(viewers), expected, delivered, latencies, 0.0)


def _summary(n: int, expected: int, delivered: int, latencies: list[float], bps: float) -> dict[str, Any]:
    """Raw figures of one viewer process; the orchestrator merges processes (see `merge`)."""
    return {"viewers": n, "expected": expected, "delivered": delivered, "latencies": latencies, "bps": bps}


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of several viewer processes as one row."""
    n = sum(p["viewers"] for p in parts)
    wanted = sum(p["viewers"] * p["expected"] for p in parts)
    latencies = [x for p in parts for x in p["latencies"]]
    return {
        "viewers": n,
        "delivered": sum(p["delivered"] for p in parts) / wanted if wanted else 0.0,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "source_kbps": max((p["bps"] for p in parts), default=0.0) / 1000,
    }


async def _recv(conn: Connection) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


async def _join_all(viewers: list[Any], join: Callable[[Any], Any]) -> None:
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)

    async def one(viewer: Any) -> None:
        async with gate:
            await join(viewer)

    await asyncio.gather(*(one(v) for v in viewers))


async def _until_flowing(received: Callable[[], int], n: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while received() < n and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return received()


async def _edge_viewers(conn: Connection, gateway: str, channel: str, n: int) -> None:
    ref = ReferenceDecoder()
    viewers = [EdgeViewer(ref if i == 0 else None) for i in range(n)]
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        await _join_all(viewers, lambda v: v.join(client, channel))
        flowing = await _until_flowing(lambda: sum(1 for v in viewers if v.arrivals), n)
        conn.send(("ready", flowing))
        _, t0, t1 = await _recv(conn)
        await asyncio.sleep(LATE_SECONDS)  # frames captured just before t1 are still on their way
        await asyncio.get_running_loop().run_in_executor(None, ref.drain, 120.0)
        conn.send(("result", _edge_stats(viewers, ref, t0, t1)))
        ref.stop()
        for v in viewers:
            await client.delete(v.location)
            await v.pc.close()


async def _baseline_viewers(conn: Connection, server: Connection, n: int) -> None:
    lock = asyncio.Lock()

    async def ask(offer: str) -> str:
        async with lock:
            server.send(("offer", offer))
            answer: str = await _recv(server)
            return answer

    viewers = [DecodingViewer() for _ in range(n)]
    await _join_all(viewers, lambda v: v.join(ask))
    flowing = await _until_flowing(lambda: sum(1 for v in viewers if v.samples), n)
    conn.send(("ready", flowing))
    _, t0, t1 = await _recv(conn)
    await asyncio.sleep(LATE_SECONDS)
    conn.send(("result", _baseline_stats(viewers, t0, t1)))
    for v in viewers:
        await v.pc.close()


def viewer_process(conn: Connection, mode: str, n: int, target: Any) -> None:
    """Child process: `n` viewers of the edge (target = (gateway URL, channel)) or of the baseline server
    (target = its pipe); reports ready, waits for the measurement window, reports the figures."""
    setup_process()
    if mode == "edge":
        asyncio.run(_edge_viewers(conn, *target, n))
    else:
        asyncio.run(_baseline_viewers(conn, target, n))


async def _baseline_server(conn: Connection, viewers: Connection, gateway: str, channel: str) -> None:
    upstream = new_pc()
    upstream.addTransceiver("video", direction="recvonly")
    upstream.addTransceiver("audio", direction="recvonly")
    tracks: dict[str, Any] = {}
    upstream.on("track", lambda track: tracks.__setitem__(track.kind, track))
    await upstream.setLocalDescription(await upstream.createOffer())
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        r = await client.post(
            f"/api/v1/channels/{channel}/whep",
            content=upstream.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        r.raise_for_status()
    await upstream.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    relay, peers = MediaRelay(), []
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while not conn.poll():
        message = await loop.run_in_executor(None, lambda: viewers.recv() if viewers.poll(0.2) else None)
        if message is None:
            continue
        pc = new_pc()
        peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=message[1], type="offer"))
        for kind in ("video", "audio"):
            pc.addTrack(relay.subscribe(tracks[kind]))
        await pc.setLocalDescription(await pc.createAnswer())
        viewers.send(pc.localDescription.sdp)
    for pc in [*peers, upstream]:
        await pc.close()


def baseline_server_process(conn: Connection, viewers: Connection, gateway: str, channel: str) -> None:
    """Child process: watch the channel through edge once (decoding), re-encode for every viewer that
    offers over `viewers`; stops when anything arrives on `conn`."""
    setup_process()
    asyncio.run(_baseline_server(conn, viewers, gateway, channel))
