"""Wires the channel service: config, schema, streams, the image bucket and workers, endpoints, consumers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError

from libs.bus import ConsumerSpec
from libs.obs.logging import get_logger
from libs.runtime import Runtime, ServiceConfig
from proto import channel as pc
from proto import identity, ingest
from services.channel.emote_handlers import EmoteHandlers
from services.channel.handlers import ChannelHandlers

__all__ = ["ChannelConfig", "ensure_image_bucket", "run"]

log = get_logger("channel")

MIGRATIONS = Path(__file__).parent / "migrations"


class ChannelConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the channel service."""

    # Threads that decode and re-encode uploaded images (each may hold one 160 MB decoded picture).
    image_workers: int = 2


async def ensure_image_bucket(
    js: JetStreamContext, *, replicas: int, bucket: str = pc.IMAGE_BUCKET, description: str = ""
) -> Any:
    """An object store bucket for images, created when missing (replicas may race: fine)."""
    try:
        return await js.object_store(bucket)
    except BucketNotFoundError:
        pass
    config = ObjectStoreConfig(
        description=description or "channel avatars and banners", storage=StorageType.FILE, replicas=replicas
    )
    try:
        store = await js.create_object_store(bucket, config=config)
    except BadRequestError:  # another replica created it between our two calls
        return await js.object_store(bucket)
    log.info("object_store_created", bucket=bucket)
    return store


async def run(config: ChannelConfig) -> None:
    """Run the channel service until a stop signal."""
    executor = ThreadPoolExecutor(max_workers=config.image_workers, thread_name_prefix="channel-image")
    # ingest and identity own STREAM and IDENTITY; declaring them here too (same spec from proto/)
    # lets our durable consumers bind whichever service starts first.
    streams = [pc.STREAM, ingest.STREAM, identity.STREAM]
    try:
        async with Runtime("channel", config, schema="channel", migrations=MIGRATIONS, streams=streams) as rt:
            images = await ensure_image_bucket(rt.jetstream, replicas=config.jetstream_replicas)
            handlers = ChannelHandlers(rt.pool, images, executor, rt.bus)
            emote_bucket = await ensure_image_bucket(
                rt.jetstream,
                replicas=config.jetstream_replicas,
                bucket=pc.EMOTE_BUCKET,
                description="channel and global emotes",
            )
            emotes = EmoteHandlers(rt.pool, emote_bucket, executor)
            await emotes.install_global_set()
            await rt.serve([*handlers.routes(), *emotes.routes()])
            rt.consume(
                ConsumerSpec(
                    stream=ingest.STREAM.name,
                    durable="channel-live",
                    events=(ingest.SessionStarted, ingest.SessionEnded),
                ),
                handlers.on_session,
            )
            rt.consume(
                ConsumerSpec(
                    stream=identity.STREAM.name, durable="channel-users", events=(identity.UserRegistered,)
                ),
                handlers.on_user_registered,
            )
            await rt.wait()
    finally:
        # Waits for an image being processed; nothing new is queued once the endpoints have stopped.
        executor.shutdown(wait=True, cancel_futures=True)
