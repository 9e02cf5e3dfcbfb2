"""Wires the edge service: ICE, schema, the EDGE stream, the copy of live sessions, the endpoints and the
maintenance worker."""

from __future__ import annotations

import secrets
from pathlib import Path

from libs.bus import routes_of
from libs.media.aiortc_ext import check_hooks
from libs.media.ice import configure_ice, settings_from
from libs.media.rtp_fanout import check_fanout_hooks
from libs.runtime import Runtime
from proto import edge, ingest
from services.edge import store
from services.edge.config import EdgeConfig
from services.edge.events import SessionEvents
from services.edge.handlers import Handlers

__all__ = ["EdgeConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: EdgeConfig) -> None:
    """Run the edge service until a stop signal."""
    check_hooks()
    check_fanout_hooks()
    ice = settings_from(config)
    configure_ice(ice)
    process_id = secrets.token_hex(6)
    async with Runtime("edge", config, schema="edge", migrations=MIGRATIONS, streams=[edge.STREAM]) as rt:
        handlers = Handlers(pool=rt.pool, nc=rt.bus, config=config, ice=ice, process_id=process_id)
        try:
            events = SessionEvents(close_local=handlers.close_session)
            await rt.keep_copy(ingest.LIVE_SESSION, on_change=events.on_change)
            async with rt.pool.acquire() as conn:
                await store.index_copies(conn)
            await rt.serve([*routes_of(handlers), *handlers.process_routes()])
            rt.worker("edge-maintain", handlers.maintain, every=config.maintain_seconds)
            await rt.wait()
        finally:
            await handlers.close()
