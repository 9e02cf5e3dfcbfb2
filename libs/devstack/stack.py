"""A whole platform on free ports in a scratch folder: NATS, PostgreSQL, every service, the gateway.
Used by the integration tests and the benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from libs.devstack.nats_server import NatsServer
from libs.devstack.ports import free_port, free_port_block
from libs.devstack.postgres import EmbeddedPostgres, create_database
from libs.devstack.processes import ServiceProcess, discover_services, stop_all
from libs.devstack.supervisor import Supervisor, Unit

__all__ = ["OPERATOR_TOKEN", "PAYMENT_WEBHOOK_SECRET", "Stack"]

# The operator token of every test and benchmark stack (never of a real deployment).
OPERATOR_TOKEN = "test-operator-token"
# The payment webhook secret of every test stack; lapsed subscriptions end at once (no grace), swept often.
PAYMENT_WEBHOOK_SECRET = "test-payment-webhook-secret"


class Stack:
    """Start with `start()`, stop with `stop()`; `url` is the gateway's base URL."""

    def __init__(
        self, root: Path, *, services: list[str] | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.root = root
        self.services = services or discover_services()
        self.extra_env = dict(env or {})
        self.nats = NatsServer(root / "nats")
        self.postgres = EmbeddedPostgres(root / "postgres", keep=False)
        self.http_port = free_port()
        self.database_url = ""
        self.procs: dict[str, ServiceProcess] = {}
        self.metrics_ports: dict[str, int] = {}
        self.supervisor: Supervisor | None = None

    @property
    def url(self) -> str:
        """Gateway base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def nats_url(self) -> str:
        """NATS client URL."""
        return self.nats.url

    def log_path(self, name: str) -> Path:
        """Where a service's output goes."""
        return self.root / f"{name}.log"

    def start(self) -> Stack:
        """Start infrastructure and every service, then wait until the gateway is ready."""
        return self.start_infra().start_services()

    def start_infra(self) -> Stack:
        """Start NATS and PostgreSQL with a fresh database (idempotent)."""
        if self.database_url:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self.nats.start(log_file=self.root / "nats-server.log")
        self.postgres.start()
        asyncio.run(create_database(self.postgres.url(), "cpclive_test", drop_first=True))
        self.database_url = self.postgres.url("cpclive_test")
        return self

    def start_services(self) -> Stack:
        """Start every service not running yet, then wait until the gateway is ready."""
        for name in self.services:
            if name not in self.procs or not self.procs[name].running:
                self.start_service(name)
        self.wait_ready()
        return self

    def env_for(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a service process gets."""
        # Below the ephemeral range: a restarted service binds the same port again, which an outgoing
        # connection could have taken in between if it were an ephemeral one.
        port = self.metrics_ports.setdefault(name, free_port_block(1))
        env = {
            "CPC_NATS_URL": self.nats.url,
            "CPC_DATABASE_URL": self.database_url,
            "CPC_METRICS_PORT": str(port),
            "CPC_LOG_JSON": "true",
            "CPC_LOG_LEVEL": "info",
            # Media services gather ICE candidates on loopback only: test traffic never leaves the host.
            "CPC_ICE_HOSTS": "127.0.0.1",
            # Tests aim webhooks and Web Push at servers on loopback, which deployments refuse.
            "CPC_ALLOW_PRIVATE_CALLBACKS": "true",
            **self.extra_env,
        }
        if name == "gateway":
            env.update(
                CPC_HTTP_HOST="127.0.0.1",
                CPC_HTTP_PORT=str(self.http_port),
                CPC_OPERATOR_TOKEN=OPERATOR_TOKEN,
            )
        if name == "social":
            env.update(
                CPC_PAYMENT_WEBHOOK_SECRET=PAYMENT_WEBHOOK_SECRET,
                CPC_SUBSCRIPTION_GRACE_SECONDS="0",
                CPC_SUBSCRIPTION_SWEEP_SECONDS="0.5",
            )
        if name == "notification":
            # Web Push is sent when the fan-out wakes its worker; a poll this long would make a missed
            # wake-up fail the push test instead of hiding behind the poll.
            env.update(CPC_PUSH_POLL_SECONDS="60")
        if name == "transcode":
            # A small ladder and short segments keep media tests at seconds of CPU on 2 cores.
            # Sessions that other tests start without media are let go after 8 s instead of holding a slot.
            small = {
                "CPC_TRANSCODE_LADDER": "320x180:300,256x144:150",
                "CPC_SEGMENT_SECONDS": "1",
                "CPC_TAKEOVER_SECONDS": "3",
                "CPC_IDLE_SECONDS": "8",
                "CPC_TRANSCODE_CAPACITY": "4",
            }
            env.update({k: v for k, v in small.items() if k not in self.extra_env})
        env.update(extra or {})
        return env

    def start_service(self, name: str, extra_env: Mapping[str, str] | None = None) -> ServiceProcess:
        """Start (or start again) one service process."""
        proc = ServiceProcess(name, self.env_for(name, extra_env), log_path=self.log_path(name)).start()
        self.procs[name] = proc
        return proc

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until GET /readyz answers 200 (every required service answers its ping)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if not proc.running:
                    tail = self.log_path(name).read_text()[-3000:] if self.log_path(name).exists() else ""
                    raise RuntimeError(f"service {name} exited during start:\n{tail}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready after {timeout:g} s: {last}")

    def supervise(self) -> Supervisor:
        """Restart PostgreSQL, NATS or a service process whenever one dies, with its data, until `stop()`
        (opt-in: the chaos suite and the outage test restart what they stop themselves). Its lines go
        to `supervisor.log` in the stack's folder."""
        if self.supervisor is None:
            log = self.root / "supervisor.log"

            def say(line: str) -> None:
                with log.open("a") as out:
                    out.write(f"{time.strftime('%H:%M:%S')} {line}\n")

            units = [
                Unit("postgres", self.postgres.running, self.postgres.recover),
                Unit("nats-server", lambda: self.nats.running, self.nats.start),
                *(self._service_unit(name) for name in self.services),
            ]
            self.supervisor = Supervisor(units, say=say).start()
        return self.supervisor

    def _service_unit(self, name: str) -> Unit:
        def alive() -> bool:
            proc = self.procs.get(name)
            return proc is not None and proc.running

        def restart() -> None:
            self.start_service(name)

        return Unit(name, alive, restart)

    def stop(self) -> None:
        """Stop the supervisor (so nothing stopped here comes back), every process, then NATS and
        PostgreSQL (whose folder is deleted)."""
        if self.supervisor is not None:
            self.supervisor.stop()
        stop_all(self.procs.values())
        self.nats.stop()
        self.postgres.stop()
