"""The chaos suite's mixed load: follows (and unfollows), chat over the gateway WebSocket, go-lives (with a
notification to a follower and a stream.online webhook each), signed payment webhooks. Every kind runs in a
loop of its own; a request that fails is retried (with the same idempotency key where the API has one)
until it is acknowledged, and every attempt is recorded with its time and outcome."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from libs.devstack.stack import OPERATOR_TOKEN, PAYMENT_WEBHOOK_SECRET
from tests.integration.chat_client import ChatClient
from tests.integration.notify_helpers import Received, Receiver, signature_ok

KINDS = ["follow", "chat", "golive", "payment", "viewer"]
HOOK_SECRET = "chaos-webhook-secret"
OPERATOR = {"X-Operator-Token": OPERATOR_TOKEN}
# Chat history shows the last 100 messages: one fault's room never gets more than this.
CHAT_LIMIT = 90


@dataclass
class User:
    """A registered, signed-in user."""

    username: str
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(client: httpx.AsyncClient, prefix: str) -> User:
    """Register and sign in a fresh user."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    password = "correct horse battery"
    r = await client.post(
        "/api/v1/auth/register", json={"username": name, "password": password, "email": f"{name}@x.test"}
    )
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return User(name, user_id, r.json()["access_token"])


@dataclass
class Attempt:
    """One request of one kind: when it started and ended, and whether it was acknowledged."""

    kind: str
    start: float
    end: float
    ok: bool
    detail: str = ""


class Hooks:
    """The loopback webhook receiver shared by every fault: answers verifications, keeps deliveries."""

    def __init__(self) -> None:
        self.deliveries: list[Received] = []
        self.receiver = Receiver(self._answer)

    async def _answer(self, item: Received) -> web.Response:
        if not signature_ok(HOOK_SECRET, item):
            return web.Response(status=403)
        if item.headers["CPC-Message-Type"] == "webhook_callback_verification":
            return web.Response(text=json.loads(item.body)["challenge"])
        self.deliveries.append(item)
        return web.Response(status=204)

    def online_for(self, channel: str) -> list[tuple[str, str]]:
        """(message id, session id) of each stream.online delivery for `channel`."""
        out = []
        for item in self.deliveries:
            if item.headers.get("CPC-Subscription-Type") != "stream.online":
                continue
            event = json.loads(item.body)["event"]
            if event["broadcaster_user_login"] == channel:
                out.append((item.headers["CPC-Message-Id"], event["id"]))
        return out


@dataclass
class Target:
    """What one fault's load aims at: a fresh channel with its owner, a follower who watches it go live,
    a webhook on stream.online, and the shared pool of fans; plus what was acknowledged."""

    owner: User
    channel: str
    watcher: User
    fans: list[User]
    attempts: list[Attempt] = field(default_factory=list)
    followed: dict[str, bool] = field(default_factory=dict)  # fan username -> follows at the end
    chats: dict[str, str] = field(default_factory=dict)  # text -> message id from the ack
    sessions: list[str] = field(default_factory=list)  # acknowledged go-live session ids
    subscribed: list[str] = field(default_factory=list)  # fan usernames whose payment event was acked

    def acked(self, kind: str) -> int:
        return sum(1 for a in self.attempts if a.kind == kind and a.ok)

    def summary(self) -> str:
        """Per kind: acknowledged and failed attempts, and the last failure."""
        parts = []
        for kind in KINDS:
            failed = [a for a in self.attempts if a.kind == kind and not a.ok]
            last = f" (last: {failed[-1].detail})" if failed else ""
            parts.append(f"{kind} {self.acked(kind)} acked, {len(failed)} failed{last}")
        return "; ".join(parts)


