"""Wires the ingest service: config, ICE, schema, the STREAM stream, endpoints and the session sweeper."""

from __future__ import annotations

import secrets
from pathlib import Path

from libs.media.aiortc_ext import check_hooks
from libs.media.ice import MediaServiceConfig, configure_ice, settings_from
from libs.runtime import Runtime
from proto import ingest
from services.ingest.handlers import IngestHandlers

__all__ = ["IngestConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


class IngestConfig(MediaServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the ingest service."""

    grace_seconds: float = 10.0
    # A process that has not refreshed its sessions for this long is taken for gone.
    stale_seconds: float = 6.0
    media_timeout_seconds: float = 5.0
    connect_timeout_seconds: float = 15.0


async def run(config: IngestConfig) -> None:
    """Run the ingest service until a stop signal."""
    check_hooks()
    ice = settings_from(config)
    configure_ice(ice)
    process_id = secrets.token_hex(6)
    async with Runtime(
        "ingest", config, schema="ingest", migrations=MIGRATIONS, streams=[ingest.STREAM]
    ) as rt:
        handlers = IngestHandlers(rt.pool, rt.bus, config, ice, process_id)
        try:
            await rt.serve(handlers.routes())
            rt.spawn(handlers.maintain(), name="ingest-maintain")
            await rt.wait()
        finally:
            await handlers.close()
