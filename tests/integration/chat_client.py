"""A real WebSocket chat client for tests and benchmarks (the `websockets` library, NDJSON frames)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import websockets

Frame = dict[str, Any]


def ws_url(base: str, channel: str) -> str:
    """The chat WebSocket URL of `channel` on the gateway at `base`."""
    return base.replace("http://", "ws://", 1) + f"/api/v1/channels/{channel}/chat"


class ChatClient:
    """One socket: every frame received is kept in `frames`; helpers wait for the one a test expects."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.closed: tuple[int, str] | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base: str, channel: str, token: str = "") -> ChatClient:
        """Connect, say hello (with `token` when given) and wait for the welcome frame."""
        ws = await websockets.connect(ws_url(base, channel), max_size=None, compression=None)
        client = cls(ws)
        await ws.send(json.dumps({"type": "hello", "token": token} if token else {"type": "hello"}))
        await client.wait_for(lambda f: f["type"] in ("welcome", "error"))
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                text = raw if isinstance(raw, str) else raw.decode()
                self.frames.extend(json.loads(line) for line in text.split("\n"))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.closed = (rcvd.code, rcvd.reason) if rcvd else (1006, "")
            self._changed.set()

    @property
    def welcome(self) -> Frame:
        """The first frame."""
        return self.frames[0]

    def of_type(self, kind: str) -> list[Frame]:
        """Every frame of one type, in order."""
        return [f for f in self.frames if f["type"] == kind]

    async def wait_for(self, match: Callable[[Frame], bool], timeout: float = 10.0, start: int = 0) -> Frame:
        """The first frame (received from index `start` on, or coming) that `match` accepts."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for frame in self.frames[seen:]:
                if match(frame):
                    return frame
            seen = len(self.frames)
            if self.closed is not None:
                raise AssertionError(f"socket closed {self.closed} before the frame came: {self.frames[-5:]}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; last frames: {self.frames[-5:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def send_raw(self, text: str) -> None:
        """Send a frame as is."""
        await self.ws.send(text)

    async def say(self, text: str, nonce: str = "") -> Frame:
        """Send a line; returns its ack or error frame."""
        nonce = nonce or secrets.token_hex(8)
        start = len(self.frames)
        await self.ws.send(json.dumps({"type": "send", "nonce": nonce, "text": text}))
        return await self.wait_for(
            lambda f: f.get("nonce") == nonce and f["type"] in ("ack", "error"), start=start
        )

    async def message(self, message_id: str, timeout: float = 10.0) -> Frame:
        """The message frame with this id."""
        return await self.wait_for(lambda f: f["type"] == "message" and f["id"] == message_id, timeout)

    async def close(self) -> None:
        """Close the socket."""
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def text_of(frame: Frame) -> str:
    """A message frame's text, fragments joined."""
    return "".join(f["text"] for f in frame["fragments"])
