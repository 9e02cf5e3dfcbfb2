"""What fsync on every JetStream write costs: events/s and write-to-arrival latency through the real path
(an outbox row committed in PostgreSQL, relayed by libs/db/outbox.py's OutboxRelay in a libs.worker
Worker, published to JetStream, received by a durable consumer of libs/bus/consume.py), on a nats-server
with `sync_interval: always` and on one with the default (sync every 2 minutes), in the same run against
the same PostgreSQL.

Each server gets a warm-up, then `--events` follow events written by `--writers` concurrent transactions
as fast as they go (events/s: the most the path carries), then `--paced` events at `--rate` per second
(latency under a load both servers carry), then `--single` events one at a time, each waiting for its
arrival (latency of a lone event).

Servers of both kinds take turns (`--rounds` each), and the figures are printed side by side.

    PYTHONPATH=. .venv/bin/python bench/durability.py [--events 6000] [--rate 400] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from libs.bus import ConsumerSpec, connect, consume, ensure_streams, new_id, utcnow
from libs.db.outbox import OUTBOX_DDL, OutboxRelay, add_event
from libs.db.pool import Pool, create_pool
from libs.devstack.nats_server import NatsServer
from libs.devstack.postgres import EmbeddedPostgres, create_database
from libs.obs.logging import configure_logging
from libs.worker import Worker
from proto import social
from proto.social import Followed

SCHEMA = "bench"
WARMUP = 300


@dataclass(frozen=True, slots=True)
class Load:
    """How many events each server gets, and how."""

    events: int
    writers: int
    paced: int
    rate: float
    single: int
    rounds: int


class _Arrivals:
    """When each event reached the consumer, and a way to wait until given events have."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._pending: set[str] = set()
        self._all_in = asyncio.Event()
        # The consumer and the relay: one that ends (it raised) fails the wait at once.
        self.helpers: list[asyncio.Task[None]] = []

    async def record(self, event: Followed) -> None:
        """The consumer's handler: note the arrival (a redelivered event keeps its first time)."""
        self.at.setdefault(event.event_id, time.perf_counter())
        self._pending.discard(event.event_id)
        if not self._pending:
            self._all_in.set()

    async def wait_for(self, event_ids: Iterable[str], timeout: float = 30.0) -> None:
        """Return once every one of `event_ids` has arrived."""
        self._pending = set(event_ids) - self.at.keys()
        self._all_in.clear()
        if not self._pending:
            return
        all_in = asyncio.create_task(self._all_in.wait())
        done, _ = await asyncio.wait([all_in, *self.helpers], timeout=timeout, return_when="FIRST_COMPLETED")
        all_in.cancel()
        for task in done - {all_in}:
            raise RuntimeError(f"the {task.get_name()} stopped: {task.exception()!r}")
        if all_in not in done:
            raise TimeoutError(f"{len(self._pending)} events did not arrive within {timeout:g} s")


async def _write(pool: Pool, written: dict[str, float]) -> str:
    """One follow and its event in one transaction, as the social service writes them; its event id."""
    event = Followed(
        user_id=new_id(),
        username="bench_fan",
        channel_id="bench-channel",
        channel_name="bench_channel",
        followed_at=utcnow(),
    )
    written[event.event_id] = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await add_event(conn, event)
    return event.event_id


async def _burst(pool: Pool, arrivals: _Arrivals, events: int, writers: int) -> float:
    """`events` written by `writers` at once, as fast as they go: events/s from the first write to the
    last arrival."""
    written: dict[str, float] = {}

    async def writer(count: int) -> None:
        for _ in range(count):
            await _write(pool, written)

    started = time.perf_counter()
    share, extra = divmod(events, writers)
    await asyncio.gather(*(writer(share + (i < extra)) for i in range(writers)))
    await arrivals.wait_for(written)
    return events / (max(arrivals.at[e] for e in written) - started)


async def _paced(pool: Pool, arrivals: _Arrivals, events: int, rate: float) -> list[float]:
    """Write-to-arrival seconds of `events` written at `rate` per second, each write started on time
    whether or not the earlier ones have arrived (an open load, as users make it)."""
    written: dict[str, float] = {}
    writes: list[asyncio.Task[str]] = []
    started = time.perf_counter()
    for i in range(events):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        writes.append(asyncio.create_task(_write(pool, written)))
    await asyncio.gather(*writes)
    await arrivals.wait_for(written)
    return [arrivals.at[e] - t for e, t in written.items()]


async def _one_at_a_time(pool: Pool, arrivals: _Arrivals, events: int) -> list[float]:
    """Write-to-arrival seconds of events written alone, each after the previous one arrived."""
    written: dict[str, float] = {}
    for _ in range(events):
        await arrivals.wait_for([await _write(pool, written)])
    return [arrivals.at[e] - t for e, t in written.items()]


