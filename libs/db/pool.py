"""asyncpg pools bound to one service's schema."""

from __future__ import annotations

import json
import logging
from typing import TypeAlias

import asyncpg
import asyncpg.exceptions as pg_errors

from libs.bus.errors import register_unavailable

__all__ = ["Connection", "Pool", "PostgresUnavailable", "create_pool"]

# What services annotate their database handles with (a pool's connection proxy acts as a Connection).
Connection: TypeAlias = asyncpg.Connection
Pool: TypeAlias = asyncpg.Pool


class PostgresUnavailable(ConnectionError):
    """PostgreSQL refused or did not answer a new connection (it is down, restarting or full)."""


# A request or event that fails with one of these waits for PostgreSQL (503, or redelivery) instead of
# failing as a bug: SQLSTATE class 08 (connection), 57P01-03 (shutting down, crashed, starting up),
# 53300 (too many connections), and a connection closed under a query.
register_unavailable(
    PostgresUnavailable,
    pg_errors.PostgresConnectionError,
    pg_errors.CannotConnectNowError,
    pg_errors.AdminShutdownError,
    pg_errors.CrashShutdownError,
    pg_errors.TooManyConnectionsError,
    pg_errors.InterfaceError,
    dependency="PostgreSQL",
)


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


async def _connect(dsn: str, **kwargs: object) -> Connection:
    """asyncpg.connect, with a refused socket said as PostgreSQL being away (a bare OSError names
    nothing, and a pool's connect is the one place that knows the server it reaches is PostgreSQL)."""
    try:
        return await asyncpg.connect(dsn, **kwargs)
    except OSError as exc:
        raise PostgresUnavailable(f"PostgreSQL is not reachable: {exc}") from exc


async def create_pool(dsn: str, *, schema: str, min_size: int = 1, max_size: int = 10) -> Pool:
    """A pool whose connections see `schema` first on their search path (and nothing of other services)."""
    logging.getLogger("asyncpg.pool").addFilter(_ONE_LINE)  # once: a logger keeps a filter only once
    return await asyncpg.create_pool(
        dsn,
        connect=_connect,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": f"cpc-{schema}"},
    )
