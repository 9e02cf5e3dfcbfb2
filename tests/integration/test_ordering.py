"""Ordering against real NATS JetStream and PostgreSQL: one outbox relay per schema at a time, sending in
order, with another taking over when the leader's connection dies; and projections that carry each
aggregate's version and ignore an older event delivered after a newer one."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest
from nats.js import JetStreamContext

from libs.bus import Event, StreamSpec, connect, decode, ensure_streams
from libs.db import OutboxRelay, add_event, apply_migrations, create_pool
from libs.db.outbox import relay_lock_key
from libs.worker import Worker

# --- (a) one relay at a time, in order -------------------------------------------------------------------


class Numbered(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "ordertest.row.added"
    n: int


class Relay(OutboxRelay):
    """The real relay, counting what it sent and how many batches of all relays were in flight at once."""

    in_flight = 0
    most_in_flight = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = 0

    async def relay_once(self) -> int:
        Relay.in_flight += 1
        Relay.most_in_flight = max(Relay.most_in_flight, Relay.in_flight)
        try:
            n = await super().relay_once()
        finally:
            Relay.in_flight -= 1
        self.sent += n
        return n


async def _until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Retry an async check until it returns something truthy (or the time is up: then its last result)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def _lock_holder(conn: asyncpg.Connection, schema: str) -> int | None:
    """The backend pid holding the schema's relay lock (a bigint advisory key: classid high, objid low)."""
    key = relay_lock_key(schema)
    pid: int | None = await conn.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        key >> 32,
        key & 0xFFFFFFFF,
    )
    return pid


async def _stream_numbers(js: JetStreamContext, count: int) -> list[int]:
    """The `n` of the first `count` events on the test subject, in stream order."""
    sub = await js.subscribe(Numbered.subject, ordered_consumer=True)
    try:
        return [decode((await sub.next_msg(timeout=5.0)).data, Numbered).n for _ in range(count)]
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def outbox(
    nats_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Any, Any, Any, str]]:
    """A fresh schema with an outbox, two pools on it (two replicas), NATS and a stream for Numbered."""
    schema = f"ord_{secrets.token_hex(4)}"
    (tmp_path / "m").mkdir()
    conn = await asyncpg.connect(database_url)
    await apply_migrations(conn, schema, tmp_path / "m")
    await conn.close()
    nc = await connect(nats_url, name="test-ordering")
    js = nc.jetstream()
    for info in await js.streams_info():
        if Numbered.subject in (info.config.subjects or []):
            await js.delete_stream(info.config.name)
    await ensure_streams(
        js, [StreamSpec(name=f"ORDTEST_{secrets.token_hex(3).upper()}", subjects=(Numbered.subject,))]
    )
    pool_a = await create_pool(database_url, schema=schema, max_size=3)
    pool_b = await create_pool(database_url, schema=schema, max_size=3)
    try:
        yield nc, pool_a, pool_b, schema
    finally:
        await pool_a.close()
        await pool_b.close()
        await nc.drain()


async def _add(pool: Any, numbers: range) -> None:
    for n in numbers:
        async with pool.acquire() as conn, conn.transaction():
            await add_event(conn, Numbered(n=n))


async def _pending(pool: Any) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox")
    return count


async def test_only_the_lock_holder_relays_in_order_and_another_takes_over_when_its_connection_dies(
    outbox: tuple[Any, Any, Any, str], database_url: str
) -> None:
    nc, pool_a, pool_b, schema = outbox
    js = nc.jetstream()
    Relay.in_flight = Relay.most_in_flight = 0
    a, b = Relay(pool_a, js, schema, batch=7), Relay(pool_b, js, schema, batch=7)
    await _add(pool_a, range(0, 5))
    assert await a.step() is True  # it took the lead and sent a batch
    assert a.leading
    assert a.sent == 5
    assert await b.step() is False
    assert not b.leading
    await _add(pool_b, range(5, 10))
    assert await b.step() is False  # a follower never sends, however many rows wait
    assert await _pending(pool_a) == 5

    # Both running as in the services (a worker each, woken by NOTIFY, polling every second) while rows
    # keep coming from both replicas: the leader sends them all, one batch at a time.
    workers = [Worker("relay-a", a.step, every=1.0), Worker("relay-b", b.step, every=1.0)]
    a.on_notify, b.on_notify = workers[0].wake, workers[1].wake
    tasks = [asyncio.create_task(w.run()) for w in workers]
    admin = await asyncpg.connect(database_url)
    try:
        for start in range(10, 60, 10):
            await _add(pool_a if start % 20 else pool_b, range(start, start + 10))
        assert await _until(lambda: _zero(pool_a))
        assert (a.sent, b.sent) == (60, 0)
        assert Relay.most_in_flight == 1  # one batch at a time: a follower never even starts one
        assert await _lock_holder(admin, schema) is not None

        # The leader's lock connection dies (as when its PostgreSQL session is killed or its node lost).
        holder = await _lock_holder(admin, schema)
        await admin.execute("SELECT pg_terminate_backend($1)", holder)
        killed = time.monotonic()
        await _add(pool_a, range(60, 70))
        assert await _until(lambda: _zero(pool_a))
        took_over = time.monotonic() - killed
        assert b.leading

        async def a_stepped_down() -> bool:
            return not a.leading

        assert await _until(a_stepped_down, timeout=5.0)  # at its next step, finding its connection gone
        assert b.sent == 10
        assert a.sent == 60
        new_holder = await _lock_holder(admin, schema)
        assert new_holder is not None
        assert new_holder != holder
        assert await _stream_numbers(js, 70) == list(range(70))
        stream = await js.find_stream_name_by_subject(Numbered.subject)
        assert (await js.stream_info(stream)).state.messages == 70  # none twice
        print(f"relay take-over after the leader's connection died: {took_over:.2f} s")
        assert took_over < 8.0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a.close()
        await b.close()
        await admin.close()


async def _zero(pool: Any) -> bool:
    return await _pending(pool) == 0
