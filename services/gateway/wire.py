"""Pre-framed WebSocket writes for the chat fan-out: uvicorn's sans-I/O WebSocket protocol, extended with
one ASGI scope extension, ``cpc.wire``, so a frame built once can be written to many sockets.

A server-to-client WebSocket frame is never masked, so the bytes of a text frame are the same for every
socket that gets it. Through ASGI each ``websocket.send`` is framed again per socket (the websockets
state machine, a join, a task switch to the socket's writer); a room of 5,000 sockets repeats that work
5,000 times per flush. ``cpc.wire`` hands the app the socket's transport write for bytes framed once
(`text_frame`), guarded by the same state checks uvicorn's own ``send`` makes, and tells how many bytes
wait in the socket's send buffer so the app can cut off a peer that stopped reading.

Everything else (handshake, receiving, pings, close) is uvicorn's unchanged code.
"""

from __future__ import annotations

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["EXTENSION", "WireProtocol", "WireWriter", "text_frame", "wire_writer"]

EXTENSION = "cpc.wire"

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 §5.2) carrying UTF-8 `payload`."""
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload


class WireWriter:
    """Writes pre-built frames to one socket's transport while the socket may still send data frames."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> int:
        """Write `frame` (from `text_frame`); the bytes now waiting in the send buffer, or -1 if the socket
        is closing or gone (nothing was written)."""
        p = self._protocol
        transport = p.transport
        if p.close_sent or p.disconnected or not p.handshake_complete or transport.is_closing():
            return -1
        transport.write(frame)
        return transport.get_write_buffer_size()


class WireProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with the ``cpc.wire`` scope extension."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the app task is created but has not run: it sees the extension
            scope["extensions"][EXTENSION] = {"writer": WireWriter(self)}


def wire_writer(scope: Any) -> WireWriter | None:
    """The socket's `WireWriter` when the server offers ``cpc.wire``, else None (plain ASGI sends)."""
    ext = (scope.get("extensions") or {}).get(EXTENSION)
    return ext.get("writer") if ext else None
