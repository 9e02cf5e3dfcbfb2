"""Sends frames packetized once (`aiortc_ext.Packetizer`) to many viewers: per viewer only the 12-byte RTP
header and the header extensions are written, the packet SRTP-protected (pylibsrtp, C) and handed to the
UDP socket of the viewer's selected ICE pair, synchronously, without a coroutine or an `RtpPacket` per
packet. The viewer's aiortc `RTCRtpSender` stays for everything else: negotiation, RTCP sender reports
(we keep its counters current), receiving RTCP (PLI/FIR go to our keyframe callback, NACK to our
retransmission from a short history of shared frames, RTX when negotiated).

It relies on these places of aiortc 1.16.0 and aioice 0.10 (`check_hooks()` fails loudly if they move):
- ``RTCPeerConnection.__connect`` calls ``transceiver.sender.send(parameters)`` once the transports are
  up; we wrap the instance's ``send`` to learn the payload type, RTX payload type, mid and header
  extension ids, and give the sender a track that never yields, so its own RTP loop stays idle.
- ``RTCDtlsTransport._tx_srtp`` (a pylibsrtp ``Session``, set by ``_setup_srtp`` when DTLS completes) and
  ``RTCDtlsTransport.transport`` (the ``RTCIceTransport``) whose ``_connection._nominated[1]`` is the
  aioice ``CandidatePair``; its ``protocol.transport`` is the asyncio UDP transport, ``remote_addr`` the
  viewer's address (aioice's ``Connection.sendto`` does exactly this lookup).
- ``RTCRtpSender._handle_rtcp_packet`` awaits ``self._retransmit(seq)`` for every NACKed sequence number
  and ``_run_rtcp`` reports ``__ntp_timestamp``, ``__rtp_timestamp``, ``__packet_count`` and
  ``__octet_count``, which aiortc's RTP loop would have updated.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap
from aiortc.utils import random32

from libs.media.aiortc_ext import Packed, require_sources, route_keyframe_requests

__all__ = ["HISTORY_FRAMES", "DirectSender", "IdleTrack", "KeyframeGate", "check_fanout_hooks", "ntp_now"]

_HEADER = struct.Struct("!BBHLL")
_SEQ = struct.Struct("!H")
# abs-send-time value marking where those bytes sit in a header extension block (mid values are text).
_ABS_SENTINEL = 0xABCDEF
_NTP_EPOCH = 2_208_988_800  # seconds from 1900 to 1970
# Frames kept per viewer for NACKs (~2 s of video at 30 fps; audio frames are single packets).
HISTORY_FRAMES = 64


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (aiortc's clock.current_ntp_time without datetime)."""
    return int((time.time() + _NTP_EPOCH) * 4294967296.0) & 0xFFFFFFFFFFFFFFFF


def check_fanout_hooks() -> None:
    """Raise HookMissing naming the first aiortc/aioice internal this module relies on that moved."""
    expectations: list[tuple[Any, str]] = [
        (RTCPeerConnection._RTCPeerConnection__connect, "await transceiver.sender.send("),  # type: ignore[attr-defined]
        (RTCRtpSender._handle_rtcp_packet, "await self._retransmit(seq)"),
        (RTCRtpSender._run_rtcp, "self.__ntp_timestamp"),
        (RTCRtpSender._run_rtcp, "self.__rtp_timestamp"),
        (RTCRtpSender._run_rtcp, "self.__packet_count"),
        (RTCRtpSender._run_rtcp, "self.__octet_count"),
        (RTCDtlsTransport._setup_srtp, "self._tx_srtp = Session("),
        (aioice.ice.Connection.sendto, "self._nominated.get(component)"),
        (aioice.ice.Connection.sendto, "active_pair.protocol.send_data(data, active_pair.remote_addr)"),
        (aioice.ice.StunProtocol.send_data, "self.transport.sendto(data, addr)"),
    ]
    require_sources(expectations)


class KeyframeGate:
    """Whether one viewer gets a frame: from a keyframe on, and when more than `limit` bytes wait in its
    socket's buffer, nothing until the next keyframe that fits (a partial GOP only shows as corruption)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting_keyframe = True
        self.dropped = 0

    def admit(self, keyframe: bool, backlog: int) -> bool:
        """True to send this frame; False when it is dropped (the caller may ask upstream for a keyframe)."""
        if backlog > self.limit:
            self.waiting_keyframe = True
        elif keyframe:
            self.waiting_keyframe = False
        if self.waiting_keyframe:
            self.dropped += 1
            return False
        return True


class IdleTrack(MediaStreamTrack):
    """The track of a sender whose packets `DirectSender` writes: it yields nothing until it ends."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: Any = None

    async def recv(self) -> Any:
        """Wait for stop(); aiortc's RTP loop then ends."""
        if self.readyState == "live":
            self._ended = asyncio.get_running_loop().create_future()
            await self._ended
        raise MediaStreamError

    def stop(self) -> None:
        """End the track and wake the sender's loop."""
        super().stop()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)


