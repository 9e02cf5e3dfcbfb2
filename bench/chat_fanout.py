"""Chat fan-out: 1,000 and 5,000 reader sockets in one room, 20 and 100 messages per second sent through
the real path (WebSocket -> gateway -> chat service -> JetStream -> gateway fan-out), against the ceiling:
a bare `websockets` broadcast server with the same coalescing, fed from NATS, measured in the same run.
Readers run in separate processes. Prints deliveries per second, p50/p99 send-to-receive latency and the
ratio to the ceiling. Goal at 5,000 sockets and 100 msg/s: >= 0.8x the ceiling, p99 <= 250 ms.

    .venv/bin/python bench/chat_fanout.py [--seconds 5] [--sockets 1000,5000] [--rates 20,100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path

import chat_ceiling
import chat_clients
import httpx
import websockets
from httpload import percentile

from libs.bus import connect, encode, utcnow
from libs.devstack.ports import free_port
from libs.devstack.stack import Stack
from proto import chat as pc

Send = Callable[[str], Awaitable[None]]

SENDERS = 50


def _account(api: httpx.Client) -> tuple[str, str]:
    name = f"bench_{secrets.token_hex(4)}"
    body = {"username": name, "password": "a bench passphrase 42", "email": f"{name}@example.test"}
    api.post("/api/v1/auth/register", json=body).raise_for_status()
    token = api.post("/api/v1/auth/login", json={"username": name, "password": body["password"]})
    return name, token.json()["access_token"]


def _room(api: httpx.Client, token: str) -> str:
    """A fresh channel (empty history, so joins are cheap) whose chat room exists."""
    name = f"fan_{secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": name, "title": "fan-out bench", "category": "Other"}
    api.post("/api/v1/channels", json=body, headers=headers).raise_for_status()
    for _ in range(300):
        if api.get(f"/api/v1/channels/{name}/chat/blocked-terms", headers=headers).status_code == 200:
            return name
        time.sleep(0.05)
    raise RuntimeError("chat room never appeared")


async def _ask(conns: list[Connection], command: str, args: object = None) -> list[object]:
    for c in conns:
        c.send((command, args))
    return [await asyncio.to_thread(c.recv) for c in conns]


async def _open(conns: list[Connection], host: str, port: int, path: str, sockets: int) -> None:
    per = sockets // len(conns)
    for i, c in enumerate(conns):
        c.send(("open", (host, port, path, per + (sockets % len(conns) if i == 0 else 0), i * per)))
    for c in conns:
        await asyncio.to_thread(c.recv)


async def _paced(send: Send, rate: int, seconds: float) -> int:
    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(f"b {time.time():.6f}")
    return total


async def _scenario(
    conns: list[Connection], target: tuple[str, int, str], sockets: int, rate: int, seconds: float, send: Send
) -> tuple[float, list[float], int]:
    await _open(conns, *target, sockets)
    await asyncio.sleep(0.5)
    await _ask(conns, "reset")
    sent = await _paced(send, rate, seconds)
    await asyncio.sleep(1.0)  # the last messages are still on their way
    reports = await _ask(conns, "report")
    await _ask(conns, "close")
    deliveries = sum(r[0] for r in reports)  # type: ignore[index]
    latencies = [x for r in reports for x in r[1]]  # type: ignore[index]
    closed = sum(r[2] for r in reports)  # type: ignore[index]
    if deliveries < sent * sockets * 0.99:
        print(f"  note: {deliveries:,} of {sent * sockets:,} deliveries arrived; {closed} sockets closed")
    return deliveries / seconds, latencies, closed


async def _our_sender(
    base: str, channel: str, tokens: list[str]
) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """Signed-in sockets of several chatters sending in turn (frames are not held back waiting for acks)."""
    url = base.replace("http://", "ws://") + f"/api/v1/channels/{channel}/chat"
    sockets = []
    for token in tokens:
        ws = await websockets.connect(url, compression=None, max_size=None)
        await ws.send(json.dumps({"type": "hello", "token": token}))
        sockets.append(ws)

    async def drain(ws: websockets.ClientConnection) -> None:
        async for _ in ws:
            pass

    drains = [asyncio.create_task(drain(ws)) for ws in sockets]
    turn = [0]

    async def send(text: str) -> None:
        turn[0] += 1
        await sockets[turn[0] % len(sockets)].send(
            json.dumps({"type": "send", "nonce": uuid.uuid4().hex, "text": text})
        )

    async def close() -> None:
        for ws in sockets:
            await ws.close()
        for d in drains:
            d.cancel()

    return send, close


def _row(label: str, rate: float, lat: list[float], ceiling: float | None) -> str:
    ratio = f"{rate / ceiling:6.2f}x" if ceiling else "(ceiling)"
    return (
        f"  {label:<28}{rate:>14,.0f}{percentile(lat, 0.5) * 1000:>10.1f}"
        f"{percentile(lat, 0.99) * 1000:>10.1f}{ratio:>11}"
    )


async def _measure(
    stack: Stack, args: argparse.Namespace, conns: list[Connection], ceiling_port: int
) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        # Lines come from many chatters, as in a real room: one socket's lines are relayed one after
        # another, and one user's sends are serialised by the rate-limit lock.
        chatters = [_account(api)[1] for _ in range(SENDERS)]
        rooms = {}
        for key in [(s, r) for s in args.sockets for r in args.rates]:
            _, owner = _account(api)  # one channel per user: an owner per room
            rooms[key] = (_room(api, owner), chatters)
    nc = await connect(stack.nats_url, name="bench")
    sender = pc.Sender(id="bench", username="bench", badges=[pc.Badge(kind="broadcaster")])

    async def ceiling_send(text: str) -> None:
        message = pc.ChatMessage(
            id=str(uuid.uuid4()),
            room_id="bench",
            sender=sender,
            fragments=[pc.Text(text=text)],
            sent_at=utcnow(),
        )
        await nc.publish("bench.ceiling", encode(message))

    print(f"{'':2}{'scenario':<28}{'deliveries/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'ratio':>11}")
    for sockets in args.sockets:
        for rate in args.rates:
            channel, tokens = rooms[(sockets, rate)]
            print(f"{sockets:,} sockets, {rate} msg/s in (ideal {sockets * rate:,} deliveries/s)")
            ceil_rate, ceil_lat, _ = await _scenario(
                conns, ("127.0.0.1", ceiling_port, "/"), sockets, rate, args.seconds, ceiling_send
            )
            send, close = await _our_sender(stack.url, channel, tokens)
            ours_rate, ours_lat, _ = await _scenario(
                conns,
                ("127.0.0.1", stack.http_port, f"/api/v1/channels/{channel}/chat"),
                sockets,
                rate,
                args.seconds,
                send,
            )
            await close()
            print(_row("websockets ceiling", ceil_rate, ceil_lat, None))
            print(_row("gateway + chat service", ours_rate, ours_lat, ceil_rate))
    await nc.drain()


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the ceiling server never listened")


def main() -> None:
    """Start a stack, the ceiling server and the reader processes; measure each scenario."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sockets", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 5000])
    parser.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")], default=[20, 100])
    parser.add_argument("--workers", type=int, default=4, help="reader processes")
    parser.add_argument("--coalesce-ms", type=float, default=20.0, help="CPC_CHAT_COALESCE_MS")
    parser.add_argument("--coalesce-max-ms", type=float, default=100.0, help="CPC_CHAT_COALESCE_MAX_MS")
    parser.add_argument("--write-budget", type=float, default=100_000, help="CPC_CHAT_WRITE_BUDGET")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it: 5,000 sockets
    env = {
        "CPC_LOG_LEVEL": "warning",
        "CPC_CHAT_RATE_MESSAGES": "1000000",
        "CPC_CHAT_PRIVILEGED_RATE_MESSAGES": "1000000",
        "CPC_CHAT_COALESCE_MS": str(args.coalesce_ms),
        "CPC_CHAT_COALESCE_MAX_MS": str(args.coalesce_max_ms),
        "CPC_CHAT_WRITE_BUDGET": str(args.write_budget),
        "CPC_REQUIRED_SERVICES": "identity,channel,chat",
    }
    stack = Stack(
        Path(tempfile.mkdtemp(prefix="cpc-bench-")),
        services=["identity", "channel", "chat", "gateway"],
        env=env,
    )
    ctx = mp.get_context("spawn")
    procs = []
    try:
        stack.start()
        ceiling_port = free_port()
        ceiling = ctx.Process(
            target=chat_ceiling.run,
            args=(
                ceiling_port,
                stack.nats_url,
                "bench.ceiling",
                (args.coalesce_ms / 1000, args.write_budget, args.coalesce_max_ms / 1000),
                256,
            ),
            daemon=True,
        )
        ceiling.start()
        procs.append(ceiling)
        conns = []
        for _ in range(args.workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=chat_clients.worker, args=(child,), daemon=True)
            p.start()
            procs.append(p)
            conns.append(parent)
        _wait_listening(ceiling_port)
        asyncio.run(_measure(stack, args, conns, ceiling_port))
        for c in conns:
            c.send(("stop", None))
    finally:
        for p in procs:
            p.terminate()
        stack.stop()


if __name__ == "__main__":
    main()
