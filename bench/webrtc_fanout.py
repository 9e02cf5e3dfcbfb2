"""WebRTC fan-out: what one more viewer costs the edge, next to aiortc's default path that re-encodes per
viewer, measured in the same run.

    .venv/bin/python bench/webrtc_fanout.py [--viewers 10,50,100,150] [--seconds 10] [--baseline-viewers 5]
                                            [--viewers-per-process 50]

Setup: a whole stack on loopback. This process broadcasts over WHIP with aiortc: the marked test pattern
(libs/media/testpattern.py) at 1280x720, 30 fps, with aiortc's VP8 encoder aimed at ~2.5 Mbit/s, plus Opus.
For each N, separate viewer processes (--viewers-per-process each) open N aiortc WHEP viewers through
the gateway; the edge forwards the encoded frames it gets from ingest over NATS. The baseline is another process doing what aiortc does
by default: it watches the channel once (decoding), and serves its own N viewers through a MediaRelay,
so aiortc encodes VP8 and Opus once per viewer.

Figures, over a window of --seconds once every viewer receives video:
- CPU per viewer: utime+stime of the edge process (resp. the baseline server) from /proc/<pid>/stat
  over the window, divided by the wall time and N (cores per viewer; all of the process counted).
- Delivered: frames each viewer received among those captured in the window, over the frames captured
  (counted from the frame counter drawn into the picture), averaged over viewers.
- Glass-to-glass latency: the pattern draws its capture wall-clock time (ms) into every picture. Edge
  viewers never decode (their receivers are tapped with libs/media/aiortc_ext.py); instead one reference
  decoder per viewer process decodes one viewer's copy and maps each encoded frame, by the hash of
  its bytes (byte-identical for every edge viewer since nothing re-encodes), to its counter and capture
  time; a viewer's latency for a frame is its arrival time of the complete encoded frame minus that
  capture time (before its own decode, a few ms). Baseline viewers' bytes differ per viewer, so each
  decodes and reads the marks itself (their latency includes their decode). All on one host, one clock.
  A picture damaged by a lost packet fails the pattern's check row and counts as not delivered.

Goals on 2 cores: >= 150 viewers per core with >= 99 % of frames delivered, p50 <= 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from fanout_peers import baseline_server_process, merge, new_pc, setup_process, viewer_process

from libs.devstack.stack import Stack
from libs.media.testpattern import PatternTrack


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_channel(base: str) -> tuple[str, str]:
    """A member with a channel; its name and stream key."""
    name = f"fan_{secrets.token_hex(3)}"
    with httpx.Client(base_url=base, timeout=15) as api:
        api.post(
            "/api/v1/auth/register",
            json={"username": name, "password": "a bench passphrase 42", "email": f"{name}@example.test"},
        ).raise_for_status()
        token = api.post(
            "/api/v1/auth/login", json={"username": name, "password": "a bench passphrase 42"}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        api.post(
            "/api/v1/channels", headers=auth, json={"name": name, "title": "Fan-out", "category": "Art"}
        ).raise_for_status()
        key = api.post(f"/api/v1/channels/{name}/stream-key", headers=auth).json()["stream_key"]
    return name, key


async def broadcast(base: str, name: str, key: str) -> Any:
    """The 720p marked pattern and Opus over WHIP; returns the peer connection once the channel is live."""
    pc = new_pc()
    pc.addTrack(PatternTrack(1280, 720, 30))
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post(
            f"/api/v1/channels/{name}/whip",
            content=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
        )
        r.raise_for_status()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        for _ in range(150):
            if (await client.get(f"/api/v1/channels/{name}")).json()["live"]:
                return pc
            await asyncio.sleep(0.2)
    raise RuntimeError("the channel never went live")


async def _recv(conn: Connection, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, conn.poll, timeout)
    if not ready:
        raise TimeoutError("a bench process did not answer in time")
    return conn.recv()


async def phase(mode: str, n: int, target: Any, pid: int, seconds: float, procs: int = 1) -> dict[str, Any]:
    """Start n viewers in `procs` child processes, measure process `pid` over the window, merge figures."""
    ctx = multiprocessing.get_context("spawn")
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    pipes, children = [], []
    for share in (s for s in shares if s):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=viewer_process, args=(child, mode, share, target), daemon=True)
        proc.start()
        pipes.append(parent)
        children.append(proc)
    try:
        flowing = sum([(await _recv(p, 240))[1] for p in pipes])
        await asyncio.sleep(1.0)
        c0, t0 = cpu_seconds(pid), time.time()
        await asyncio.sleep(seconds)
        c1, t1 = cpu_seconds(pid), time.time()
        for p in pipes:
            p.send(("stop", t0, t1))
        parts = [(await _recv(p, 180))[1] for p in pipes]
    finally:
        for proc in children:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    stats = merge(parts)
    stats.update(mode=mode, flowing=flowing, cpu=(c1 - c0) / (t1 - t0) / n)
    return stats


def row(stats: dict[str, Any], base_cpu: float | None) -> str:
    """One printed line."""
    per_core = 1 / stats["cpu"] if stats["cpu"] else float("inf")
    ratio = f"{base_cpu / stats['cpu']:.1f}x" if base_cpu and stats["cpu"] else "(base)"
    label = "edge, forwarded" if stats["mode"] == "edge" else "baseline, re-encoded"
    return (
        f"{label:<22}{stats['viewers']:>6}{stats['flowing']:>8}{stats['cpu']:>12.4f}{per_core:>10.0f}"
        f"{stats['delivered'] * 100:>11.2f}{stats['p50_ms']:>9.0f}{stats['p99_ms']:>9.0f}{ratio:>10}"
    )


async def run(
    stack: Stack, counts: list[int], seconds: float, baseline_n: int, viewers_per_process: int
) -> None:
    """Broadcast, measure the baseline and every N, print the table."""
    setup_process()
    name, key = seed_channel(stack.url)
    source = await broadcast(stack.url, name, key)
    ctx = multiprocessing.get_context("spawn")
    stop_parent, stop_child = ctx.Pipe()
    offers_server, offers_viewers = ctx.Pipe()
    server = ctx.Process(
        target=baseline_server_process, args=(stop_child, offers_server, stack.url, name), daemon=True
    )
    server.start()
    try:
        await _recv(stop_parent, 60)
        assert server.pid is not None
        base = await phase("baseline", baseline_n, offers_viewers, server.pid, seconds)
    finally:
        stop_parent.send("stop")
        server.join(20)
        if server.is_alive():
            server.kill()
    edge_pid = stack.procs["edge"].process.pid  # type: ignore[union-attr]
    results = []
    for n in counts:
        procs = max(1, -(-n // viewers_per_process))
        results.append(await phase("edge", n, (stack.url, name), edge_pid, seconds, procs))
    await source.close()
    kbps = max((r["source_kbps"] for r in results), default=0)
    print(
        f"\nsource: 1280x720 marked pattern at 30 fps, VP8 ~{kbps:.0f} kbit/s + Opus; {seconds:g} s windows"
    )
    print(f"{os.cpu_count()} cores on this machine\n")
    print(
        f"{'path':<22}{'N':>6}{'flowing':>8}{'cores/view':>12}{'view/core':>10}"
        f"{'delivered%':>11}{'p50 ms':>9}{'p99 ms':>9}{'cost÷':>10}"
    )
    print(row(base, None))
    for r in results:
        print(row(r, base["cpu"]))
    print(
        "\ncost÷ = baseline cores per viewer / edge cores per viewer. "
        "Goals: >= 150 viewers/core, >= 99 % delivered, p50 <= 150 ms."
    )


def main() -> None:
    """Start a stack in a scratch folder, measure, stop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", default="10,50,100,150")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--baseline-viewers", type=int, default=5)
    parser.add_argument("--viewers-per-process", type=int, default=50)
    args = parser.parse_args()
    counts = [int(n) for n in args.viewers.split(",") if n.strip()]
    stack = Stack(Path(tempfile.mkdtemp(prefix="cpc-bench-")), env={"CPC_LOG_LEVEL": "warning"})
    try:
        stack.start()
        asyncio.run(run(stack, counts, args.seconds, args.baseline_viewers, args.viewers_per_process))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
