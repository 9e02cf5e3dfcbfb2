"""A small HTTP/1.1 keep-alive load generator: N connections, GET one path, latency per request.

Deliberately bare (asyncio streams, no client library) so that the client costs little of the two cores
it shares with the server under test."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


async def _connection(host: str, port: int, request: bytes, deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            if not status_line.startswith(b"HTTP/1.1 200"):
                errors += 1
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()
    return errors


async def run_load(url: str, *, connections: int, seconds: float) -> tuple[list[float], int, float]:
    """GET `url` over `connections` keep-alive connections for `seconds`; (latencies, errors, elapsed)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".replace(
        "? HTTP", " HTTP"
    )
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    errors = await asyncio.gather(
        *(_connection(host, port, request.encode(), deadline, latencies) for _ in range(connections))
    )
    return latencies, sum(errors), time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