async def prepare(client: httpx.AsyncClient, hooks: Hooks, fans: list[User], tag: str) -> Target:
    """A fresh channel for one fault, its watcher following it, its stream.online webhook enabled."""
    owner, watcher = await asyncio.gather(register(client, f"o{tag}"), register(client, f"w{tag}"))
    r = await client.post(
        "/api/v1/channels",
        json={"name": owner.username, "title": "Chaos", "category": "Art"},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    channel = owner.username
    r = await client.post(f"/api/v1/channels/{channel}/follow", headers=watcher.headers)
    assert r.status_code == 200, r.text
    base = f"/api/v1/channels/{channel}/webhooks"
    body = {"type": "stream.online", "callback_url": hooks.receiver.url, "secret": HOOK_SECRET}
    r = await client.post(base, json=body, headers=owner.headers)
    assert r.status_code == 202, r.text
    for _ in range(200):
        [hook] = (await client.get(base, headers=owner.headers)).json()["items"]
        if hook["status"] == "enabled":
            break
        await asyncio.sleep(0.05)
    assert hook["status"] == "enabled", hook
    return Target(owner, channel, watcher, fans)


class Load:
    """The four loops against one Target until `stop()`."""

    def __init__(self, base_url: str, target: Target) -> None:
        self.base_url = base_url
        self.t = target
        self.client = httpx.AsyncClient(base_url=base_url, timeout=5)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Load:
        self._tasks = [
            asyncio.create_task(self._loop(self._follow_ops())),
            asyncio.create_task(self._chat()),
            asyncio.create_task(self._loop(self._golive_ops())),
            asyncio.create_task(self._loop(self._payment_ops())),
        ]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.client.aclose()

    def _record(self, kind: str, start: float, ok: bool, detail: str = "") -> None:
        self.t.attempts.append(Attempt(kind, start, time.monotonic(), ok, detail))

    async def _until_acked(self, kind: str, request: Any) -> Any:
        """Call `request()` (one HTTP attempt, returning the body or raising) until it succeeds."""
        while True:
            start = time.monotonic()
            try:
                result = await request()
            except Exception as exc:  # 5xx, reset, timeout: not acknowledged, retried
                self._record(kind, start, False, f"{type(exc).__name__}: {exc}"[:200])
                if self._stop.is_set() and kind != "golive":
                    return None
                await asyncio.sleep(0.1)
                continue
            self._record(kind, start, True)
            return result

    async def _loop(self, ops: Any) -> None:
        async for _ in ops:
            if self._stop.is_set():
                return
            await asyncio.sleep(0.25)

    async def _ok(self, method: str, url: str, **kw: Any) -> httpx.Response:
        r = await self.client.request(method, url, **kw)
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {url} answered {r.status_code}: {r.text[:120]}")
        return r

    async def _follow_ops(self) -> Any:
        name = self.t.channel
        for n, fan in enumerate(self.t.fans):
            acked = await self._until_acked(
                "follow", lambda f=fan: self._ok("POST", f"/api/v1/channels/{name}/follow", headers=f.headers)
            )
            if acked is None:
                return
            self.t.followed[fan.username] = True
            if n % 4 == 3:  # every fourth fan changes their mind
                acked = await self._until_acked(
                    "follow",
                    lambda f=fan: self._ok("DELETE", f"/api/v1/channels/{name}/follow", headers=f.headers),
                )
                if acked is None:
                    return
                self.t.followed[fan.username] = False
            yield
        await self._stop.wait()  # the pool is used up: this kind idles (recovery then never shows)

    async def _golive_ops(self) -> Any:
        url = f"/api/v1/operator/channels/{self.t.channel}/session"
        while True:
            r = await self._until_acked("golive", lambda: self._ok("POST", url, headers=OPERATOR))
            if r is None:
                return
            session_id = r.json()["session_id"]
            if session_id not in self.t.sessions:
                self.t.sessions.append(session_id)
            await asyncio.sleep(0.2)
            # Ended again before the next one (also once stopping: no session is left open).
            await self._until_acked("golive", lambda: self._end(url))
            yield

    async def _end(self, url: str) -> httpx.Response:
        r = await self.client.delete(url, headers=OPERATOR)
        if r.status_code == 404 and r.json().get("code") == "not_live":
            return r  # an earlier attempt ended it but its answer was lost
        if r.status_code >= 300:
            raise RuntimeError(f"DELETE {url} answered {r.status_code}: {r.text[:120]}")
        return r

    async def _payment_ops(self) -> Any:
        for fan in self.t.fans:
            payload = {
                "id": f"evt_{secrets.token_hex(8)}",
                "type": "subscription.created",
                "created": int(time.time()),
                "data": {"username": fan.username, "channel": self.t.channel, "tier": 1},
            }
            body = json.dumps(payload).encode()
            tries = itertools.count()

            async def send(body: bytes = body, tries: Iterator[int] = tries) -> httpx.Response:
                # A provider's retry: the same event, freshly signed (a reused signature is a replay).
                at = int(time.time()) + next(tries)
                mac = hmac.new(PAYMENT_WEBHOOK_SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256)
                headers = {
                    "CPC-Signature": f"t={at},v1={mac.hexdigest()}",
                    "Content-Type": "application/json",
                }
                return await self._ok("POST", "/api/v1/payments/webhook", content=body, headers=headers)

            if await self._until_acked("payment", send) is None:
                return
            self.t.subscribed.append(fan.username)
            yield
        await self._stop.wait()  # the pool is used up: this kind idles (recovery then never shows)

    async def _chat(self) -> None:
        """The owner chats (a socket reopened whenever it drops); a line without an ack is sent again with
        the same nonce, which chat stores once."""
        sock: ChatClient | None = None
        for n in range(CHAT_LIMIT):
            if self._stop.is_set():
                break
            text, nonce = f"chaos line {n} {secrets.token_hex(3)}", secrets.token_hex(8)
            while True:
                start = time.monotonic()
                try:
                    if sock is None or sock.closed is not None:
                        sock = await asyncio.wait_for(
                            ChatClient.open(self.base_url, self.t.channel, self.t.owner.token), 5
                        )
                    frame = await asyncio.wait_for(sock.say(text, nonce), 5)
                    if frame["type"] != "ack":
                        raise RuntimeError(f"error frame {frame}")
                except Exception as exc:
                    self._record("chat", start, False, f"{type(exc).__name__}: {exc}"[:200])
                    if sock is not None:
                        with contextlib.suppress(Exception):
                            await sock.close()
                    sock = None
                    await asyncio.sleep(0.1)
                    continue
                self._record("chat", start, True)
                self.t.chats[text] = frame["id"]
                break
            await asyncio.sleep(0.15)
        if sock is not None:
            await sock.close()
        await self._stop.wait()


class Viewer:
    """A WebRTC broadcast (aiortc, marked test pattern over WHIP) on a channel of its own, watched by one
    WHEP viewer for the whole suite. Each quarter second with an intact picture is an acknowledged "viewer" round;
    2 s without one is a failed round, after which the viewer (and, if that does not help, the
    broadcaster) connects again. `gap` is the longest time without an intact picture since `mark()`."""

    def __init__(self, base_url: str, channel: str, key: str) -> None:
        self.base_url = base_url
        self.channel = channel
        self.key = key
        self.attempts: list[Attempt] = []
        self.gap = 0.0
        self._last_picture = time.monotonic()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Viewer:
        self._task = asyncio.create_task(self._run())
        return self

    def mark(self) -> None:
        """Start measuring the gap afresh (a new fault)."""
        self.gap = 0.0

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        from tests.integration.test_webrtc import broadcast, watch

        source: Any = None
        viewer: Any = None
        failures = 0
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    if source is None:
                        # A session the killed process left behind ends first (else WHIP says already live).
                        await client.delete(
                            f"/api/v1/operator/channels/{self.channel}/session", headers=OPERATOR
                        )
                        source, _pattern, _loc = await broadcast(client, self.channel, self.key)
                    if viewer is None:
                        pc, tracks, _loc = await watch(client, self.channel)
                        viewer = (pc, await asyncio.wait_for(tracks["video"], 5))
                    await self._pictures(viewer[1])
                except Exception as exc:
                    self.attempts.append(Attempt("viewer", start, time.monotonic(), False, repr(exc)[:200]))
                    failures += 1
                    viewer = await _close(viewer[0] if viewer else None)
                    if failures >= 3:
                        source, failures = await _close(source), 0
                    await asyncio.sleep(0.2)
                    continue
                failures = 0
                self.attempts.append(Attempt("viewer", start, time.monotonic(), True))
            await _close(viewer[0] if viewer else None)
            await _close(source)

    async def _pictures(self, track: Any) -> None:
        """Read pictures for a quarter second; raises when none intact came for 2 s."""
        from libs.media.testpattern import read_marks

        until = time.monotonic() + 0.25
        while time.monotonic() < until:
            frame = await asyncio.wait_for(
                track.recv(), max(2.0 - (time.monotonic() - self._last_picture), 0.1)
            )
            if read_marks(frame) is not None:
                now = time.monotonic()
                self.gap = max(self.gap, now - self._last_picture)
                self._last_picture = now


async def _close(pc: Any) -> None:
    if pc is not None:
        with contextlib.suppress(Exception):
            await pc.close()
