"""A synthetic broadcaster that publishes straight onto ingest's media subjects: natural-looking moving
pictures (plasma, not a flat pattern; optionally marked with their capture time) encoded as VP8 or H.264
and a tone as Opus, paced in real time, with keyframes on request. For transcoder tests and benchmarks
that need no WebRTC peer."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

from libs.media.frames import MediaFrame, pack_frame
from libs.media.testpattern import draw_marks
from proto.ingest import keyframe_subject, media_subject

__all__ = ["SyntheticBroadcast", "plasma"]

_ENCODERS = {"vp8": "libvpx", "h264": "libx264"}


def plasma(width: int, height: int, i: int) -> np.ndarray[Any, Any]:
    """A moving plasma picture, frame `i`, as yuv420p planes stacked (height * 3 / 2 rows)."""
    x = np.linspace(0, 6 * np.pi, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 4 * np.pi, height, dtype=np.float32)[:, None]
    t = i / 12.0
    v = np.sin(x + t) + np.sin(y * 0.7 - t * 1.3) + np.sin((x + y) * 0.5 + t * 0.7)
    luma = 128 + 70 * v / 3 + (np.arange(width)[None, :] * 7 + np.arange(height)[:, None] * 3 + i * 5) % 23
    out = np.empty((height * 3 // 2, width), dtype=np.uint8)
    out[:height] = np.clip(luma, 16, 235).astype(np.uint8)
    # The chroma planes (U then V, each a quarter of the picture) follow the luma rows: slow colour waves.
    out[height:] = (128 + 40 * np.sin(x / 2 + t * 0.5) * np.cos(y[: height // 2] + t)).astype(np.uint8)
    return out


class SyntheticBroadcast:
    """Encodes and publishes `media.<session>.video|audio` for a session until stopped."""

    def __init__(self, nc: Any, session_id: str, *, width: int = 320, height: int = 180, fps: int = 30,
                 codec: str = "vp8", audio: bool = True, marks: bool = False,
                 video_gap: tuple[float, float] | None = None) -> None:  # fmt: skip
        """`video_gap` (start, length) in seconds: no pictures then, as from a stalled camera or encoder
        (audio goes on)."""
        self.nc, self.session_id, self.marks, self.video_gap = nc, session_id, marks, video_gap
        self.width, self.height, self.fps, self.codec, self.audio = width, height, fps, codec, audio
        video: Any = av.CodecContext.create(_ENCODERS[codec], "w")
        self.video = video
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        self.video.time_base = Fraction(1, 90_000)
        video.framerate = Fraction(fps, 1)
        self.video.bit_rate = width * height * 8
        fast = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self.video.options = fast if codec == "vp8" else {"preset": "ultrafast", "tune": "zerolatency"}
        self.opus: Any = av.CodecContext.create("libopus", "w")
        self.opus.sample_rate, self.opus.layout, self.opus.format = 48_000, "stereo", "s16"
        self.opus.time_base = Fraction(1, 48_000)
        self.want_key = True
        self.frames_sent = 0
        self.seq = {"video": 0, "audio": 0}

    async def run(self, seconds: float) -> None:
        """Publish for `seconds` of wall-clock time, answering keyframe requests."""
        sub = await self.nc.subscribe(keyframe_subject(self.session_id), cb=self._on_keyframe)
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        i = 0
        # Audio capture times follow the audio clock (20 ms a packet) from the first video frame on.
        audio_epoch = time.time_ns() // 1000
        try:
            while (due := start + i / self.fps) < start + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                capture = time.time_ns() // 1000
                gap = self.video_gap
                stalled = gap is not None and gap[0] <= i / self.fps < gap[0] + gap[1]
                packets = (
                    []
                    if stalled
                    else await loop.run_in_executor(None, self._encode_video, i, capture // 1000)
                )
                for data, key in packets:
                    await self._send("video", data, key, i * 90_000 // self.fps, 90_000, capture)
                if self.audio:
                    for n, data in await loop.run_in_executor(None, self._encode_audio, i):
                        await self._send("audio", data, True, n * 960, 48_000, audio_epoch + n * 20_000)
                i += 1
        finally:
            await sub.unsubscribe()

    async def _on_keyframe(self, msg: Any) -> None:
        self.want_key = True

    async def _send(self, kind: str, data: bytes, key: bool, pts: int, clock: int, capture: int) -> None:
        codec = self.codec if kind == "video" else "opus"
        frame = MediaFrame(
            codec=codec, keyframe=key, pts=pts, time_base=Fraction(1, clock), capture_us=capture,
            seq=self.seq[kind], data=data,
        )  # fmt: skip
        self.seq[kind] += 1
        await self.nc.publish(media_subject(self.session_id, kind), pack_frame(frame))

    def _encode_video(self, i: int, capture_ms: int) -> list[tuple[bytes, bool]]:
        picture = plasma(self.width, self.height, i)
        if self.marks:  # counter and capture time, for glass-to-glass measurements (testpattern.read_marks)
            draw_marks(picture[: self.height], i, capture_ms)
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts = i * 90_000 // self.fps
        frame.pict_type = PictureType.I if self.want_key else PictureType.NONE
        self.want_key = False
        self.frames_sent += 1
        return [(bytes(p), bool(p.is_keyframe)) for p in self.video.encode(frame)]

    def _encode_audio(self, i: int) -> list[tuple[int, bytes]]:
        # Audio per video frame: 20 ms packets covering 1/fps s (rounded to whole packets over time).
        first, last = i * 50 // self.fps, (i + 1) * 50 // self.fps
        out: list[tuple[int, bytes]] = []
        for n in range(first, last):
            t = (np.arange(960) + n * 960) / 48_000
            tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
            pcm = np.repeat(tone, 2).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48_000, n * 960
            out.extend((int(p.pts or 0) // 960, bytes(p)) for p in self.opus.encode(frame))
        return out
