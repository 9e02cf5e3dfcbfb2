"""Encoded frames on NATS: a fixed 32-byte header followed by the frame exactly as the codec produced it.

Header (network byte order): magic ``b"CF"``, version (1), flags (bit 0: keyframe), codec id, one spare
byte, the time base as numerator/denominator (u16, u32), ``pts`` (i64), capture wall clock in
microseconds since the epoch (i64) and a per-track sequence number (u32). Capture time travels so any
consumer can measure glass-to-glass latency.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from proto.ingest import keyframe_subject, media_subject

__all__ = [
    "CODEC_IDS",
    "HEADER_SIZE",
    "MediaFrame",
    "h264_size",
    "is_keyframe",
    "pack_frame",
    "publish_frame",
    "request_keyframe",
    "unpack_frame",
    "vp8_size",
]

_HEADER = struct.Struct("!2sBBBxHIqqI")
HEADER_SIZE = _HEADER.size
_MAGIC = b"CF"
_VERSION = 1
_KEYFRAME = 0x01

# Codec ids on the wire; new codecs (AV1 next) take new numbers, old ones never change.
CODEC_IDS: dict[str, int] = {"opus": 1, "vp8": 2, "h264": 3, "av1": 4}
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One encoded frame and what a receiver needs to send or time it."""

    codec: str
    keyframe: bool
    pts: int
    time_base: Fraction
    capture_us: int
    seq: int
    data: bytes


def pack_frame(frame: MediaFrame) -> bytes:
    """The frame as a NATS payload."""
    codec_id = CODEC_IDS.get(frame.codec)
    if codec_id is None:
        raise ValueError(f'unknown codec "{frame.codec}"')
    header = _HEADER.pack(
        _MAGIC,
        _VERSION,
        _KEYFRAME if frame.keyframe else 0,
        codec_id,
        frame.time_base.numerator,
        frame.time_base.denominator,
        frame.pts,
        frame.capture_us,
        frame.seq & 0xFFFFFFFF,
    )
    return header + frame.data


class _Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes = b"") -> None: ...


async def publish_frame(nc: _Publisher, session_id: str, kind: str, frame: MediaFrame | bytes) -> None:
    """Send one encoded frame (or its packed payload) of a session's `kind` track on core NATS: media is
    fire-and-forget, a lost frame is replaced by the next keyframe, never retried."""
    payload = frame if isinstance(frame, bytes) else pack_frame(frame)
    await nc.publish(media_subject(session_id, kind), payload)


async def request_keyframe(nc: _Publisher, session_id: str) -> None:
    """Ask the broadcaster of `session_id` for a keyframe (a viewer joined, or a decoder lost its place)."""
    await nc.publish(keyframe_subject(session_id), b"")


def unpack_frame(payload: bytes) -> MediaFrame:
    """Parse a NATS payload; ValueError names what is wrong with it."""
    if len(payload) < HEADER_SIZE:
        raise ValueError(f"media frame of {len(payload)} bytes is shorter than its header")
    magic, version, flags, codec_id, num, den, pts, capture_us, seq = _HEADER.unpack_from(payload)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError(f"media frame has magic {magic!r} version {version}, expected {_MAGIC!r} v1")
    codec = _CODEC_NAMES.get(codec_id)
    if codec is None or den == 0:
        raise ValueError(f"media frame has unknown codec id {codec_id} or time base {num}/{den}")
    return MediaFrame(
        codec=codec,
        keyframe=bool(flags & _KEYFRAME),
        pts=pts,
        time_base=Fraction(num, den),
        capture_us=capture_us,
        seq=seq,
        data=payload[HEADER_SIZE:],
    )


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own (VP8 key frame, H.264 IDR)."""
    if codec == "opus":
        return True
    if codec == "vp8":
        # RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame.
        return len(data) >= 10 and data[0] & 0x01 == 0
    if codec == "h264":
        return any(nal & 0x1F == 5 for nal in _h264_nal_types(data))
    return False


def _h264_nal_types(data: bytes) -> list[int]:
    """First byte of each NAL unit of an Annex B byte stream."""
    types = []
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        types.append(data[i + 3])
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def vp8_size(data: bytes) -> tuple[int, int]:
    """Width and height from a VP8 key frame header, (0, 0) for other frames."""
    if not is_keyframe("vp8", data) or data[3:6] != b"\x9d\x01\x2a":
        return 0, 0
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


def h264_size(data: bytes) -> tuple[int, int]:
    """Width and height from the first sequence parameter set of an Annex B access unit, (0, 0) without
    one (ITU-T H.264 section 7.3.2.1.1; cropping applied, as a decoder shows the picture)."""
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 7:
            end = data.find(b"\x00\x00\x01", i + 3)
            try:
                return _sps_size(data[i + 4 : end if end != -1 else len(data)])
            except IndexError:
                return 0, 0
        i = data.find(b"\x00\x00\x01", i + 3)
    return 0, 0


class _Bits:
    """An RBSP read bit by bit, with Exp-Golomb codes."""

    def __init__(self, nal: bytes) -> None:
        # Emulation prevention: 00 00 03 stands for 00 00.
        self.data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _sps_size(nal: bytes) -> tuple[int, int]:
    b = _Bits(nal)
    profile = b.u(8)
    b.u(16)  # constraint flags, level
    b.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = b.ue()
        if chroma_format == 3:
            b.u(1)  # separate_colour_plane_flag
        b.ue(), b.ue(), b.u(1)  # bit depths, qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for n in range(8 if chroma_format != 3 else 12):
                if b.u(1):
                    _skip_scaling_list(b, 16 if n < 6 else 64)
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1), b.se(), b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue(), b.u(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = b.ue() + 1, b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)  # mb_adaptive_frame_field_flag
    b.u(1)  # direct_8x8_inference_flag
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if b.u(1):  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        crop_x = 1 if chroma_format in (0, 3) else 2
        crop_y = (1 if chroma_format in (0, 2, 3) else 2) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    return width, height


def _skip_scaling_list(b: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + b.se() + 256) % 256
        last = nxt or last
