"""A schema upgraded from an older release: migrated to version `upto`, filled the way that release
wrote its tables, then migrated to today (the tests of each service's copies migration use it)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from libs.db import Connection, Pool, apply_migrations, create_pool


@dataclass(frozen=True, slots=True)
class Upgrade:
    pool: Pool
    conn: Connection
    schema: str
    applied: list[int]  # the versions the upgrade applied
    tables: set[str]  # the schema's tables after it


@asynccontextmanager
async def upgraded(
    database_url: str, migrations: Path, scratch: Path, *, upto: int, old_rows: str
) -> AsyncIterator[Upgrade]:
    """A fresh schema at `migrations` version `upto` holding `old_rows`, upgraded to the newest version;
    dropped afterwards."""
    schema = f"s_{secrets.token_hex(4)}"
    old = scratch / "old"
    old.mkdir()
    for path in sorted(migrations.glob("*.sql")):
        if int(path.name.split("_", 1)[0]) <= upto:
            shutil.copy(path, old / path.name)
    pool = await create_pool(database_url, schema=schema, max_size=2)
    try:
        async with pool.acquire() as conn:
            assert await apply_migrations(conn, schema, old) == list(range(1, upto + 1))
            await conn.execute(old_rows)
            applied = await apply_migrations(conn, schema, migrations)
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
            yield Upgrade(pool, conn, schema, applied, {r["tablename"] for r in rows})
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()
