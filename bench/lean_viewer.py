"""A WHEP viewer for bench/webrtc_fanout.py that is a real WebRTC client (aiortc does ICE, DTLS, SRTP keys,
RTCP) but takes its RTP below aiortc's RTCRtpReceiver, so a process can hold many of them: once DTLS is
up, the socket of the selected ICE pair is read by `_drain` (all datagrams waiting, per wake-up of the
event loop, instead of asyncio's one per callback); SRTP goes to `_rtp`, everything else (STUN consent
checks, DTLS, SRTCP) to aioice's protocol as before. Per packet it only SRTP-unprotects (pylibsrtp, C),
reads the RTP header and the VP8 payload descriptor, and puts frames back together.

A frame is delivered when every packet from its first (VP8 descriptor S bit, partition 0) to its marker
bit came in sequence; one missing packet and the frame does not count (this viewer sends no NACK). Its
arrival time is that of its last packet; it is named by the CRC-32 of its bytes.

Relies on aiortc 1.16 ``RTCDtlsTransport._rx_srtp`` and ``.transport._connection._nominated[1]`` (the
aioice ``CandidatePair``; its ``protocol`` is the asyncio datagram protocol), as libs/media/rtp_fanout.py,
and on asyncio's selector loop: ``loop._add_reader(fd, callback)`` replaces the transport's reader
(``_SelectorDatagramTransport._read_ready``); closing the transport removes ours.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pylibsrtp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

_SEQ_TS = struct.Struct("!HL")
_EXT_LEN = struct.Struct("!H")
RCVBUF = 1024 * 1024
DRAIN_MAX = 256

FrameSink = Callable[[int, bytes], None]


class LeanViewer:
    """One WHEP viewer that records (CRC-32 of the frame, arrival) for every complete video frame."""

    def __init__(self, on_frame: FrameSink | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.arrivals: list[tuple[int, float]] = []
        self.location = ""
        self.packets = self.broken = self.audio_packets = 0
        self._on_frame = on_frame
        self._pt = -1
        self._unprotect: Any = None
        self._ts = -1
        self._ok = False
        self._next_seq = 0
        self._parts: list[bytes] = []

    async def join(self, client: httpx.AsyncClient, channel: str) -> None:
        """WHEP POST through the gateway, then wait for DTLS and take over the RTP path."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        r = await client.post(
            f"/api/v1/channels/{channel}/whep",
            content=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        r.raise_for_status()
        self.location = r.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        self._pt = next(c.payloadType or 0 for c in self.video._codecs if c.name.lower() == "vp8")
        dtls = self.video.receiver.transport
        for _ in range(600):
            pair = dtls.transport._connection._nominated.get(1)
            if dtls._rx_srtp is not None and pair is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("DTLS never came up")
        self._unprotect = dtls._rx_srtp.unprotect
        protocol = pair.protocol
        sock = protocol.transport._sock  # type: ignore[attr-defined]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        recvfrom, other, rtp = sock.recvfrom, protocol.datagram_received, self._rtp

        def drain() -> None:
            for _ in range(DRAIN_MAX):
                try:
                    data, addr = recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    protocol.error_received(exc)
                    return
                # SRTP but not SRTCP (RFC 7983 first byte 128-191; RTCP packet types 192-223, RFC 5761).
                if 127 < data[0] < 192 and not 191 < data[1] < 224:
                    rtp(data)
                else:
                    other(data, addr)

        asyncio.get_running_loop()._add_reader(sock.fileno(), drain)  # type: ignore[attr-defined]

    def _rtp(self, data: bytes) -> None:
        try:
            rtp = self._unprotect(data)
        except pylibsrtp.Error:
            self.broken += 1
            return
        self.packets += 1
        if rtp[1] & 0x7F != self._pt:
            self.audio_packets += 1
            return
        seq, ts = _SEQ_TS.unpack_from(rtp, 2)
        offset = 12 + 4 * (rtp[0] & 0x0F)
        if rtp[0] & 0x10:
            offset += 4 + 4 * _EXT_LEN.unpack_from(rtp, offset + 2)[0]
        d = rtp[offset]
        start = offset + 1
        if d & 0x80:  # X: extension octet, then picture id (1 or 2 bytes), TL0PICIDX, TID/KEYIDX
            x = rtp[start]
            start += 1
            if x & 0x80:
                start += 2 if rtp[start] & 0x80 else 1
            if x & 0x40:
                start += 1
            if x & 0x30:
                start += 1
        if ts != self._ts:
            self._ts = ts
            self._ok = d & 0x17 == 0x10  # S bit set, partition 0: the frame's first packet
            self._parts = []
        elif seq != self._next_seq:
            self._ok = False
        self._next_seq = (seq + 1) & 0xFFFF
        self._parts.append(rtp[start:])
        if rtp[1] & 0x80:  # marker: the frame's last packet
            if self._ok:
                frame = b"".join(self._parts)
                key = zlib.crc32(frame)
                self.arrivals.append((key, time.time()))
                if self._on_frame is not None:
                    self._on_frame(key, frame)
            self._ts, self._parts = -1, []
