"""Wires the transcode service: config, schema, streams, the media bucket, admission, endpoints, consumers."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError

from libs.bus import ConsumerSpec
from libs.obs.logging import get_logger
from libs.runtime import Runtime
from proto import channel as pc
from proto import ingest
from proto import transcode as pt
from services.transcode import domain, store
from services.transcode.admission import admit_forever
from services.transcode.handlers import TranscodeHandlers
from services.transcode.metrics import ENCODER
from services.transcode.pipeline import choose_encoder
from services.transcode.session import SessionRunner
from services.transcode.settings import TranscodeConfig

__all__ = ["TranscodeConfig", "ensure_bucket", "run"]

log = get_logger("transcode")

MIGRATIONS = Path(__file__).parent / "migrations"


async def ensure_bucket(js: JetStreamContext, *, replicas: int) -> Any:
    """The object store bucket for segments and manifests, created when missing."""
    try:
        return await js.object_store(pt.BUCKET)
    except BucketNotFoundError:
        pass
    config = ObjectStoreConfig(
        description="DASH segments and manifests", storage=StorageType.FILE, replicas=replicas
    )
    try:
        return await js.create_object_store(pt.BUCKET, config=config)
    except BadRequestError:  # another replica created it between our two calls
        return await js.object_store(pt.BUCKET)


async def run(config: TranscodeConfig) -> None:
    """Run the transcode service until a stop signal."""
    domain.parse_ladder(config.transcode_ladder)  # a bad ladder stops the process at start, naming the entry
    encoder = choose_encoder(config.hardware_encoder)
    ENCODER.labels(encoder).set(1)
    process_id = secrets.token_hex(6)
    streams = [pt.STREAM, pt.CHUNK_STREAM, ingest.STREAM, pc.STREAM]
    async with Runtime("transcode", config, schema="transcode", migrations=MIGRATIONS, streams=streams) as rt:
        bucket = await ensure_bucket(rt.jetstream, replicas=config.jetstream_replicas)
        handlers = TranscodeHandlers(rt.pool, bucket, config)
        await rt.serve(handlers.routes())

        async def transcode(event: ingest.SessionStarted) -> None:
            async with rt.pool.acquire() as conn:
                await store.upsert_session(
                    conn, session_id=event.session_id, channel_id=event.channel_id,
                    channel_name=event.channel_name, started_at=event.started_at,
                )  # fmt: skip
            runner = SessionRunner(
                nc=rt.bus, bucket=bucket, pool=rt.pool, config=config, event=event,
                process_id=process_id, encoder=encoder,
            )  # fmt: skip
            await runner.run()

        rt.spawn(
            admit_forever(
                rt.jetstream,
                capacity=config.transcode_capacity,
                ack_wait=config.takeover_seconds,
                run=transcode,
            ),
            name="transcode-admission",
        )
        rt.consume(
            ConsumerSpec(
                stream=ingest.STREAM.name,
                durable="transcode-sessions",
                events=(ingest.SessionStarted, ingest.SessionEnded),
            ),
            handlers.on_session,
        )
        rt.consume(
            ConsumerSpec(stream=pc.STREAM.name, durable="transcode-channels", events=(pc.ChannelCreated,)),
            handlers.on_channel,
        )
        rt.spawn(handlers.sweep_forever(), name="transcode-retention")
        log.info(
            "transcode_ready", process_id=process_id, encoder=encoder, capacity=config.transcode_capacity
        )
        await rt.wait()
