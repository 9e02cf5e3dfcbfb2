"""Wires the transcode service: config, schema, streams, the media bucket, copies, endpoints, consumers and
the retention worker."""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.object_store import ObjectStore

from libs.bus import ConsumerSpec, routes_of
from libs.obs.logging import get_logger
from libs.runtime import Runtime
from proto import channel as pc
from proto import ingest
from proto import transcode as pt
from services.transcode import domain, store
from services.transcode.config import TranscodeConfig
from services.transcode.events import SessionEvents
from services.transcode.handlers import Handlers
from services.transcode.metrics import ENCODER
from services.transcode.pipeline import choose_encoder
from services.transcode.recordings import expire_recordings

__all__ = ["TranscodeConfig", "ensure_bucket", "run", "work_consumer"]

log = get_logger("transcode")

MIGRATIONS = Path(__file__).parent / "migrations"


async def ensure_bucket(js: JetStreamContext, *, replicas: int) -> ObjectStore:
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


def work_consumer(config: TranscodeConfig) -> ConsumerSpec:
    """Admission: the replicas share this consumer of new sessions and each pulls one only while it has a
    free slot (`transcode_capacity`), keeping it in progress while it transcodes; a replica that dies stops
    the heartbeats and JetStream hands its session to another after `takeover_seconds`. Every takeover is
    a delivery, so deliveries are not limited."""
    return ConsumerSpec(
        stream=ingest.STREAM.name, durable="transcode-work", events=(ingest.SessionStarted,),
        deliver_all=False, concurrency=config.transcode_capacity, batch=1, in_progress=True,
        ack_wait_seconds=config.takeover_seconds, max_deliver=-1,
    )  # fmt: skip


async def run(config: TranscodeConfig) -> None:
    """Run the transcode service until a stop signal."""
    domain.parse_ladder(config.transcode_ladder)  # a bad ladder stops the process at start, naming the entry
    encoder = choose_encoder(config.hardware_encoder)
    ENCODER.labels(encoder).set(1)
    process_id = secrets.token_hex(6)
    streams = [pt.STREAM, pt.CHUNK_STREAM, ingest.STREAM, pc.STREAM]
    async with Runtime("transcode", config, schema="transcode", migrations=MIGRATIONS, streams=streams) as rt:
        bucket = await ensure_bucket(rt.jetstream, replicas=config.jetstream_replicas)
        channels = await rt.keep_copy(pc.CHANNEL)
        sessions = await rt.keep_copy(ingest.LIVE_SESSION)
        async with rt.pool.acquire() as conn:
            await store.index_copies(conn)
        handlers = Handlers(
            pool=rt.pool, bucket=bucket, takeover_seconds=config.takeover_seconds, channels=channels
        )
        await rt.serve(routes_of(handlers))
        events = SessionEvents(
            nc=rt.bus, bucket=bucket, pool=rt.pool, config=config, sessions=sessions,
            process_id=process_id, encoder=encoder,
        )  # fmt: skip
        rt.consume(work_consumer(config), events.transcode)
        rt.consume(
            ConsumerSpec(
                stream=ingest.STREAM.name, durable="transcode-session-ends", events=(ingest.SessionEnded,)
            ),
            events.session_ended,
        )
        rt.worker(
            "transcode-retention",
            partial(expire_recordings, rt.pool, bucket, retention_days=config.recording_retention_days),
            every=config.retention_sweep_seconds,
        )
        log.info(
            "transcode_ready", process_id=process_id, encoder=encoder, capacity=config.transcode_capacity
        )
        await rt.wait()
