"""Reader sockets for bench/chat_fanout.py, run in worker processes: a minimal WebSocket client (server
frames are unmasked, so reading them is a few slices) that counts message deliveries and, on a sample of
sockets, the send-to-receive latency carried in each message's text ("b <unix time>")."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

import uvloop

MESSAGE = b'{"type":"message"'
SAMPLE_EVERY = 25


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    header = (
        bytes([0x81, 0x80 | len(payload)])
        if len(payload) < 126
        else b"\x81\xfe" + struct.pack("!H", len(payload))
    )
    return header + key + masked


class Stats:
    def __init__(self) -> None:
        self.deliveries = 0
        self.latencies: list[float] = []
        self.closed = 0


class Reader(asyncio.Protocol):
    """One reader socket."""

    def __init__(self, host: str, path: str, stats: Stats, sample: bool, ready: asyncio.Future[None]) -> None:
        self.host, self.path, self.stats, self.sample, self.ready = host, path, stats, sample, ready
        self.buf = bytearray()
        self.open = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buf[:end]:
                self.ready.set_exception(RuntimeError(bytes(self.buf[:end]).decode(errors="replace")))
                return
            del self.buf[: end + 4]
            self.open = True
            self.transport.write(_mask(b'{"type":"hello"}'))
            self.ready.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            size, start = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, start = struct.unpack_from("!H", buf, 2)[0], 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < start + size:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[start : start + size])
            del buf[: start + size]
            if opcode == 1:
                self._text(payload)
            elif opcode == 8:
                self.stats.closed += 1
                self.transport.close()

    def _text(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"welcome"'):
            return
        self.stats.deliveries += payload.count(MESSAGE)
        if self.sample:
            now = time.time()
            for line in payload.split(b"\n"):
                frame = json.loads(line)
                if frame.get("type") == "message":
                    sent = float(frame["fragments"][0]["text"].split()[1])
                    self.stats.latencies.append(now - sent)


async def _open_all(host: str, port: int, path: str, count: int, stats: Stats, offset: int) -> list[Any]:
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(100)
    transports: list[Any] = []

    async def one(i: int) -> None:
        async with limit:
            ready: asyncio.Future[None] = loop.create_future()
            sample = (offset + i) % SAMPLE_EVERY == 0
            transport, _ = await loop.create_connection(
                lambda: Reader(f"{host}:{port}", path, stats, sample, ready), host, port
            )
            transports.append(transport)
            await asyncio.wait_for(ready, 30)

    await asyncio.gather(*(one(i) for i in range(count)))
    return transports


async def _serve(conn: Connection) -> None:
    stats = Stats()
    transports: list[Any] = []
    while True:
        command, args = await asyncio.to_thread(conn.recv)
        if command == "open":
            host, port, path, count, offset = args
            transports = await _open_all(host, port, path, count, stats, offset)
            conn.send("ready")
        elif command == "reset":
            stats.deliveries, stats.latencies = 0, []
            conn.send("ok")
        elif command == "report":
            conn.send((stats.deliveries, stats.latencies, stats.closed))
        elif command == "close":
            for t in transports:
                t.close()
            transports = []
            conn.send("closed")
        else:
            return


def worker(conn: Connection) -> None:
    """Process entry: obey commands from the bench until told to stop."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_serve(conn))
