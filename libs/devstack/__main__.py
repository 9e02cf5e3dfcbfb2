"""`python -m libs.devstack run`: the whole platform on embedded defaults (what `make run` calls)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import msgspec

from libs.config import ConfigError, load_config
from libs.devstack.nats_server import NatsServer
from libs.devstack.postgres import EmbeddedPostgres, create_database
from libs.devstack.processes import ROOT, STDOUT_LOCK, ServiceProcess, discover_services, stop_all
from libs.devstack.supervisor import Supervisor, Unit

METRICS_BASE = 9100


class DevConfig(msgspec.Struct, frozen=True, kw_only=True):
    """`make run` settings (CPC_DEV_*), plus CPC_DATABASE_URL for an existing PostgreSQL."""

    data_dir: str = ".data"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    nats_port: int = 0
    metrics_base_port: int = METRICS_BASE


def _say(line: str) -> None:
    with STDOUT_LOCK:
        sys.stdout.write(f"{'devstack':<12}| {line}\n")
        sys.stdout.flush()


class _Platform:
    """What `run` started, so that whatever it got to is stopped in order: services, NATS, PostgreSQL."""

    def __init__(self) -> None:
        self.nats: NatsServer | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.procs: list[ServiceProcess] = []
        self.stopping = False

    def start(self, cfg: DevConfig, data: Path) -> None:
        """Start NATS, PostgreSQL (unless CPC_DATABASE_URL names one), every service and the gateway."""
        self.nats = NatsServer(data / "nats", port=cfg.nats_port).start(log_file=data / "nats-server.log")
        _say(f"nats-server with JetStream on {self.nats.url} (log in {data / 'nats-server.log'})")
        database_url = os.environ.get("CPC_DATABASE_URL", "")
        if not database_url:
            self.postgres = EmbeddedPostgres(data / "postgres").start()
            asyncio.run(create_database(self.postgres.url(), "cpclive"))
            database_url = self.postgres.url("cpclive")
            _say(f"embedded PostgreSQL 16 in {self.postgres.data_dir}")
        else:
            _say("using the PostgreSQL named by CPC_DATABASE_URL")
        base_env = {"CPC_NATS_URL": self.nats.url, "CPC_DATABASE_URL": database_url, "CPC_LOG_JSON": "false"}
        for i, name in enumerate(discover_services()):
            env = dict(base_env, CPC_METRICS_PORT=str(cfg.metrics_base_port + i))
            if name == "gateway":
                env.update(CPC_HTTP_HOST=cfg.http_host, CPC_HTTP_PORT=str(cfg.http_port))
            self.procs.append(ServiceProcess(name, env).start())

    def supervise(self) -> None:
        """Until stopped: PostgreSQL, NATS or a service that died comes back with its data, after a
        back-off (libs/devstack/supervisor.py), each restart said on the terminal."""
        units = []
        if self.postgres is not None:
            units.append(Unit("postgres", self.postgres.running, self.postgres.recover))
        if self.nats is not None:
            nats = self.nats
            units.append(Unit("nats-server", lambda: nats.running, nats.start))
        units += [self._service_unit(i) for i in range(len(self.procs))]
        supervisor = Supervisor(units, say=_say).start()
        try:
            while not self.stopping:
                time.sleep(0.25)
        finally:
            # Stopped before anything else, so that the services stopped next are not started again.
            supervisor.stop()

    def _service_unit(self, i: int) -> Unit:
        def restart() -> None:
            old = self.procs[i]
            code = old.process.returncode if old.process else None
            _say(f"{old.name} exited with {code}")
            self.procs[i] = ServiceProcess(old.name, old.env).start()

        return Unit(self.procs[i].name, lambda: self.procs[i].running, restart)

    def stop(self) -> None:
        """Services first, while NATS and PostgreSQL still answer their goodbyes; then NATS, PostgreSQL."""
        self.stopping = True
        stop_all(self.procs)
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()


def run() -> int:
    """Start NATS, PostgreSQL, every service and the gateway; stop them all on Ctrl-C."""
    try:
        cfg = load_config(DevConfig, prefix="CPC_DEV_")
    except ConfigError as exc:
        _say(f"bad setting: {exc}")
        return 2
    data = (ROOT / cfg.data_dir).resolve()  # an absolute CPC_DEV_DATA_DIR stands as it is
    data.mkdir(parents=True, exist_ok=True)
    platform = _Platform()

    def on_signal(*_: object) -> None:
        platform.stopping = True

    try:
        platform.start(cfg, data)
        # From here Ctrl-C only asks the loop to stop; before, its KeyboardInterrupt lands in `finally`.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        _say(f"CPC Live is starting at http://{cfg.http_host}:{cfg.http_port}/  (Ctrl-C stops everything)")
        platform.supervise()
    finally:
        # A second Ctrl-C must not cut the stop short.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        _say("stopping")
        platform.stop()
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
