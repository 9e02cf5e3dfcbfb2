"""asyncpg pools bound to one service's schema."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

__all__ = ["create_pool"]


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, schema: str, min_size: int = 1, max_size: int = 10) -> Any:
    """A pool whose connections see `schema` first on their search path (and nothing of other services)."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": f"cpc-{schema}"},
    )
