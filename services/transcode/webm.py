"""WebM (Matroska) segments for DASH: each segment is muxed on its own by FFmpeg's webm muxer in live mode
and split at its first Cluster into an init segment (EBML header, Segment, Info, Tracks) and a media segment
(the Clusters). Runs in worker threads (PyAV releases the GIL while muxing)."""

from __future__ import annotations

import io
import struct
import threading
from fractions import Fraction
from typing import Any

import av

__all__ = ["MS", "OPUS_HEAD", "Muxed", "mux_audio", "mux_video", "split_init"]

MS = Fraction(1, 1000)
_CLUSTER = bytes.fromhex("1F43B675")
# RFC 7845 section 5.1: OpusHead for 2 channels, 312 samples pre-skip, 48 kHz, no gain, mapping family 0.
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48_000, 0, 0)


class Muxed:
    """An init segment and the media segment that follows it."""

    __slots__ = ("init", "media")

    def __init__(self, init: bytes, media: bytes) -> None:
        self.init = init
        self.media = media


def split_init(data: bytes) -> Muxed:
    """Cut a live-mode WebM file into its header and its clusters."""
    at = data.find(_CLUSTER)
    if at < 0:
        raise ValueError("the WebM output has no Cluster")
    return Muxed(data[:at], data[at:])


_TEMPLATE_LOCK = threading.Lock()
_templates: dict[str, Any] = {}


def _template(codec: str) -> Any:
    """A never-opened stream of `codec` to copy: a stream made with `add_stream` gets its encoder opened
    when muxing starts (for AV1 a whole SVT-AV1 encoder, preset 8, per segment and rung, never flushed)."""
    with _TEMPLATE_LOCK:
        if codec not in _templates:
            holder = av.open(io.BytesIO(), "w", format="webm")  # kept alive: the stream points into it
            _templates[codec] = holder.add_stream(codec)
        return _templates[codec]


def _packet(data: bytes, pts: int, duration: int, keyframe: bool) -> Any:
    p = av.Packet(data)
    p.pts = p.dts = pts
    p.duration = duration
    p.time_base = MS
    p.is_keyframe = keyframe
    return p


def mux_video(
    frames: list[tuple[bytes, int, bool]], *, width: int, height: int, extradata: bytes | None, fps: int
) -> Muxed:
    """AV1 packets `(data, pts_ms, keyframe)` as one WebM segment."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream_from_template(_template("libsvtav1"))
        stream.width, stream.height = width, height
        stream.codec_context.framerate = Fraction(fps, 1)
        stream.time_base = MS
        if extradata:
            stream.codec_context.extradata = extradata
        step = 1000 // fps
        last = -1
        for data, pts, key in frames:
            if pts <= last:
                continue
            last = pts
            p = _packet(data, pts, step, key)
            p.stream = stream
            out.mux(p)
    return split_init(buf.getvalue())


def mux_audio(frames: list[tuple[bytes, int]]) -> Muxed:
    """Opus packets `(data, pts_ms)` (20 ms each) as one WebM segment, without re-encoding them."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream("opus", rate=48_000)
        stream.codec_context.layout = "stereo"
        stream.codec_context.extradata = OPUS_HEAD
        stream.time_base = MS
        last = -1
        for data, pts in frames:
            if pts <= last:  # jitter in capture times: the muxer needs increasing timestamps
                continue
            last = pts
            p = _packet(data, pts, 20, True)
            p.stream = stream
            out.mux(p)
    return split_init(buf.getvalue())
