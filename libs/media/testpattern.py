"""A synthetic video source whose pictures carry their frame counter and capture time as black and white
blocks, so a receiver that decodes them can check order and measure glass-to-glass latency. A fourth row
repeats the counter inverted: a picture damaged by packet loss reads as unmarked, never as a wrong count."""

from __future__ import annotations

import asyncio
import functools
import time
from fractions import Fraction
from typing import Any, cast

import av
import numpy as np
from aiortc import MediaStreamTrack

__all__ = ["PatternTrack", "draw_marks", "marked_picture", "read_marks"]

BITS = 32
CLOCK = 90_000


def _draw(y: np.ndarray[Any, Any], row: int, value: int, block: int) -> None:
    for bit in range(BITS):
        level = 235 if (value >> (BITS - 1 - bit)) & 1 else 16
        y[row * block : (row + 1) * block, bit * block : (bit + 1) * block] = level


def _read(y: np.ndarray[Any, Any], row: int, block: int) -> int:
    value = 0
    for bit in range(BITS):
        centre = y[row * block + block // 2, bit * block + block // 2]
        value = (value << 1) | int(centre > 128)
    return value


MASK = (1 << BITS) - 1


def read_marks(frame: av.VideoFrame) -> tuple[int, float] | None:
    """(frame counter, capture time in seconds since the epoch) drawn into a decoded picture; None when
    the check row does not match (the picture was damaged, e.g. decoded after a lost packet)."""
    y: np.ndarray[Any, Any]
    if frame.format.name == "yuv420p":
        # The luma plane is the gray picture: read it in place instead of converting the whole frame.
        plane = frame.planes[0]
        rows = np.frombuffer(cast(Any, plane), np.uint8).reshape(-1, plane.line_size)
        y = rows[: frame.height, : frame.width]
    else:
        y = frame.to_ndarray(format="gray")
    block = frame.width // BITS
    counter = _read(y, 0, block)
    if _read(y, 3, block) != counter ^ MASK:
        return None
    ms = (_read(y, 1, block) << 32) | _read(y, 2, block)
    return counter, ms / 1000


@functools.cache
def _texture(width: int, height: int) -> np.ndarray[Any, Any]:
    base = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    rng = np.random.default_rng(7)
    # Some texture so the encoder has real work (a flat picture compresses to nothing).
    base[:height, :] = rng.integers(60, 200, size=(height, width), dtype=np.uint8)
    return base


def marked_picture(width: int, height: int, counter: int, ms: int) -> np.ndarray[Any, Any]:
    """Picture `counter` of the pattern (yuv420p planes stacked) marked with it and `ms` (wall clock)."""
    data = _texture(width, height).copy()
    y = data[:height]
    block = width // BITS
    y[4 * block :] = np.roll(y[4 * block :], counter * 4, axis=1)
    draw_marks(y, counter, ms)
    return data


def draw_marks(y: np.ndarray[Any, Any], counter: int, ms: int) -> None:
    """Draw the frame counter, its check row and `ms` (capture time, ms since the epoch) into the top four
    block rows of a luma plane (blocks of width / 32 pixels, width >= 32), as `read_marks` and the DASH
    player probe read them."""
    block = y.shape[1] // BITS
    _draw(y, 0, counter & MASK, block)
    _draw(y, 3, (counter & MASK) ^ MASK, block)
    _draw(y, 1, ms >> 32, block)
    _draw(y, 2, ms & 0xFFFFFFFF, block)


class PatternTrack(MediaStreamTrack):
    """Video frames at `fps`, each marked with its counter and capture wall-clock time."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.counter = 0
        self._start = 0.0

    async def recv(self) -> av.VideoFrame:
        """The next marked frame, paced in real time."""
        if not self._start:
            self._start = time.monotonic()
        due = self._start + self.counter / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        data = marked_picture(self.width, self.height, self.counter, int(time.time() * 1000))
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = int((time.monotonic() - self._start) * CLOCK)
        frame.time_base = Fraction(1, CLOCK)
        self.counter += 1
        return frame
