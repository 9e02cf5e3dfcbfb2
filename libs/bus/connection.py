"""Connect to NATS with reconnects, and declare the JetStream streams a service owns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from libs.obs.logging import get_logger
from proto.base import StreamSpec

__all__ = ["StreamSpec", "connect", "ensure_streams", "stream_config"]

log = get_logger("bus")


def stream_config(spec: StreamSpec, replicas: int) -> StreamConfig:
    """The nats-py StreamConfig for a stream declared in proto/."""
    return StreamConfig(
        name=spec.name,
        description=spec.description or None,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_seconds,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        max_bytes=spec.max_bytes,
        storage=StorageType.FILE if spec.storage == "file" else StorageType.MEMORY,
        duplicate_window=min(spec.duplicate_window_seconds, spec.max_age_seconds),
        num_replicas=replicas,
        allow_direct=True,
    )


async def connect(url: str, *, name: str) -> Client:
    """Connect with endless reconnects; disconnects and reconnects are logged.

    `url` may list several servers of a cluster, comma-separated: the first is tried first, the others
    (and those the cluster announces) are where the client goes when its server is lost."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError(f'no NATS server in CPC_NATS_URL "{url}"')

    client: Client | None = None

    async def on_disconnect() -> None:
        if client is not None and (client.is_closed or client.is_draining):
            return  # our own shutdown
        log.warning("nats_disconnected", url=url)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", url=url)

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    client = await nats.connect(
        servers,
        name=name,
        # Keep the given order: a deployment spreads its services by giving each a different first server.
        dont_randomize=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return client


async def ensure_streams(
    js: JetStreamContext, specs: Iterable[StreamSpec], *, replicas: int = 1, patience: float = 60.0
) -> None:
    """Create each stream, or update it in place when it exists with another config.

    A cluster may take longer than one API timeout to place a replicated stream (or to elect the leader
    that answers): such a timeout is retried for up to `patience` seconds, since every step is idempotent."""
    for spec in specs:
        deadline = time.monotonic() + patience
        while True:
            try:
                await _ensure_stream(js, spec, replicas)
                break
            except (NatsTimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("stream_not_ready", stream=spec.name, error=type(exc).__name__)
                await asyncio.sleep(0.5)


async def _ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int) -> None:
    """One attempt: create the stream, or update it in place."""
    config = stream_config(spec, replicas)
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("stream_created", stream=spec.name, subjects=list(spec.subjects))
            return
        except BadRequestError:
            pass  # another replica created it between our two calls
    await js.update_stream(config)
