"""Ordered SQL migrations per service schema: recorded, applied once, safe when replicas start together."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libs.db.outbox import OUTBOX_DDL
from libs.obs.logging import get_logger

__all__ = ["Migration", "MigrationError", "apply_migrations", "load_migrations"]

log = get_logger("db")

_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")


class MigrationError(Exception):
    """A migration folder or the recorded history is inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One `NNN_what.sql` file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text, to notice an applied migration edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """Read and order the migration files of one service."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f'Invalid migration file name "{path.name}" (want NNN_what.sql)')
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"Two migrations with version {version} in {directory}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def apply_migrations(conn: Any, schema: str, directory: Path) -> list[int]:
    """Apply the pending migrations of `directory` into `schema`; returns the versions applied now."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f'Invalid schema name "{schema}"')
    migrations = load_migrations(directory)
    lock_key = int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True)
    applied_now: list[int] = []
    # A session-level advisory lock: a second replica starting at the same moment waits here,
    # then finds everything applied.
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        await conn.execute(OUTBOX_DDL.format(schema=schema))
        # The schema name is checked against _SCHEMA above; identifiers cannot be bound as parameters.
        rows = await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")  # noqa: S608
        done = {r["version"]: r["checksum"] for r in rows}
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"Migration {schema}/{m.version}_{m.name} changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(m.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (version, name, checksum)"  # noqa: S608
                    " VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(m.version)
            log.info("migration_applied", schema=schema, version=m.version, name=m.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now
