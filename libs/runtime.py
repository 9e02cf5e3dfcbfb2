"""Wires a service process: config, logs, traces, metrics, NATS, its schema, outbox relay, endpoints,
consumers, copies of other services' entities, background workers, and a clean shutdown on SIGTERM or
SIGINT. A service's app declares these five mechanisms here and writes none of them itself."""

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
from libs.bus.connection import connect, ensure_streams
from libs.bus.consume import ConsumerSpec, EventHandler, consume
from libs.bus.rpc import Route, serve
from libs.config import ConfigError, load_config
from libs.db.migrate import apply_migrations
from libs.db.outbox import OutboxRelay
from libs.db.pool import Connection, Pool, create_pool
from libs.obs.logging import configure_logging, get_logger
from libs.obs.metrics import heartbeat, set_readiness, start_metrics_server
from libs.obs.tracing import configure_tracing
from libs.replica import Replica, Versions
from libs.worker import Step, Worker
from proto.base import Entity, Event, StreamSpec

__all__ = ["Runtime", "ServiceConfig", "run_service"]

log = get_logger("runtime")
# How long stopping waits for each of: background tasks, the NATS drain, the pool's connections.
STOP_SECONDS = 10.0
# How long the PostgreSQL probe behind /readyz waits for `SELECT 1`.
PROBE_SECONDS = 2.0

E = TypeVar("E", bound=msgspec.Struct)


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
        self._pool: Pool | None = None
        self.workers: dict[str, Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._services: list[Any] = []
        self._stop = asyncio.Event()
        self._relay: OutboxRelay | None = None
        self._postgres_ok = True

    async def __aenter__(self) -> Runtime:
        configure_logging(self.name, level=self.config.log_level, json=self.config.log_json)
        configure_tracing(self.name)
        faults.arm(self.config.faults)
        start_metrics_server(self.config.metrics_port, self.config.metrics_host)
        self.nc = await connect(self.config.nats_url, name=self.name)
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, self.streams, replicas=self.config.jetstream_replicas)
        if self.schema is not None:
            self._pool = await create_pool(
                self.config.database_url, schema=self.schema, max_size=self.config.db_pool_size
            )
            if self.migrations is not None:
                async with self._pool.acquire() as conn:
                    await apply_migrations(conn, self.schema, self.migrations)
            self._relay = OutboxRelay(self._pool, self.js, self.schema)
            self._relay.on_notify = self.worker("outbox-relay", self._relay.step, every=1.0).wake
            self.worker("postgres-probe", self._probe_postgres, every=1.0)
        self.worker("heartbeat", _beat, every=1.0)
        set_readiness(self._answering)
        log.info("service_started", version=self.version)
        return self

    def _answering(self) -> bool:
        """Ready while connected to NATS and not stopping (read by `/readyz` from the metrics thread)."""
        return self.nc is not None and self.nc.is_connected and not self._stop.is_set()

    async def _probe_postgres(self) -> None:
        """Note whether PostgreSQL answers, for /readyz (through `$SRV.STATS`): a service that keeps
        serving what it can while its database is away must still say that it is."""
        try:
            async with asyncio.timeout(PROBE_SECONDS), self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            if self._postgres_ok:
                log.warning("postgres_unreachable", error=f"{type(exc).__name__}: {exc}")
            self._postgres_ok = False
            return
        if not self._postgres_ok:
            log.info("postgres_reachable")
        self._postgres_ok = True

    def health(self) -> dict[str, bool]:
        """The dependencies this process needs, and whether each answers now."""
        return {"postgres": self._postgres_ok} if self.schema is not None else {}

    async def __aexit__(self, *exc: object) -> None:
        for svc in self._services:
            with contextlib.suppress(Exception):
                await svc.stop()
        for task in self._tasks:
            task.cancel()
        _, stuck = await asyncio.wait(self._tasks, timeout=STOP_SECONDS) if self._tasks else (set(), set())
        if stuck:
            log.warning("tasks_not_stopped", tasks=sorted(t.get_name() for t in stuck))
        if self._relay is not None:
            await self._relay.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), STOP_SECONDS)
        if self._pool is not None:
            # close() waits for every connection to come back; one held by a stuck query would keep the
            # process from ever ending, so after the deadline the rest are closed under it.
            try:
                await asyncio.wait_for(self._pool.close(), STOP_SECONDS)
            except TimeoutError:
                log.warning("pool_not_closed_in_time", seconds=STOP_SECONDS)
                self._pool.terminate()
        log.info("service_stopped")

    @property
    def bus(self) -> Client:
        """The NATS connection (after start)."""
        assert self.nc is not None, "runtime not started"
        return self.nc

    @property
    def pool(self) -> Pool:
        """The pool of the service's own schema (after start; only for services with a schema)."""
        assert self._pool is not None, "runtime not started, or the service has no schema"
        return self._pool

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
            self.bus,
            name=self.name,
            version=self.version,
            description=self.description,
            routes=routes,
            health=self.health,
        )
        self._services.append(svc)

    def consume(self, spec: ConsumerSpec, handler: EventHandler) -> None:
        """Handle the events of a durable consumer in the background."""
        self.spawn(consume(self.jetstream, spec, handler), name=f"consume-{spec.durable}")

    def worker(self, name: str, step: Step, *, every: float, first_after: float = 0.0) -> Worker:
        """Run `step` in the background when woken (`.wake()`), every `every` seconds, and again at once
        while it reports more work; its errors are logged, counted and retried, never fatal."""
        if name in self.workers:
            raise ValueError(f'worker "{name}" is declared twice')
        worker = self.workers[name] = Worker(name, step, every=every, first_after=first_after)
        self.spawn(worker.run(), name=f"worker-{name}")
        return worker

    async def keep_copy(
        self,
        entity: Entity[E],
        *,
        on_change: Callable[[Connection, E, Event], Awaitable[None]] | None = None,
        after_change: Callable[[E, Event], None] | None = None,
        durable: str | None = None,
    ) -> Replica[E]:
        """Keep a copy of another service's `entity` in this service's schema, fed by the owner's events.
        `on_change(conn, entity, event)` runs in the same transaction whenever an event changed the copy
        (never for a stale or repeated one); `after_change(entity, event)` runs once that transaction
        committed (e.g. to wake a worker for the work on_change queued: woken earlier, it may look before
        the commit and find nothing)."""
        replica = Replica(entity, self.bus)
        async with self.pool.acquire() as conn:
            await replica.install(conn)
        await ensure_streams(self.jetstream, [entity.stream], replicas=self.config.jetstream_replicas)

        async def apply(event: Event) -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                changed = await replica.apply(conn, event)
                if changed is not None and on_change is not None:
                    await on_change(conn, changed, event)
            if changed is not None and after_change is not None:
                after_change(changed, event)

        durable = durable or f"{self.name}-copy-{entity.name}"
        spec = ConsumerSpec(stream=entity.stream.name, durable=durable, events=entity.events)
        self.consume(spec, apply)
        return replica

    async def keep_versions(self) -> Versions:
        """The newest version applied of each aggregate this service projects from others' events (roles,
        follows, emotes, subscriptions): handlers call `admit(conn, event)` in their transaction and apply
        only a "new" event, so a late, older one never undoes a newer one."""
        versions = Versions()
        async with self.pool.acquire() as conn:
            await versions.install(conn)
        return versions

    async def wait(self) -> None:
        """Block until SIGTERM or SIGINT (or a crashed background task)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()


async def _beat() -> None:
    """Tell the metrics thread's `/healthz` that the event loop still runs."""
    heartbeat()


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
