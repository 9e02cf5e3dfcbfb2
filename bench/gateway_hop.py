"""What the gateway and the NATS hop cost: `GET /api/v1/channels/{name}` through the gateway, the same
`channel.get` request straight over NATS, and the channel service's handler called in-process (the
baseline), measured in one run and printed side by side with their ratios.

    .venv/bin/python bench/gateway_hop.py [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from httpload import percentile, run_load

from libs.bus import connect, request
from libs.db import create_pool
from libs.devstack.stack import Stack
from proto import channel as pc
from services.channel.handlers import ChannelHandlers


def _seed(base: str) -> str:
    name = f"bench_{secrets.token_hex(3)}"
    password = "a bench passphrase 42"
    with httpx.Client(base_url=base, timeout=10) as api:
        api.post(
            "/api/v1/auth/register",
            json={"username": name, "password": password, "email": f"{name}@example.test"},
        ).raise_for_status()
        token = api.post("/api/v1/auth/login", json={"username": name, "password": password}).json()[
            "access_token"
        ]
        api.post(
            "/api/v1/channels",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": name, "title": "Benchmark channel", "category": "Art", "tags": ["bench"]},
        ).raise_for_status()
    return name


async def _closed_loop(
    call: Callable[[], Awaitable[object]], *, workers: int, seconds: float
) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies, time.perf_counter() - started


def _row(label: str, latencies: list[float], elapsed: float, baseline_rps: float | None) -> tuple[str, float]:
    rps = len(latencies) / elapsed
    ratio = f"{baseline_rps / rps:8.1f}x" if baseline_rps else "   (base)"
    line = (
        f"{label:<34}{rps:>10,.0f}{percentile(latencies, 0.5) * 1000:>10.2f}"
        f"{percentile(latencies, 0.99) * 1000:>10.2f}{ratio:>12}"
    )
    return line, rps


async def _measure(stack: Stack, name: str, seconds: float, connections: int) -> None:
    pool = await create_pool(stack.database_url, schema="channel", max_size=connections)
    # get() reads the store only: the images bucket, the workers and the users copy are never touched.
    handlers = ChannelHandlers(pool=pool, images=None, executor=None, users=None)  # type: ignore[arg-type]
    nc = await connect(stack.nats_url, name="bench")
    try:
        get = pc.GetChannel(name=name)
        # Warm every path first (connections, prepared statements, caches).
        await _closed_loop(lambda: handlers.get(get), workers=connections, seconds=0.5)
        await _closed_loop(lambda: request(nc, pc.GET, get), workers=connections, seconds=0.5)
        await run_load(f"{stack.url}/api/v1/channels/{name}", connections=connections, seconds=0.5)

        inproc, t_in = await _closed_loop(lambda: handlers.get(get), workers=connections, seconds=seconds)
        bus, t_bus = await _closed_loop(
            lambda: request(nc, pc.GET, get), workers=connections, seconds=seconds
        )
        http, errors, t_http = await run_load(
            f"{stack.url}/api/v1/channels/{name}", connections=connections, seconds=seconds
        )
    finally:
        await nc.drain()
        await pool.close()
    print(
        f"\nGET channel '{name}': {connections} concurrent callers, {seconds:g} s each, {os.cpu_count()} cores\n"
    )
    print(f"{'path':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'cost ratio':>12}")
    base_line, base_rps = _row("in-process handler (baseline)", inproc, t_in, None)
    print(base_line)
    print(_row("NATS request/reply (channel.get)", bus, t_bus, base_rps)[0])
    print(_row("HTTP through the gateway", http, t_http, base_rps)[0])
    print(f"\nHTTP errors: {errors}; ratio = baseline req/s / path req/s (how many times slower)")


def main() -> None:
    """Start a stack in a scratch folder, seed one channel, measure, stop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="cpc-bench-")), env={"CPC_LOG_LEVEL": "warning"})
    try:
        stack.start()
        name = _seed(stack.url)
        asyncio.run(_measure(stack, name, args.seconds, args.connections))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
