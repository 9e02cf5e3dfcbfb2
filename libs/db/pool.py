"""asyncpg pools bound to one service's schema."""

from __future__ import annotations

import json
import logging
from typing import TypeAlias

import asyncpg

__all__ = ["Connection", "Pool", "create_pool"]

# What services annotate their database handles with (a pool's connection proxy acts as a Connection).
Connection: TypeAlias = asyncpg.Connection
Pool: TypeAlias = asyncpg.Pool


class _OneLineReconnects(logging.Filter):
    """asyncpg logs each failed attempt to restore a pool's floor with its whole traceback: while
    PostgreSQL is away, a screenful per service every few seconds. The line stays, naming the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Fold the exception into the message (always keeps the record)."""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
        return True


_ONE_LINE = _OneLineReconnects()


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, schema: str, min_size: int = 1, max_size: int = 10) -> Pool:
    """A pool whose connections see `schema` first on their search path (and nothing of other services)."""
    logging.getLogger("asyncpg.pool").addFilter(_ONE_LINE)  # once: a logger keeps a filter only once
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": f"cpc-{schema}"},
    )
