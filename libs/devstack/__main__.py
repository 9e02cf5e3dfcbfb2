"""`python -m libs.devstack run`: the whole platform on embedded defaults (what `make run` calls)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time

import msgspec

from libs.config import ConfigError, load_config
from libs.devstack.nats_server import NatsServer
from libs.devstack.postgres import EmbeddedPostgres, create_database
from libs.devstack.processes import ROOT, ServiceProcess, discover_services, stop_all

METRICS_BASE = 9100


class DevConfig(msgspec.Struct, frozen=True, kw_only=True):
    """`make run` settings (CPC_DEV_*), plus CPC_DATABASE_URL for an existing PostgreSQL."""

    data_dir: str = ".data"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    nats_port: int = 0
    metrics_base_port: int = METRICS_BASE


def _say(line: str) -> None:
    sys.stdout.write(f"{'devstack':<12}| {line}\n")
    sys.stdout.flush()


def run() -> int:
    """Start NATS, PostgreSQL, every service and the gateway; stop them all on Ctrl-C."""
    try:
        cfg = load_config(DevConfig, prefix="CPC_DEV_")
    except ConfigError as exc:
        _say(f"bad setting: {exc}")
        return 2
    data = (ROOT / cfg.data_dir).resolve()  # an absolute CPC_DEV_DATA_DIR stands as it is
    data.mkdir(parents=True, exist_ok=True)
    nats = NatsServer(data / "nats", port=cfg.nats_port).start(log_file=data / "nats-server.log")
    _say(f"nats-server with JetStream on {nats.url} (log in {data / 'nats-server.log'})")
    postgres: EmbeddedPostgres | None = None
    database_url = os.environ.get("CPC_DATABASE_URL", "")
    if not database_url:
        postgres = EmbeddedPostgres(data / "postgres").start()
        asyncio.run(create_database(postgres.url(), "cpclive"))
        database_url = postgres.url("cpclive")
        _say(f"embedded PostgreSQL 16 in {postgres.data_dir}")
    else:
        _say("using the PostgreSQL named by CPC_DATABASE_URL")
    base_env = {"CPC_NATS_URL": nats.url, "CPC_DATABASE_URL": database_url, "CPC_LOG_JSON": "false"}
    procs: list[ServiceProcess] = []
    for i, name in enumerate(discover_services()):
        env = dict(base_env, CPC_METRICS_PORT=str(cfg.metrics_base_port + i))
        if name == "gateway":
            env.update(CPC_HTTP_HOST=cfg.http_host, CPC_HTTP_PORT=str(cfg.http_port))
        procs.append(ServiceProcess(name, env).start())
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    _say(f"CPC Live is starting at http://{cfg.http_host}:{cfg.http_port}/  (Ctrl-C stops everything)")
    restarts: dict[str, float] = {}
    while not stopping:
        time.sleep(0.25)
        for i, proc in enumerate(procs):
            # A crashed service comes back, at most once a second, as a supervisor would bring it back.
            recent = time.monotonic() - restarts.get(proc.name, 0.0) < 1.0
            if not proc.running and not stopping and not recent:
                code = proc.process.returncode if proc.process else None
                _say(f"{proc.name} exited with {code}; restarting")
                restarts[proc.name] = time.monotonic()
                procs[i] = ServiceProcess(proc.name, proc.env).start()
    _say("stopping")
    stop_all(procs)
    nats.stop()
    if postgres is not None:
        postgres.stop()
    _say("stopped; data kept in " + str(data))
    return 0


def main() -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m libs.devstack")
    parser.add_argument("command", choices=["run"])
    parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return run()
    return 130


if __name__ == "__main__":
    sys.exit(main())
