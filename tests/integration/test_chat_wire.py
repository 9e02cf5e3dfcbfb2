"""Pre-framed chat writes (services/gateway/wire.py) on a real uvicorn server with real sockets: frames
written straight to the transport arrive intact and after the socket's own queued frames, a peer that
stops reading is cut off by its send-buffer size without holding anyone else up, and nothing is written
to a socket that is gone."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from libs.devstack.ports import free_port
from services.gateway.fanout import Outbox
from services.gateway.wire import WireProtocol, WireWriter, text_frame, wire_writer

pytestmark = pytest.mark.asyncio(loop_scope="function")

BIG = 32 * 1024


class Room:
    """What the ASGI app below keeps: each socket's outbox, in connection order."""

    def __init__(self, autostart: bool) -> None:
        self.autostart = autostart
        self.outboxes: list[Outbox] = []
        self.writers: list[WireWriter | None] = []
        self.joined = asyncio.Condition()


def _app(room: Room, max_buffer: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})

        async def send_text(text: str) -> None:
            await send({"type": "websocket.send", "text": text})

        async def close(code: int, reason: str) -> None:
            await send({"type": "websocket.close", "code": code, "reason": reason})

        writer = wire_writer(scope)
        box = Outbox(send_text, close, max_pending=8, wire=writer, max_buffer=max_buffer)
        box.pending.append('{"type":"welcome"}')
        if room.autostart:
            box.start()
        async with room.joined:
            room.outboxes.append(box)
            room.writers.append(writer)
            room.joined.notify_all()
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            await box.stop()

    return app


@contextlib.asynccontextmanager
async def _server(max_buffer: int, autostart: bool = True) -> AsyncIterator[tuple[Room, int]]:
    room, port = Room(autostart), free_port()
    config = uvicorn.Config(
        _app(room, max_buffer), host="127.0.0.1", port=port, ws=WireProtocol, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield room, port
    finally:
        server.should_exit = True
        await task


async def _joined(room: Room, count: int) -> None:
    async with room.joined:
        await asyncio.wait_for(room.joined.wait_for(lambda: len(room.outboxes) >= count), 5)


async def _drained(box: Outbox) -> None:
    for _ in range(500):
        if not box.pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the welcome frame was never written")


async def test_direct_frames_arrive_whole_and_after_the_queued_ones() -> None:
    async with _server(max_buffer=1 << 20) as (room, port):
        async with websockets.connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as ws:
            await _joined(room, 1)
            box = room.outboxes[0]
            await _drained(box)
            frames = ['{"n":1}', '{"n":2}\n{"n":3}', json.dumps({"n": 4, "pad": "é" * 200}), "x" * 70_000]
            direct = [box.push_wire(f, text_frame(f.encode()), 0.0) for f in frames]
            assert direct == [True, True, True, True]  # all went straight to the transport
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(5)]
        assert got == ['{"type":"welcome"}', *frames]


async def test_room_frames_wait_behind_the_welcome() -> None:
    async with (
        _server(max_buffer=1 << 20, autostart=False) as (room, port),
        websockets.connect(f"ws://127.0.0.1:{port}/", compression=None) as ws,
    ):
        await _joined(room, 1)
        box = room.outboxes[0]
        # Joined to the room but the welcome is not written yet: room frames queue behind it.
        assert box.push_wire('{"n":1}', text_frame(b'{"n":1}'), 0.0) is False
        assert box.push_wire('{"n":2}', text_frame(b'{"n":2}'), 0.0) is False
        box.start()
        assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"welcome"}\n{"n":1}\n{"n":2}'
        await _drained(box)
        assert box.push_wire('{"n":3}', text_frame(b'{"n":3}'), 0.0) is True
        assert await asyncio.wait_for(ws.recv(), 5) == '{"n":3}'


def _stalled_client(port: int) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that completes the handshake, then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: leave every frame after the handshake unread
    assert b" 101 " in response
    return sock


async def test_a_peer_that_stops_reading_is_cut_off_and_the_others_still_get_everything() -> None:
    async with _server(max_buffer=256 * 1024) as (room, port):
        stalled = await asyncio.to_thread(_stalled_client, port)
        try:
            await _joined(room, 1)
            async with websockets.connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as ws:
                await _joined(room, 2)
                slow, fast = room.outboxes
                await _drained(slow)
                await _drained(fast)
                assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"welcome"}'
                payload = "y" * BIG
                wire = text_frame(payload.encode())
                received = 0
                for _ in range(200):  # 6.4 MB: far beyond what the kernel buffers for the stalled peer
                    for box in (slow, fast):
                        box.push_wire(payload, wire, 0.0)
                    received += len(await asyncio.wait_for(ws.recv(), 5)) == BIG
                    if slow.closed:
                        break
                assert slow.closed, "the stalled socket was never cut off"
                assert not fast.closed
                assert received >= 1
                assert slow.push_wire(payload, wire, 0.0) is False  # nothing more is written to it
        finally:
            stalled.close()


async def test_nothing_is_written_to_a_socket_that_is_gone() -> None:
    async with _server(max_buffer=1 << 20) as (room, port):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/", compression=None)
        await _joined(room, 1)
        writer = room.writers[0]
        assert writer is not None
        assert writer.write(text_frame(b"{}")) >= 0
        await ws.close()
        for _ in range(200):
            if writer.write(text_frame(b"{}")) == -1:
                break
            await asyncio.sleep(0.01)
        assert writer.write(text_frame(b"{}")) == -1
        assert room.outboxes[0].push_wire("{}", text_frame(b"{}"), 0.0) is False
    assert wire_writer({"extensions": {}}) is None  # a server without cpc.wire: plain ASGI sends
