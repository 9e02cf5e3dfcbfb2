"""Connect to NATS with reconnects, and declare the JetStream streams a service owns."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from libs.obs.logging import get_logger

__all__ = ["StreamSpec", "connect", "ensure_streams"]

log = get_logger("bus")


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A JetStream stream, declared next to the subjects it holds in `proto/`."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = 7 * 24 * 3600
    duplicate_window_seconds: float = 600
    max_msgs_per_subject: int = -1
    max_bytes: int = -1
    storage: str = "file"
    description: str = ""

    def config(self, replicas: int) -> StreamConfig:
        """The nats-py StreamConfig for this spec."""
        return StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_seconds,
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_bytes=self.max_bytes,
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            duplicate_window=min(self.duplicate_window_seconds, self.max_age_seconds),
            num_replicas=replicas,
            allow_direct=True,
        )


async def connect(url: str, *, name: str) -> Client:
    """Connect with endless reconnects; disconnects and reconnects are logged."""

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
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return client


async def ensure_streams(js: JetStreamContext, specs: Iterable[StreamSpec], *, replicas: int = 1) -> None:
    """Create each stream, or update it in place when it exists with another config."""
    for spec in specs:
        config = spec.config(replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("stream_created", stream=spec.name, subjects=list(spec.subjects))
                continue
            except BadRequestError:
                pass  # another replica created it between our two calls
        await js.update_stream(config)
