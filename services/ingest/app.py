"""Wires the ingest service: ICE, schema, the STREAM stream, the endpoints and the maintenance worker."""

from __future__ import annotations

import secrets
from pathlib import Path

from libs.bus import routes_of
from libs.media.aiortc_ext import check_hooks
from libs.media.ice import configure_ice, settings_from
from libs.runtime import Runtime
from proto import ingest
from services.ingest.config import IngestConfig
from services.ingest.handlers import Handlers

__all__ = ["IngestConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: IngestConfig) -> None:
    """Run the ingest service until a stop signal."""
    check_hooks()
    ice = settings_from(config)
    configure_ice(ice)
    process_id = secrets.token_hex(6)
    async with Runtime(
        "ingest", config, schema="ingest", migrations=MIGRATIONS, streams=[ingest.STREAM]
    ) as rt:
        handlers = Handlers(pool=rt.pool, nc=rt.bus, config=config, ice=ice, process_id=process_id)
        try:
            await rt.serve([*routes_of(handlers), *handlers.process_routes()])
            rt.worker("ingest-maintain", handlers.maintain, every=config.maintain_seconds)
            await rt.wait()
        finally:
            await handlers.close()
