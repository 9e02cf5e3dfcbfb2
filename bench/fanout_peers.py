"""The processes of bench/webrtc_fanout.py other than the one that orchestrates: many viewers of the edge
in one process (lean_viewer.py: real WebRTC, no aiortc receive path, one of them also decoded by a
reference decoder), viewers of the baseline server with aiortc's default receiver (they decode), and the
baseline server that re-encodes per viewer (aiortc's default path: decode once, MediaRelay, one encoder
per viewer).

Every process binds ICE on loopback only and uses no STUN server: no packet leaves the host. Each reports
raw (loop position, arrival) pairs; the orchestrator matches them with its send log.
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
from fanout_source import SOURCE_BPS
from lean_viewer import LeanViewer

from libs.media.ice import IceSettings, configure_ice
from libs.media.testpattern import read_marks

JOIN_CONCURRENCY = 8
# Frames sent up to the end of the window may arrive this much later and still count.
LATE_SECONDS = 3.0


def setup_process() -> None:
    """Loopback ICE, and aiortc's VP8 encoder (the baseline's) aiming at ~2.5 Mbit/s instead of 0.5."""
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
    """Decodes one viewer's frames in a thread and checks each picture's marks against the loop position
    its CRC-32 names (a damaged or wrong picture counts as bad)."""

    def __init__(self, positions: dict[int, int]) -> None:
        self.positions = positions
        self.good = self.bad = 0
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def feed(self, key: int, data: bytes) -> None:
        """Queue a frame for decoding (called on the event loop)."""
        self._queue.put((key, data))

    def drain(self, timeout: float) -> None:
        """Wait until every queued frame is decoded (it falls behind when the viewer process is loaded)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self) -> None:
        ctx: Any = av.CodecContext.create("vp8", "r")
        while (item := self._queue.get()) is not None:
            key, data = item
            try:
                for frame in ctx.decode(av.Packet(data)):
                    marks = read_marks(frame)
                    if marks is not None and marks[0] == self.positions.get(key):
                        self.good += 1
                    else:
                        self.bad += 1
            except av.error.FFmpegError:
                self.bad += 1
            finally:
                self._queue.task_done()

    def stop(self) -> None:
        """End the thread."""
        self._queue.put(None)
        self._thread.join(timeout=5)


class DecodingViewer:
    """A viewer of the baseline server with aiortc's default receiver: it decodes and reads the marks."""

    def __init__(self) -> None:
        self.pc = new_pc()
        self.samples: list[tuple[int, float]] = []  # loop position (the picture's counter), arrival
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
                self.samples.append((marks[0], time.time()))

    async def join(self, ask: Callable[[str], Any]) -> None:
        """Offer to the baseline server over the pipe, apply its answer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await ask(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


def _report(viewers: int, arrivals: list[list[tuple[int, float]]], **extra: Any) -> dict[str, Any]:
    """Raw figures of one viewer process: per viewer its (loop position, arrival) pairs."""
    return {"viewers": viewers, "arrivals": arrivals, **extra}


def _within(pairs: list[tuple[int, float]], t0: float, t1: float) -> list[tuple[int, float]]:
    return [(p, a) for p, a in pairs if t0 <= a <= t1 + LATE_SECONDS]


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


async def _edge_viewers(
    conn: Connection, gateway: str, channel: str, n: int, positions: dict[int, int], reference: bool
) -> None:
    ref = ReferenceDecoder(positions)
    viewers = [LeanViewer(ref.feed if i == 0 and reference else None) for i in range(n)]
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        await _join_all(viewers, lambda v: v.join(client, channel))
        flowing = await _until_flowing(lambda: sum(1 for v in viewers if v.arrivals), n)
        conn.send(("ready", flowing))
        _, t0, t1 = await _recv(conn)
        await asyncio.sleep(LATE_SECONDS)  # frames sent just before t1 are still on their way
        await asyncio.get_running_loop().run_in_executor(None, ref.drain, 120.0)
        unknown = sum(1 for v in viewers for key, _ in v.arrivals if key not in positions)
        arrivals = [
            [(positions[k], a) for k, a in _within(v.arrivals, t0, t1) if k in positions] for v in viewers
        ]
        extra = {
            "unknown": unknown,
            "ref_good": ref.good,
            "ref_bad": ref.bad,
            "packets": sum(v.packets for v in viewers),
            "broken": sum(v.broken for v in viewers),
        }
        conn.send(("result", _report(n, arrivals, **extra)))
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
    conn.send(("result", _report(n, [_within(v.samples, t0, t1) for v in viewers])))
    for v in viewers:
        await v.pc.close()


def viewer_process(conn: Connection, mode: str, n: int, target: Any) -> None:
    """Child process: `n` viewers of the edge (target = (gateway URL, channel, CRC-32 -> loop position,
    whether one is decoded)) or of the baseline server (target = its pipe); reports ready, waits for the
    window, reports."""
    setup_process()
    if mode == "edge":
        gateway, channel, positions, reference = target
        asyncio.run(_edge_viewers(conn, gateway, channel, n, positions, reference))
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
