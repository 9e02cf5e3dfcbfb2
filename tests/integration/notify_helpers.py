"""Helpers for the notification tests: publishing other services' events, and loopback HTTP receivers
(a webhook callback that checks signatures, a Web Push endpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from libs.bus import Event, connect, new_id, publish
from proto.ingest import SessionEnded, SessionStarted
from proto.social import Followed

# Sessions started through publish_events and not ended yet: end_open_sessions ends them.
_open: dict[str, SessionStarted] = {}


async def publish_events(nats_url: str, *events: Event) -> None:
    """Publish events into JetStream as their owning services would."""
    for e in events:
        if isinstance(e, SessionStarted):
            _open[e.session_id] = e
        elif isinstance(e, SessionEnded):
            _open.pop(e.session_id, None)
    nc = await connect(nats_url, name="test-publisher")
    try:
        js = nc.jetstream()
        await asyncio.gather(*(publish(js, e) for e in events))
    finally:
        await nc.drain()


async def end_open_sessions(nats_url: str) -> None:
    """End the sessions a test started without media and left open, as ingest would: otherwise each holds
    a transcoder slot until the stack lets it go as idle (8 s), and a media test right after finds no room."""
    ended = [
        SessionEnded(
            session_id=s.session_id,
            channel_id=s.channel_id,
            channel_name=s.channel_name,
            started_at=s.started_at,
            ended_at=datetime.now(UTC),
        )
        for s in _open.values()
    ]
    if ended:
        await publish_events(nats_url, *ended)


def followed(user_id: str, username: str, channel_id: str, channel_name: str) -> Followed:
    """A social.channel.followed event."""
    return Followed(
        user_id=user_id,
        username=username,
        channel_id=channel_id,
        channel_name=channel_name,
        followed_at=datetime.now(UTC),
    )


def session(
    channel_id: str, channel_name: str, start: datetime, end: datetime | None = None
) -> tuple[Any, ...]:
    """A session's start (and end when given) events, with a fresh session id."""
    sid = new_id()
    started = SessionStarted(
        session_id=sid, channel_id=channel_id, channel_name=channel_name, started_at=start
    )
    if end is None:
        return (started,)
    ended = SessionEnded(
        session_id=sid, channel_id=channel_id, channel_name=channel_name, started_at=start, ended_at=end
    )
    return (started, ended)


def minutes(n: float) -> timedelta:
    """n minutes."""
    return timedelta(minutes=n)


@dataclass
class Received:
    """One request a test server received."""

    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A loopback HTTP server; `answer` decides each reply from the request."""

    answer: Callable[[Received], Awaitable[web.Response]]
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Receiver:
        """Listen on a free loopback port."""

        async def handle(request: web.Request) -> web.Response:
            item = Received(dict(request.headers), await request.read(), asyncio.get_running_loop().time())
            self.received.append(item)
            self._arrived.set()
            return await self.answer(item)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait until `count` requests arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < count:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"only {len(self.received)} of {count} requests arrived"
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=min(left, 0.5))
        return self.received

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()


def signature_ok(secret: str, item: Received) -> bool:
    """Check a webhook delivery the way a receiver must: HMAC-SHA256 over id + timestamp + raw body."""
    message = item.headers["CPC-Message-Id"] + item.headers["CPC-Message-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), message.encode() + item.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, item.headers["CPC-Message-Signature"])