class DirectSender:
    """Writes shared `Packed` frames as one viewer's RTP stream, bypassing the sender's per-packet path."""

    def __init__(
        self, sender: RTCRtpSender, gate: KeyframeGate, on_keyframe_request: Callable[[], None]
    ) -> None:
        self.sender = sender
        self.gate = gate
        self.kind = sender.kind
        self._ssrc, self._rtx_ssrc = sender._ssrc, sender._rtx_ssrc
        self._pt = 0
        self._rtx_pt: int | None = None
        self._mid: str | None = None
        self._extensions = HeaderExtensionsMap()
        self._params_known = False
        self._ext_template: tuple[bytes, int] | None = None
        self._seq = random_sequence_number()
        self._rtx_seq = random_sequence_number()
        self._origin = random32()
        self._history: deque[tuple[int, int, Packed, bytes]] = deque(maxlen=HISTORY_FRAMES)
        self.frames_sent = 0
        self.resent = 0
        original_send = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._learn(parameters)
            await original_send(parameters)

        sender.send = send  # type: ignore[method-assign]
        sender._retransmit = self._retransmit  # type: ignore[method-assign]
        if self.kind == "video":
            route_keyframe_requests(sender, on_keyframe_request)

    def _learn(self, parameters: RTCRtpSendParameters) -> None:
        codec = parameters.codecs[0]
        self._pt = codec.payloadType or 0
        for c in parameters.codecs:
            if is_rtx(c) and c.parameters.get("apt") == codec.payloadType:
                self._rtx_pt = c.payloadType
        self._mid = parameters.muxId
        self._extensions.configure(parameters)
        self._params_known = True

    def _route(self) -> tuple[Any, Any, Any] | None:
        """(srtp session, UDP transport, remote address) once DTLS is up, else None."""
        dtls = self.sender.transport
        if not self._params_known or dtls.state != "connected" or dtls._tx_srtp is None:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        return dtls._tx_srtp, pair.protocol.transport, pair.remote_addr

    def _extension_block(self, ntp: int) -> bytes:
        # The block (mid, abs-send-time) is the same for every frame but the 3 abs-send-time bytes: built
        # once with aiortc's own HeaderExtensionsMap, then only those bytes change (once per frame: all
        # its packets leave in the same burst).
        if self._ext_template is None:
            values = HeaderExtensions()
            values.mid = self._mid
            values.abs_send_time = _ABS_SENTINEL
            profile, value = self._extensions.set(values)
            block = struct.pack("!HH", profile, len(value) >> 2) + value if value else b""
            at = block.find(_ABS_SENTINEL.to_bytes(3, "big"))
            self._ext_template = (block, at)
        block, at = self._ext_template
        if at < 0:
            return block
        return block[:at] + ((ntp >> 14) & 0x00FFFFFF).to_bytes(3, "big") + block[at + 3 :]

    def send(self, frame: Packed, keyframe: bool) -> bool:
        """Write `frame` to the viewer now; False when it was not sent (not connected yet, or dropped)."""
        route = self._route()
        if route is None:
            self.gate.waiting_keyframe = True
            return False
        srtp, udp, addr = route
        if not self.gate.admit(keyframe, udp.get_write_buffer_size()):
            return False
        timestamp = (self._origin + frame.timestamp) & 0xFFFFFFFF
        ntp = ntp_now()
        ext = self._extension_block(ntp)
        first = 0x90 if ext else 0x80
        protect, sendto, pack = srtp.protect, udp.sendto, _HEADER.pack
        pt, ssrc, seq = self._pt, self._ssrc, self._seq
        payloads = frame.payloads
        last = len(payloads) - 1
        octets = 0
        for i, payload in enumerate(payloads):
            marker_pt = pt | 0x80 if i == last else pt
            sendto(protect(pack(first, marker_pt, (seq + i) & 0xFFFF, timestamp, ssrc) + ext + payload), addr)
            octets += len(payload)
        self._history.append((seq, timestamp, frame, ext))
        self._seq = (seq + len(payloads)) & 0xFFFF
        self._account(ntp, timestamp, len(payloads), octets)
        return True

    def _account(self, ntp: int, timestamp: int, packets: int, octets: int) -> None:
        # What aiortc's RTP loop keeps for its sender reports (RTCP SR), once per frame instead of per packet.
        s: Any = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp
        s._RTCRtpSender__rtp_timestamp = timestamp
        s._RTCRtpSender__packet_count += packets
        s._RTCRtpSender__octet_count += octets
        self.frames_sent += 1

    def _sent(self, sequence_number: int) -> tuple[int, Packed, int, bytes] | None:
        """(timestamp, frame, payload index, extensions) of a packet still in the history."""
        for first_seq, timestamp, frame, ext in reversed(self._history):
            index = (sequence_number - first_seq) & 0xFFFF
            if index < len(frame.payloads):
                return timestamp, frame, index, ext
        return None

    async def _retransmit(self, sequence_number: int) -> None:
        """Resend a NACKed packet from the history (wrapped as RTX when negotiated), as aiortc would."""
        route = self._route()
        if route is None:
            return
        found = self._sent(sequence_number)
        if found is None:
            return
        timestamp, frame, index, ext = found
        srtp, udp, addr = route
        payload = frame.payloads[index]
        marker = 0x80 if index == len(frame.payloads) - 1 else 0
        first = 0x90 if ext else 0x80
        if self._rtx_pt is None:
            header = _HEADER.pack(first, marker | self._pt, sequence_number, timestamp, self._ssrc)
        else:
            header = _HEADER.pack(first, marker | self._rtx_pt, self._rtx_seq, timestamp, self._rtx_ssrc)
            payload = _SEQ.pack(sequence_number) + payload
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        udp.sendto(srtp.protect(header + ext + payload), addr)
        self.resent += 1
