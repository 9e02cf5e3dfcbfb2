"""Wires the channel service: schema and stream, the image buckets and workers, its copies of users and
live sessions (a channel's live state follows the latter), the endpoints. Settings: config.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from libs.bus import routes_of
from libs.runtime import Runtime
from proto import channel as pc
from proto import identity, ingest
from services.channel.buckets import ensure_bucket
from services.channel.config import ChannelConfig
from services.channel.emotes import EmoteHandlers
from services.channel.events import follow_live_state
from services.channel.handlers import ChannelHandlers

__all__ = ["ChannelConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: ChannelConfig) -> None:
    """Run the channel service until a stop signal."""
    executor = ThreadPoolExecutor(max_workers=config.image_workers, thread_name_prefix="channel-image")
    try:
        async with Runtime(
            "channel", config, schema="channel", migrations=MIGRATIONS, streams=[pc.STREAM]
        ) as rt:
            users = await rt.keep_copy(identity.USER)
            await rt.keep_copy(ingest.LIVE_SESSION, on_change=follow_live_state)
            replicas = config.jetstream_replicas
            images = await ensure_bucket(
                rt.jetstream, pc.IMAGE_BUCKET, description="channel avatars and banners", replicas=replicas
            )
            emote_bucket = await ensure_bucket(
                rt.jetstream, pc.EMOTE_BUCKET, description="channel and global emotes", replicas=replicas
            )
            handlers = ChannelHandlers(pool=rt.pool, images=images, executor=executor, users=users)
            emotes = EmoteHandlers(pool=rt.pool, bucket=emote_bucket, executor=executor)
            await emotes.install_global_set()
            await rt.serve(routes_of(handlers, emotes))
            await rt.wait()
    finally:
        # Waits for an image being processed; nothing new is queued once the endpoints have stopped.
        executor.shutdown(wait=True, cancel_futures=True)
