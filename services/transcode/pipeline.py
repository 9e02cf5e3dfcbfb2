"""PyAV media work: one decoder per session, one encoder per rung, each on its own thread (PyAV releases
the GIL in decode, scale and encode, so rungs encode in parallel). Nothing here runs on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from libs.obs.logging import get_logger
from services.transcode.domain import Rung

__all__ = ["DECODERS", "Decoder", "Ladder", "Packet", "RungEncoder", "choose_encoder"]

log = get_logger("transcode")

MS = Fraction(1, 1000)
# Decoder by codec name; the native `av1` decoder needs hardware, dav1d decodes AV1 in software.
DECODERS = {"vp8": "vp8", "h264": "h264", "av1": "libdav1d"}
HARDWARE = ("av1_vaapi", "av1_nvenc", "av1_qsv")

Packet = tuple[bytes, int, bool]  # encoded data, pts in ms, keyframe


class Decoder:
    """Decodes one video track's encoded frames into pictures."""

    def __init__(self, codec: str) -> None:
        name = DECODERS.get(codec)
        if name is None:
            raise ValueError(f'no decoder for video codec "{codec}"')
        self.ctx: Any = av.CodecContext.create(name, "r")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcode-decode")

    def decode(self, data: bytes, pts_ms: int) -> list[av.VideoFrame]:
        """Pictures out of one encoded frame (none while the decoder is missing a keyframe)."""
        packet = av.Packet(data)
        packet.pts = packet.dts = pts_ms
        packet.time_base = MS
        try:
            frames = self.ctx.decode(packet)
        except av.error.FFmpegError as exc:  # a lost frame: wait for the next keyframe
            log.warning("decode_failed", error=str(exc))
            return []
        for frame in frames:
            frame.pts = pts_ms
        return list(frames)

    def close(self) -> None:
        """Stop the decoder thread."""
        self.pool.shutdown(wait=True)


def _open(name: str, rung: Rung, fps: int, preset: int) -> Any:
    ctx: Any = av.CodecContext.create(name, "w")
    ctx.width, ctx.height = rung.width, rung.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = MS
    ctx.framerate = Fraction(fps, 1)
    ctx.bit_rate = rung.kbps * 1000
    # The sequence header goes to extradata, which becomes the WebM CodecPrivate (av1C).
    ctx.flags |= av.codec.context.Flags.global_header
    if name == "libsvtav1":
        # rtc=1: low-delay prediction and CBR; keyframes only where we force them (keyint off).
        ctx.options = {
            "preset": str(preset),
            "svtav1-params": "rtc=1:keyint=-1",
            "maxrate": str(rung.kbps * 1000),
        }
    else:
        ctx.options = {"maxrate": str(rung.kbps * 1000)}
    ctx.open()
    return ctx


def choose_encoder(hardware: str) -> str:
    """The configured hardware AV1 encoder when it opens here, else libsvtav1; the choice is logged."""
    for name in [h for h in (hardware.strip(),) if h]:
        if name not in HARDWARE:
            log.warning("encoder_unknown", encoder=name, known=list(HARDWARE))
            continue
        try:
            _open(name, Rung(width=640, height=360, kbps=500), 30, 12)
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("encoder_unavailable", encoder=name, error=str(exc))
            continue
        log.info("encoder_chosen", encoder=name, hardware=True)
        return name
    log.info("encoder_chosen", encoder="libsvtav1", hardware=False)
    return "libsvtav1"


class RungEncoder:
    """Scales pictures to one rung and encodes them with its own thread."""

    def __init__(self, rung: Rung, *, encoder: str, fps: int, preset: int) -> None:
        self.rung = rung
        self.ctx = _open(encoder, rung, fps, preset)
        self.extradata = bytes(self.ctx.extradata or b"")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"transcode-{rung.label}")
        self.last_pts = -1
        self.flushed = False
        self.busy_seconds = 0.0  # scaling and encoding time, for the realtime factor
        # Our own scaler: `frame.reformat` keeps one on the (shared) decoded picture, so the rung threads
        # would rebuild and race on a single SwsContext for their different sizes.
        self.scaler = VideoReformatter()

    def encode(self, frame: av.VideoFrame | None, pts_ms: int, keyframe: bool) -> list[Packet]:
        """Packets for one picture; `keyframe` forces a keyframe (a segment boundary), None flushes."""
        started = time.perf_counter()
        if frame is None:
            if self.flushed:
                return []
            self.flushed = True
            packets = self.ctx.encode(None)
        else:
            scaled = self.scaler.reformat(
                frame, width=self.rung.width, height=self.rung.height, format="yuv420p",
                interpolation=Interpolation.BILINEAR, threads=1,
            )  # fmt: skip
            # Pictures decoded from a keyframe come marked I, which would make every rung emit keyframes
            # there (3x slower, 2x bitrate): only segment boundaries may force one.
            scaled.pict_type = PictureType.I if keyframe else PictureType.NONE
            scaled.pts = pts_ms
            scaled.time_base = MS
            packets = self.ctx.encode(scaled)
        out = [(bytes(p), int(p.pts or 0), bool(p.is_keyframe)) for p in packets]
        if out:
            self.last_pts = out[-1][1]
        self.busy_seconds += time.perf_counter() - started
        return out

    def close(self) -> None:
        """Flush the encoder if the stream's end did not (SVT-AV1 must see its end) and stop the thread."""
        if not self.flushed:
            self.pool.submit(self.encode, None, 0, False).result()
        self.pool.shutdown(wait=True)


class Ladder:
    """Feeds every rung without waiting for it: a picture goes to each rung's thread at once and the
    caller decodes the next one meanwhile, so the small rungs and the decoder fill the time the largest
    rung spends encoding. At most `depth` pictures are in flight; packets come back in picture order."""

    def __init__(self, rungs: list[RungEncoder], *, depth: int = 4) -> None:
        self.rungs = rungs
        self.depth = depth
        self.pending: deque[asyncio.Future[list[list[Packet]]]] = deque()

    def submit(self, picture: av.VideoFrame, pts_ms: int, keyframe: bool) -> None:
        """Start encoding one picture on every rung."""
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(r.pool, r.encode, picture, pts_ms, keyframe) for r in self.rungs]
        self.pending.append(asyncio.gather(*jobs))

    async def collect(self) -> list[list[list[Packet]]]:
        """Per finished picture, each rung's packets: the ones done, and the oldest while over `depth`."""
        out = []
        while self.pending and (self.pending[0].done() or len(self.pending) > self.depth):
            out.append(await self.pending.popleft())
        return out

    async def flush(self) -> list[list[list[Packet]]]:
        """Every picture still in flight, then what the encoders held back (the end of the stream)."""
        out = [await job for job in self.pending]
        self.pending.clear()
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(r.pool, r.encode, None, 0, False) for r in self.rungs]
        out.append(list(await asyncio.gather(*jobs)))
        return out
