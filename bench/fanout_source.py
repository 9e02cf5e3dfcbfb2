"""The broadcaster of bench/webrtc_fanout.py: marked 720p pictures (libs/media/synthetic.py's moving
plasma with libs/media/testpattern.py's marks) encoded once, before measuring, as
VP8 (~2.5 Mbit/s, a keyframe every 2 s) plus Opus, then sent in a loop over WHIP by aiortc's own sender
(which packetizes pre-encoded packets as they are), recording when each frame is handed to it.

A picture's marks carry its loop position (the counter row), so a decoding viewer can name the frame it
sees; a forwarding viewer names it by the CRC-32 of the frame's bytes, which nobody changes between here
and the viewer. `SendLog` turns (position, arrival) into the send time of that frame's latest send.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import zlib
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack

from libs.media.synthetic import plasma
from libs.media.testpattern import draw_marks

VIDEO_CLOCK = 90_000
SOURCE_BPS = 2_500_000


def encode_loop(width: int, height: int, fps: int, seconds: float, gop_seconds: float) -> list[bytes]:
    """`seconds` of moving plasma pictures with the marks (counter = loop position) as VP8 frames."""
    ctx: Any = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, VIDEO_CLOCK), Fraction(fps, 1)
    ctx.bit_rate, ctx.gop_size = SOURCE_BPS, int(gop_seconds * fps)
    ctx.options = {"deadline": "realtime", "cpu-used": "4", "lag-in-frames": "0", "static-thresh": "0"}
    # The first GOP is thrown away: libvpx's very first keyframe is ~10x the size of later ones.
    skip, count = ctx.gop_size, int(seconds * fps)
    if count % skip:
        raise ValueError(f"the loop ({count} frames) must be whole GOPs of {skip} frames")
    frames: list[bytes] = []
    for i in range(skip + count):
        planes = plasma(width, height, i)
        draw_marks(planes[:height], i - skip, 0)
        picture = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        picture.pts = i * VIDEO_CLOCK // fps
        frames.extend(bytes(p) for p in ctx.encode(picture))
    frames.extend(bytes(p) for p in ctx.encode(None))
    frames = frames[skip:]
    if len({zlib.crc32(f) for f in frames}) != len(frames):
        raise RuntimeError("two pre-encoded frames share a CRC-32; change the loop length")
    return frames


def encode_opus(seconds: float) -> list[bytes]:
    """A quiet 440 Hz tone as 20 ms Opus packets."""
    ctx: Any = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48_000, "stereo", "s16"
    ctx.time_base = Fraction(1, 48_000)
    out: list[bytes] = []
    for n in range(int(seconds * 50)):
        t = (np.arange(960) + n * 960) / 48_000
        pcm = np.repeat((np.sin(2 * np.pi * 440 * t) * 2000).astype(np.int16), 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, n * 960
        out.extend(bytes(p) for p in ctx.encode(frame))
    return out


class SendLog:
    """When each loop position was handed to the sender, to match arrivals with sends."""

    def __init__(self, positions: int) -> None:
        self.times: list[list[float]] = [[] for _ in range(positions)]
        self.all: list[float] = []

    def add(self, position: int, at: float) -> None:
        """Frame `position` of the loop was sent at `at` (wall clock, seconds)."""
        self.times[position].append(at)
        self.all.append(at)

    def sent_between(self, t0: float, t1: float) -> int:
        """Frames sent in [t0, t1]."""
        return bisect.bisect_right(self.all, t1) - bisect.bisect_left(self.all, t0)

    def send_time(self, position: int, arrival: float) -> float | None:
        """Send time of the latest send of `position` before `arrival` (loop longer than any latency)."""
        times = self.times[position]
        i = bisect.bisect_right(times, arrival)
        return times[i - 1] if i else None


class LoopTrack(MediaStreamTrack):
    """Pre-encoded packets in a loop, paced in real time; aiortc's sender packetizes them unchanged."""

    def __init__(self, kind: str, packets: list[bytes], rate: float, clock: int, log: SendLog | None) -> None:
        super().__init__()
        self.kind = kind
        self.packets, self.rate, self.clock, self.log = packets, rate, clock, log
        self.sent = 0
        self._start = 0.0

    async def recv(self) -> av.Packet[Any]:
        """The next packet, at its due time."""
        if not self._start:
            self._start = time.monotonic()
        due = self._start + self.sent / self.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        position = self.sent % len(self.packets)
        packet = av.Packet(self.packets[position])
        packet.pts = int(self.sent * self.clock / self.rate)
        packet.time_base = Fraction(1, self.clock)
        if self.log is not None:
            self.log.add(position, time.time())
        self.sent += 1
        return packet