async def _drain_outbox(pool: Pool, timeout: float = 60.0) -> None:
    """Wait until the relay has deleted every row, so that no row of this round (one published but not
    yet deleted when the relay stops) is carried over to the next server."""
    deadline = time.monotonic() + timeout
    while left := await pool.fetchval("SELECT count(*) FROM outbox"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the relay left {left} outbox rows unsent for {timeout:g} s")
        await asyncio.sleep(0.05)


@dataclass(slots=True)
class _Samples:
    """What the rounds on one kind of server measured."""

    rates: list[float] = field(default_factory=list)
    paced: list[float] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)

    def figures(self, rate: float) -> dict[str, float]:
        """Mean events/s over the rounds, latency percentiles over all their events, in ms."""
        return {
            "events/s, as fast as they go": statistics.fmean(self.rates),
            f"p50 ms at {rate:g}/s": _percentile(self.paced, 50) * 1000,
            f"p99 ms at {rate:g}/s": _percentile(self.paced, 99) * 1000,
            "p50 ms, one at a time": _percentile(self.alone, 50) * 1000,
            "p99 ms, one at a time": _percentile(self.alone, 99) * 1000,
        }


def _percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


async def _measure(nats: NatsServer, pool: Pool, load: Load, samples: _Samples) -> None:
    """One round on one nats-server: a fresh stream, consumer and relay on it, the same database."""
    nc = await connect(nats.url, name="bench-durability")
    js = nc.jetstream()
    await ensure_streams(js, [social.STREAM])
    arrivals = _Arrivals()
    spec = ConsumerSpec(stream=social.STREAM.name, durable="bench-arrivals", events=(Followed,))
    relay = OutboxRelay(pool, js, SCHEMA)
    worker = Worker("outbox-relay", relay.step, every=1.0)
    relay.on_notify = worker.wake
    tasks = [
        asyncio.create_task(consume(js, spec, arrivals.record), name="consumer"),
        asyncio.create_task(worker.run(), name="outbox relay"),
    ]
    arrivals.helpers = tasks
    try:
        await _burst(pool, arrivals, WARMUP, load.writers)
        samples.rates.append(await _burst(pool, arrivals, load.events, load.writers))
        samples.paced += await _paced(pool, arrivals, load.paced, load.rate)
        samples.alone += await _one_at_a_time(pool, arrivals, load.single)
        await _drain_outbox(pool)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.close()
        await nc.close()


async def _rounds(folder: Path, pool: Pool, load: Load) -> dict[str, _Samples]:
    """`load.rounds` rounds on each kind of server, in the order default, always, always, default, ...
    so that a machine growing busier or quieter during the run weighs on both alike."""
    samples = {"default": _Samples(), "always": _Samples()}
    for n in range(load.rounds):
        for kind in ("default", "always") if n % 2 == 0 else ("always", "default"):
            nats = NatsServer(folder / f"nats-{kind}-{n}", sync_always=kind == "always").start()
            try:
                await _measure(nats, pool, load, samples[kind])
            finally:
                nats.stop()
    return samples


def _fsync_ms(folder: Path, times: int = 200) -> float:
    """Median ms of appending 1 KiB to a file in `folder` and fsyncing it: what this disk charges for
    each sync, the floor under the difference between the two servers."""
    path = folder / "fsync-probe"
    spent = []
    with path.open("ab") as f:
        for _ in range(times):
            started = time.perf_counter()
            f.write(b"x" * 1024)
            f.flush()
            os.fsync(f.fileno())
            spent.append(time.perf_counter() - started)
    path.unlink()
    return statistics.median(spent) * 1000


async def main(load: Load) -> None:
    # Warnings only: a line per handled event would measure the terminal, the same in both runs.
    configure_logging("bench-durability", level="warning")
    folder = Path(tempfile.mkdtemp(prefix="cpc-bench-durability-"))
    postgres = EmbeddedPostgres(folder / "postgres", keep=False).start()
    try:
        await create_database(postgres.url(), "bench")
        pool = await create_pool(postgres.url("bench"), schema=SCHEMA, max_size=load.writers + 8)
        try:
            async with pool.acquire() as conn:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                await conn.execute(OUTBOX_DDL.format(schema=SCHEMA))
            started = time.perf_counter()
            samples = await _rounds(folder, pool, load)
            elapsed = time.perf_counter() - started
        finally:
            await pool.close()
    finally:
        postgres.stop()
    _print({kind: s.figures(load.rate) for kind, s in samples.items()}, load, elapsed)
    print(f"{'fsync of a 1 KiB append, ms':30} {_fsync_ms(folder):>10.2f}   (median, this disk)")


def _print(figures: dict[str, dict[str, float]], load: Load, elapsed: float) -> None:
    print(
        f"per server and round: {load.events:,} events by {load.writers} writers as fast as they go,"
        f" {load.paced:,} at {load.rate:g}/s, {load.single:,} one at a time; {load.rounds} rounds each"
        f" ({elapsed:.0f} s)"
    )
    print(f"{'sync_interval':30} {'default':>10} {'always':>10} {'always/default':>15}")
    for name, default in figures["default"].items():
        always = figures["always"][name]
        print(f"{name:30} {default:>10,.1f} {always:>10,.1f} {always / default:>14.2f}x")
    slowest = min(f["events/s, as fast as they go"] for f in figures.values())
    if load.rate > slowest:
        print(
            f"--rate {load.rate:g} is above what a server carried ({slowest:,.0f}/s): latency measured a queue"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--paced", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for name in ("events", "writers", "paced", "rate", "single", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    # Stopped from outside (a timeout): unwind, so that PostgreSQL and nats-server are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(Load(**vars(args))))
