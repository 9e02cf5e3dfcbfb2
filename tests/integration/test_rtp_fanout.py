"""The edge's direct RTP writer (libs/media/rtp_fanout.py) against real aiortc receivers on loopback: real
ICE, DTLS and SRTP, aiortc's own parser, jitter buffer, NACK generator and VP8 decoder on the other end."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.clock import current_ntp_time
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from libs.media.aiortc_ext import Packed, Packetizer
from libs.media.ice import IceSettings, configure_ice
from libs.media.rtp_fanout import _HEADER, DirectSender, IdleTrack, KeyframeGate, check_fanout_hooks, ntp_now
from libs.media.testpattern import marked_picture, read_marks

configure_ice(IceSettings(hosts=["127.0.0.1"]))


def test_fanout_hooks_are_where_the_module_expects_them() -> None:
    """Fails loudly when an aiortc/aioice upgrade moves the internals rtp_fanout relies on."""
    check_fanout_hooks()


def test_ntp_clock_matches_aiortcs() -> None:
    ours, theirs = ntp_now(), current_ntp_time()
    assert abs(ours - theirs) < 2**32 // 100  # within 10 ms


async def test_header_and_extensions_are_what_aiortc_would_write() -> None:
    """Our 12-byte header and the cached extension block with the frame's abs-send-time spliced in equal
    aiortc's own serialization of the same packet."""
    pc = RTCPeerConnection()
    sender = pc.addTrack(IdleTrack("video"))
    direct = DirectSender(sender, KeyframeGate(0), lambda: None)
    params = RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=6, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            ),
        ],
        muxId="0",
    )
    direct._learn(params)
    extensions = HeaderExtensionsMap()
    extensions.configure(params)
    for ntp in (0, ntp_now(), 0xFFFFFFFFFFFFFFFF):
        packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x")
        packet.extensions.mid = "0"
        packet.extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
        ours = _HEADER.pack(0x90, 96, 1, 2, 3) + direct._extension_block(ntp) + b"x"
        assert ours == packet.serialize(extensions)
    await pc.close()


def test_gate_starts_at_a_keyframe_and_skips_to_the_next_one_when_the_backlog_grows() -> None:
    gate = KeyframeGate(1000)
    assert not gate.admit(False, 0)  # a viewer starts at a keyframe
    assert gate.admit(True, 0)
    assert gate.admit(False, 1000)
    assert not gate.admit(False, 1001)  # too much waiting in its socket: drop the rest of this GOP
    assert not gate.admit(False, 0)
    assert not gate.admit(True, 5000)  # even a keyframe waits until the backlog drained
    assert gate.admit(True, 0)
    assert gate.dropped == 4


def encoded_pattern(count: int) -> list[tuple[Packed, bool]]:
    """`count` marked 320x240 pictures as VP8 (first one a keyframe), packetized once."""
    ctx: Any = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base, ctx.bit_rate = Fraction(1, 90_000), 1_000_000
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packetizer, out = Packetizer("vp8"), []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(marked_picture(320, 240, i, 0), format="yuv420p")
        frame.pts = i * 3000
        for packet in ctx.encode(frame):
            packet.time_base = Fraction(1, 90_000)
            out.append((packetizer.pack(packet), bool(packet.is_keyframe)))
    return out


async def connected_pair(loss: set[int]) -> tuple[RTCPeerConnection, RTCPeerConnection, DirectSender, Any]:
    """An edge-like sender (IdleTrack + DirectSender) and a plain aiortc viewer; the sender's n-th RTP
    datagrams whose number is in `loss` are dropped (a lossy link; STUN, DTLS and RTCP pass)."""
    edge, viewer = RTCPeerConnection(RTCConfiguration([])), RTCPeerConnection(RTCConfiguration([]))
    viewer.addTransceiver("video", direction="recvonly")
    track: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    viewer.on("track", track.set_result)
    await viewer.setLocalDescription(await viewer.createOffer())
    await edge.setRemoteDescription(viewer.localDescription)
    sender: RTCRtpSender = edge.addTrack(IdleTrack("video"))
    requests: list[int] = []
    direct = DirectSender(sender, KeyframeGate(1_000_000), lambda: requests.append(1))
    await edge.setLocalDescription(await edge.createAnswer())
    await viewer.setRemoteDescription(edge.localDescription)
    for _ in range(100):
        if direct._route() is not None:
            break
        await asyncio.sleep(0.05)
    route = direct._route()
    assert route is not None, "DTLS never came up"
    udp, sent = route[1], [0]
    real_sendto = udp.sendto

    def lossy_sendto(data: bytes, addr: Any = None) -> None:
        if 128 <= data[0] < 192 and not 192 <= data[1] <= 223:  # RTP, not RTCP (RFC 5761 section 4)
            sent[0] += 1
            if sent[0] in loss:
                return
        real_sendto(data, addr)

    udp.sendto = lossy_sendto
    return edge, viewer, direct, await asyncio.wait_for(track, 10)


async def test_a_viewer_decodes_every_forwarded_frame_in_order() -> None:
    """Packets written by DirectSender (header, mid/abs-send-time extensions, SRTP) decode in aiortc."""
    edge, viewer, direct, track = await connected_pair(loss=set())
    try:
        frames = encoded_pattern(30)
        assert not direct.send(frames[1][0], frames[1][1])  # not before a keyframe
        for packed, key in frames:
            assert direct.send(packed, key)
            await asyncio.sleep(1 / 30)
        counters = [read_marks(await asyncio.wait_for(track.recv(), 5)) for _ in range(29)]
        assert [m[0] for m in counters if m is not None] == list(range(29))
        stats = await direct.sender.getStats()
        outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
        assert outbound.packetsSent == sum(len(p.payloads) for p, _ in frames)
    finally:
        await viewer.close()
        await edge.close()


async def test_a_lost_packet_is_resent_when_the_viewer_nacks_it() -> None:
    """The viewer's NACK reaches the sender's retransmission from the history (RTX), so no picture is lost."""
    frames = encoded_pattern(30)
    # The first packet of the third frame (a delta frame) is lost.
    edge, viewer, direct, track = await connected_pair(loss={sum(len(p.payloads) for p, _ in frames[:2]) + 1})
    try:
        for packed, key in frames:
            direct.send(packed, key)
            await asyncio.sleep(1 / 30)
        marks = [read_marks(await asyncio.wait_for(track.recv(), 5)) for _ in range(29)]
        assert [m[0] for m in marks if m is not None] == list(range(29))
        assert direct.resent == 1
    finally:
        await viewer.close()
        await edge.close()
