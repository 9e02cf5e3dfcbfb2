"""The media wire format, aiortc's packetizer run once per frame, and the aiortc hooks the extension relies on."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder

from libs.media.aiortc_ext import Packetizer, check_hooks
from libs.media.frames import MediaFrame, h264_size, is_keyframe, pack_frame, unpack_frame


def test_aiortc_hooks_are_where_the_extension_expects_them() -> None:
    """Fails loudly when an aiortc upgrade moves the internals libs/media/aiortc_ext.py patches."""
    check_hooks()


def test_frame_round_trip_and_bad_payloads() -> None:
    frame = MediaFrame(
        codec="vp8", keyframe=True, pts=3000, time_base=Fraction(1, 90000), capture_us=5, seq=7, data=b"x"
    )
    assert unpack_frame(pack_frame(frame)) == frame
    with pytest.raises(ValueError, match="shorter"):
        unpack_frame(b"CF")
    with pytest.raises(ValueError, match="magic"):
        unpack_frame(b"XX" + pack_frame(frame)[2:])


def test_a_frame_packetized_once_is_cut_as_aiortc_would_cut_it() -> None:
    """Edge packetizes each frame once (rtp_fanout then sends those payloads to every viewer unchanged)."""
    packet = av.Packet(bytes(range(256)) * 20)
    packet.pts, packet.time_base = 3000, Fraction(1, 90000)
    packed = Packetizer("vp8").pack(packet)
    payloads, timestamp = Vp8Encoder().pack(packet)
    assert packed.timestamp == timestamp == 3000
    # Same cut; only the 4-byte descriptors differ (each packetizer starts at a random picture id).
    assert [p[4:] for p in packed.payloads] == [p[4:] for p in payloads]
    assert b"".join(p[4:] for p in packed.payloads) == bytes(packet)
    assert len(packed.payloads) > 1


@pytest.mark.parametrize(("width", "height"), [(320, 180), (1280, 720), (640, 360), (176, 144)])
@pytest.mark.parametrize("profile", ["baseline", "high"])
def test_h264_size_reads_what_libx264_wrote(width: int, height: int, profile: str) -> None:
    """The SPS parser agrees with a real encoder, cropping included (180 and 720 are not multiples of 16
    in macroblock rows for every size; high profile adds the chroma and scaling fields)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": profile}
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame))
    assert is_keyframe("h264", data)
    assert h264_size(data) == (width, height)
    assert h264_size(data[4:]) in ((0, 0), (width, height))  # damaged start code: no crash
