"""The media wire format, the viewer queue rules and the aiortc hooks the extension relies on."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import av
import pytest
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from libs.media.aiortc_ext import Packed, Packetizer, check_hooks, send_packed
from libs.media.frames import MediaFrame, pack_frame, unpack_frame
from services.edge.domain import ViewerQueue


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


def test_slow_viewer_skips_to_the_next_keyframe() -> None:
    q: ViewerQueue[int] = ViewerQueue(3)
    assert not q.offer(0, False)  # a viewer starts at a keyframe
    assert q.offer(1, True)
    assert q.offer(2, False)
    assert q.offer(3, False)
    assert not q.offer(4, False)  # full: drop the rest of this GOP
    assert q.take() is None
    assert not q.offer(5, False)
    assert q.offer(6, True)
    assert q.take() == 6


async def test_a_frame_packetized_once_goes_out_as_aiortc_would_cut_it() -> None:
    """Edge packetizes each frame once; every viewer's sender sends those payloads unchanged."""
    packet = av.Packet(bytes(range(256)) * 20)
    packet.pts, packet.time_base = 3000, Fraction(1, 90000)
    packed = Packetizer("vp8").pack(packet)
    payloads, timestamp = Vp8Encoder().pack(packet)
    assert packed.timestamp == timestamp == 3000
    # Same cut; only the 4-byte descriptors differ (each packetizer starts at a random picture id).
    assert [p[4:] for p in packed.payloads] == [p[4:] for p in payloads]
    assert b"".join(p[4:] for p in packed.payloads) == bytes(packet)
    assert len(packed.payloads) > 1

    class OneFrame(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> Packed:  # type: ignore[override]
            return packed

    sender = RTCRtpSender(OneFrame(), SimpleNamespace(state="new"))  # type: ignore[arg-type]
    send_packed(sender)
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    frame = await sender._next_encoded_frame(codec)
    assert frame is not None
    assert frame.payloads is packed.payloads
    assert frame.timestamp == 3000
