"""Wires the edge service: config, ICE, schema, the EDGE stream, endpoints, the session consumer."""

from __future__ import annotations

import secrets
from pathlib import Path

from libs.bus import ConsumerSpec
from libs.media.aiortc_ext import check_hooks
from libs.media.ice import MediaServiceConfig, configure_ice, settings_from
from libs.media.rtp_fanout import check_fanout_hooks
from libs.runtime import Runtime
from proto import edge, ingest
from services.edge.handlers import EdgeHandlers

__all__ = ["EdgeConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


class EdgeConfig(MediaServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the edge service."""

    # Bytes that may wait in one viewer's UDP socket buffer before it skips to the next keyframe
    # (~1 s of a 2.5 Mbit/s stream).
    viewer_backlog_bytes: int = 320_000


async def run(config: EdgeConfig) -> None:
    """Run the edge service until a stop signal."""
    check_hooks()
    check_fanout_hooks()
    ice = settings_from(config)
    configure_ice(ice)
    process_id = secrets.token_hex(6)
    async with Runtime(
        "edge", config, schema="edge", migrations=MIGRATIONS, streams=[edge.STREAM, ingest.STREAM]
    ) as rt:
        handlers = EdgeHandlers(rt.pool, rt.bus, config, ice, process_id)
        try:
            await rt.serve(handlers.routes())
            rt.consume(
                ConsumerSpec(
                    stream=ingest.STREAM.name,
                    durable="edge-live",
                    events=(ingest.SessionStarted, ingest.SessionEnded),
                ),
                handlers.on_session,
            )
            rt.spawn(handlers.maintain(), name="edge-maintain")
            await rt.wait()
        finally:
            await handlers.close()
