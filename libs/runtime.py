"""Wires a service process: config, logs, traces, metrics, NATS, its schema, outbox relay, endpoints,
consumers, and a clean shutdown on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs import faults
from libs.bus.connection import StreamSpec, connect, ensure_streams
from libs.bus.consume import ConsumerSpec, EventHandler, consume
from libs.bus.rpc import Route, serve
from libs.config import ConfigError, load_config
from libs.db.migrate import apply_migrations
from libs.db.outbox import OutboxRelay
from libs.db.pool import create_pool
from libs.obs.logging import configure_logging, get_logger
from libs.obs.metrics import heartbeat, set_readiness, start_metrics_server
from libs.obs.tracing import configure_tracing

__all__ = ["Runtime", "ServiceConfig", "run_service"]

log = get_logger("runtime")


class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings every service reads (CPC_NATS_URL, CPC_DATABASE_URL, ...); services subclass it."""

    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    log_level: str = "info"
    log_json: bool | None = None
    jetstream_replicas: int = msgspec.field(default=1)
    db_pool_size: int = 10
    faults: str = ""


class Runtime:
    """One service process; `async with Runtime(...)` starts it, `wait()` blocks until a stop signal."""

    def __init__(
        self,
        name: str,
        config: ServiceConfig,
        *,
        version: str = "0.1.0",
        description: str = "",
        schema: str | None = None,
        migrations: Path | None = None,
        streams: Sequence[StreamSpec] = (),
    ) -> None:
        self.name = name
        self.config = config
        self.version = version
        self.description = description or f"CPC Live {name} service"
        self.schema = schema
        self.migrations = migrations
        self.streams = streams
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.pool: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._services: list[Any] = []
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Runtime:
        configure_logging(self.name, level=self.config.log_level, json=self.config.log_json)
        configure_tracing(self.name)
        faults.arm(self.config.faults)
        start_metrics_server(self.config.metrics_port, self.config.metrics_host)
        self.nc = await connect(self.config.nats_url, name=self.name)
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, self.streams, replicas=self.config.jetstream_replicas)
        if self.schema is not None:
            self.pool = await create_pool(
                self.config.database_url, schema=self.schema, max_size=self.config.db_pool_size
            )
            if self.migrations is not None:
                async with self.pool.acquire() as conn:
                    await apply_migrations(conn, self.schema, self.migrations)
            relay = OutboxRelay(self.pool, self.js, self.schema)
            self.spawn(relay.run(), name="outbox-relay")
        self.spawn(_beat_forever(), name="heartbeat")
        set_readiness(self._answering)
        log.info("service_started", version=self.version)
        return self

    def _answering(self) -> bool:
        """Ready while connected to NATS and not stopping (read by `/readyz` from the metrics thread)."""
        return self.nc is not None and self.nc.is_connected and not self._stop.is_set()

    async def __aexit__(self, *exc: object) -> None:
        for svc in self._services:
            with contextlib.suppress(Exception):
                await svc.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        if self.pool is not None:
            await self.pool.close()
        log.info("service_stopped")

    @property
    def bus(self) -> Client:
        """The NATS connection (after start)."""
        assert self.nc is not None, "runtime not started"
        return self.nc

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context (after start)."""
        assert self.js is not None, "runtime not started"
        return self.js

    def spawn(self, coro: Awaitable[None], *, name: str) -> None:
        """Run a background task for the life of the process; its crash is logged and stops the process."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task_crashed", task=name)
                self._stop.set()

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def serve(self, routes: Sequence[Route[Any, Any]]) -> None:
        """Answer `routes` as this process's NATS service endpoints."""
        svc = await serve(
            self.bus, name=self.name, version=self.version, description=self.description, routes=routes
        )
        self._services.append(svc)

    def consume(self, spec: ConsumerSpec, handler: EventHandler) -> None:
        """Handle the events of a durable consumer in the background."""
        self.spawn(consume(self.jetstream, spec, handler), name=f"consume-{spec.durable}")

    async def wait(self) -> None:
        """Block until SIGTERM or SIGINT (or a crashed background task)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()


async def _beat_forever() -> None:
    """Tell the metrics thread's `/healthz` that the event loop still runs."""
    while True:
        heartbeat()
        await asyncio.sleep(1.0)


C = TypeVar("C", bound=ServiceConfig)


def run_service(name: str, config_cls: type[C], entry: Callable[[C], Coroutine[Any, Any, None]]) -> int:
    """Read the config (a bad value exits 2 naming its variable), then run `entry` until stopped.
    Each `services/<name>/__main__.py` is `sys.exit(run_service(...))`."""
    try:
        config = load_config(config_cls)
    except ConfigError as exc:
        sys.stderr.write(f"{name}: bad setting {exc}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(entry(config))
    return 0
