"""The small extension of aiortc 1.16 that lets encoded frames out of a receiver and routes keyframe
requests of a sender to us, so ingest never decodes and edge never re-encodes.

It relies on these places of aiortc 1.16.0 (`check_hooks()` fails loudly when an upgrade moves them):
- ``rtcrtpreceiver.py`` ``RTCRtpReceiver._handle_rtp_packet`` (line ~563) hands every complete frame from
  the jitter buffer to the decoder thread with ``self.__decoder_queue.put((codec, encoded_frame))``,
  after mapping ``encoded_frame.timestamp`` to start at 0 in the codec's clock rate. We swap that queue
  (``_RTCRtpReceiver__decoder_queue``) for a tap: frames go to our callback, only the ``None`` stop
  marker reaches the (then idle) decoder thread, so ``stop()`` still joins it.
- ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` (line ~630) asks the broadcaster for a keyframe;
  ``_RTCRtpReceiver__active_ssrc`` names the SSRCs seen.
- ``rtcrtpsender.py`` ``RTCRtpSender._next_encoded_frame`` (line ~294) passes an ``av.Packet`` from the
  track straight to ``encoder.pack`` (needs ``pts`` and ``time_base``), and ``_handle_rtcp_packet``
  (line ~277) answers PLI/FIR by calling ``self._send_keyframe()``, which only sets a flag that the
  packet path ignores: we replace it per sender with a callback that asks upstream.
- Edge cuts each frame once with aiortc's own packetizer (`Packetizer`) and writes the packets to every
  viewer itself: libs/media/rtp_fanout.py, with its own list of the internals it relies on.
- ``RTCRtpTransceiver._codecs`` holds the negotiated codecs; the sender sends with the first one.
"""

from __future__ import annotations

import inspect
import queue
from collections.abc import Callable
from typing import Any

import aiortc
import av
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

__all__ = [
    "AIORTC_VERSION",
    "FrameSink",
    "HookMissing",
    "Packed",
    "Packetizer",
    "check_hooks",
    "request_keyframe",
    "require_sources",
    "restrict_codecs",
    "route_keyframe_requests",
    "tap_receiver",
]

AIORTC_VERSION = "1.16.0"

# (codec name in lower case, clock rate, timestamp from 0 in that clock, frame bytes)
FrameSink = Callable[[str, int, int, bytes], None]


class HookMissing(RuntimeError):
    """The installed aiortc no longer has a place this extension relies on."""


def check_hooks() -> None:
    """Raise HookMissing naming the first aiortc internal that moved; call once at process start."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise HookMissing(f"aiortc {aiortc.__version__} installed, extension written for {AIORTC_VERSION}")
    expectations: list[tuple[Any, str]] = [
        (RTCRtpReceiver._handle_rtp_packet, "self.__decoder_queue.put((codec, encoded_frame))"),
        (RTCRtpReceiver._handle_rtp_packet, "self.__timestamp_mapper.map("),
        (RTCRtpReceiver.__init__, "self.__decoder_queue: queue.Queue = queue.Queue()"),
        (RTCRtpReceiver.__init__, "self.__active_ssrc"),
        (RTCRtpReceiver._send_rtcp_pli, "RTCP_PSFB_PLI"),
        (RTCRtpSender._next_encoded_frame, "self.__encoder.pack(data)"),
        (RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()"),
    ]
    require_sources(expectations)


def require_sources(expectations: list[tuple[Any, str]]) -> None:
    """Raise HookMissing for the first (function, needle) whose source no longer contains the needle: the
    library internals an extension relies on have moved."""
    for func, needle in expectations:
        if needle not in inspect.getsource(func):
            raise HookMissing(f'{func.__module__} {func.__qualname__} no longer contains "{needle}"')


class _FrameTap:
    """Stands in for the receiver's decoder queue: frames go to `sink`, the stop marker to the thread."""

    def __init__(self, original: queue.Queue[Any], sink: FrameSink) -> None:
        self._original = original
        self._sink = sink

    def put(self, item: Any) -> None:
        if item is None:
            self._original.put(None)
            return
        codec, encoded_frame = item
        self._sink(codec.name.lower(), codec.clockRate, encoded_frame.timestamp, encoded_frame.data)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        # Only when the tap is installed before receive(): the decoder thread then waits here.
        return self._original.get(*args, **kwargs)


def tap_receiver(receiver: RTCRtpReceiver, sink: FrameSink) -> None:
    """Send the receiver's complete encoded frames to `sink` (on the event loop) instead of decoding."""
    original = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    if isinstance(original, _FrameTap):
        raise ValueError("receiver is already tapped")
    receiver._RTCRtpReceiver__decoder_queue = _FrameTap(original, sink)  # type: ignore[attr-defined]


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for the most recently active SSRC; False when none has been seen yet."""
    active: dict[int, Any] = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
    if not active:
        return False
    ssrc = max(active, key=lambda s: active[s])
    await receiver._send_rtcp_pli(ssrc)
    return True


def route_keyframe_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Call `on_request` when the viewer sends PLI or FIR (aiortc would only set an unused flag)."""
    sender._send_keyframe = on_request  # type: ignore[method-assign]


def restrict_codecs(transceiver: Any, codec: str) -> bool:
    """Keep only `codec` (and its retransmission format) in a negotiated transceiver; False if absent."""
    kept = [c for c in transceiver._codecs if c.name.lower() == codec]
    if not kept:
        return False
    payload_types = {c.payloadType for c in kept}
    rtx = [
        c for c in transceiver._codecs if c.name.lower() == "rtx" and c.parameters.get("apt") in payload_types
    ]
    transceiver._codecs = kept + rtx
    return True


class Packed:
    """One encoded frame cut into RTP payloads, with its RTP timestamp (from 0), shared by every sender."""

    __slots__ = ("payloads", "timestamp")

    def __init__(self, payloads: list[bytes], timestamp: int) -> None:
        self.payloads = payloads
        self.timestamp = timestamp


_CLOCKS = {"opus": 48_000, "vp8": 90_000, "h264": 90_000}


class Packetizer:
    """aiortc's own packetizer for `codec`, run once per frame instead of once per viewer."""

    def __init__(self, codec: str) -> None:
        kind = "audio" if codec == "opus" else "video"
        params = RTCRtpCodecParameters(mimeType=f"{kind}/{codec}", clockRate=_CLOCKS[codec])
        self._encoder = get_encoder(params)

    def pack(self, packet: av.Packet[Any]) -> Packed:
        """The frame's payloads and timestamp, as aiortc's sender would have cut them."""
        payloads, timestamp = self._encoder.pack(packet)
        return Packed(payloads, timestamp)
