"""What serving the web app through the gateway costs: requests/s for a fingerprinted asset (the main
script), an app route answered with index.html (SPA fallback) and the manifest, against a bare ASGI app
on the same uvicorn serving the same bytes from memory (the ceiling for a Python file server here),
measured in one run and printed with their ratios.

    .venv/bin/python bench/web_static.py [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from httpload import percentile, run_load

from libs.devstack.nats_server import NatsServer
from libs.devstack.ports import free_port
from libs.devstack.processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "web" / "dist"


def serve_baseline(port: int) -> None:
    """A bare ASGI app: every known path's bytes preloaded; anything else gets index.html."""
    import uvicorn

    files = {"/" + str(p.relative_to(DIST)): p.read_bytes() for p in DIST.rglob("*") if p.is_file()}
    index = files["/index.html"]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = files.get(scope["path"], index)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _wait(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


async def _measure(base: str, path: str, connections: int, seconds: float) -> tuple[float, float]:
    latencies, errors, elapsed = await run_load(base + path, connections=connections, seconds=seconds)
    assert errors == 0, f"{errors} failed requests on {base}{path}"
    return len(latencies) / elapsed, percentile(latencies, 0.99) * 1000


def main() -> None:
    """Start NATS, a gateway and the baseline server; load each path on both; print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve-baseline", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    assert (DIST / "index.html").is_file(), "build the app first: make web"
    folder = Path(tempfile.mkdtemp(prefix="cpc-bench-web-"))
    nats = NatsServer(folder / "nats").start()
    gw_port, base_port = free_port(), free_port()
    env = {
        "CPC_NATS_URL": nats.url,
        "CPC_HTTP_PORT": str(gw_port),
        "CPC_LOG_LEVEL": "warning",
        "CPC_METRICS_PORT": "0",
    }
    gateway = ServiceProcess("gateway", env, log_path=folder / "gateway.log").start()
    baseline = subprocess.Popen(
        [sys.executable, __file__, "--serve-baseline", str(base_port)], env=os.environ.copy()
    )
    try:
        gw, bl = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{base_port}"
        _wait(gw + "/healthz")
        _wait(bl + "/index.html")
        script = "/" + next((DIST / "assets").glob("index-*.js")).relative_to(DIST).as_posix()
        print(f"{'path':<34} {'gateway req/s':>14} {'baseline req/s':>15} {'ratio':>6} {'p99 ms gw/bl':>14}")
        for label, path in (
            ("asset " + script[-12:], script),
            ("app route /some_channel", "/some_channel"),
            ("manifest", "/manifest.webmanifest"),
        ):
            g_rps, g_p99 = asyncio.run(_measure(gw, path, args.connections, args.seconds))
            b_rps, b_p99 = asyncio.run(_measure(bl, path, args.connections, args.seconds))
            print(
                f"{label:<34} {g_rps:>14,.0f} {b_rps:>15,.0f} {g_rps / b_rps:>6.2f} {g_p99:>6.1f}/{b_p99:<6.1f}"
            )
    finally:
        baseline.terminate()
        baseline.wait(timeout=10)
        gateway.stop()
        nats.stop()


if __name__ == "__main__":
    main()
