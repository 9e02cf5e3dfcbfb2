"""libs.db against a real PostgreSQL: migrations and the transactional outbox."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest
from nats.aio.client import Client

from libs.bus import Event, StreamSpec, connect, ensure_streams
from libs.db import MigrationError, OutboxRelay, add_event, apply_migrations, create_pool
from libs.worker import Worker


class Noted(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "dbtest.note.added"
    text: str


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


async def test_migrations_apply_once_in_order(database_url: str, tmp_path: Path) -> None:
    schema = f"m_{secrets.token_hex(4)}"
    folder = _write(
        tmp_path / "m",
        {
            "001_things.sql": "CREATE TABLE things (id int PRIMARY KEY);",
            "002_more.sql": "ALTER TABLE things ADD COLUMN name text;",
        },
    )
    conn = await asyncpg.connect(database_url)
    try:
        assert await apply_migrations(conn, schema, folder) == [1, 2]
        assert await apply_migrations(conn, schema, folder) == []
        cols = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'things'",
            schema,
        )
        assert {c["column_name"] for c in cols} == {"id", "name"}
    finally:
        await conn.close()


async def test_two_replicas_migrating_at_once_apply_each_file_once(database_url: str, tmp_path: Path) -> None:
    schema = f"m_{secrets.token_hex(4)}"
    # pg_sleep makes the race window wide: without the advisory lock both would run 001.
    folder = _write(tmp_path / "m", {"001_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE once (id int);"})
    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        results = await asyncio.gather(
            apply_migrations(a, schema, folder), apply_migrations(b, schema, folder)
        )
        assert sorted(results) == [[], [1]]
    finally:
        await a.close()
        await b.close()


async def test_an_applied_migration_edited_later_is_refused(database_url: str, tmp_path: Path) -> None:
    schema = f"m_{secrets.token_hex(4)}"
    folder = _write(tmp_path / "m", {"001_a.sql": "CREATE TABLE a (id int);"})
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, schema, folder)
        (folder / "001_a.sql").write_text("CREATE TABLE a (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, schema, folder)
    finally:
        await conn.close()


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    from libs.db import load_migrations

    folder = _write(tmp_path / "m", {"first.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"first\.sql"):
        load_migrations(folder)


async def _outbox_setup(nats_url: str, database_url: str, tmp_path: Path) -> tuple[Client, Any, str, str]:
    schema = f"o_{secrets.token_hex(4)}"
    folder = _write(
        tmp_path / "m", {"001_notes.sql": "CREATE TABLE notes (id serial PRIMARY KEY, text text);"}
    )
    conn = await asyncpg.connect(database_url)
    await apply_migrations(conn, schema, folder)
    await conn.close()
    nc = await connect(nats_url, name="test-outbox")
    js = nc.jetstream()
    stream = f"DBTEST_{secrets.token_hex(3).upper()}"
    for info in await js.streams_info():
        if Noted.subject in (info.config.subjects or []):
            await js.delete_stream(info.config.name)
    await ensure_streams(js, [StreamSpec(name=stream, subjects=(Noted.subject,))])
    pool = await create_pool(database_url, schema=schema, max_size=4)
    return nc, pool, schema, stream


async def test_outbox_publishes_committed_events_once_and_rolled_back_ones_never(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    nc, pool, _schema, stream = await _outbox_setup(nats_url, database_url, tmp_path)
    js = nc.jetstream()
    relay = OutboxRelay(pool, js, _schema)
    worker = Worker("outbox-relay", relay.step, every=5.0)
    relay.on_notify = worker.wake
    task = asyncio.create_task(worker.run())
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO notes (text) VALUES ('kept')")
            await add_event(conn, Noted(text="kept"))
        with pytest.raises(RuntimeError):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO notes (text) VALUES ('lost')")
                await add_event(conn, Noted(text="lost"))
                raise RuntimeError("roll back")
        # NOTIFY wakes the relay on commit: well before its 5 s poll.
        for _ in range(40):
            if (await js.stream_info(stream)).state.messages:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        info = await js.stream_info(stream)
        assert info.state.messages == 1
        msg = await js.get_last_msg(stream, Noted.subject)
        assert b'"kept"' in msg.data
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        task.cancel()
        await relay.close()
        await pool.close()
        await nc.drain()


async def test_outbox_row_published_but_not_deleted_is_deduplicated(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    nc, pool, schema, stream = await _outbox_setup(nats_url, database_url, tmp_path)
    js = nc.jetstream()
    try:
        event = Noted(text="twice?")
        async with pool.acquire() as conn:
            await add_event(conn, event)
        relay = OutboxRelay(pool, js, schema)
        assert await relay.relay_once() == 1
        # As if the process died after the PubAck but before deleting the row: the row comes back.
        async with pool.acquire() as conn:
            await add_event(conn, event)
        assert await relay.relay_once() == 1
        assert (await js.stream_info(stream)).state.messages == 1
    finally:
        await pool.close()
        await nc.drain()
