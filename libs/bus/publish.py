"""The one way to publish an event: wait for the PubAck, deduplicate by `Nats-Msg-Id`."""

from __future__ import annotations

import asyncio
import time

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from opentelemetry.trace import SpanKind

from libs.bus.codec import Event, encode
from libs.obs.metrics import PUBLISHED
from libs.obs.tracing import inject_context, tracer

__all__ = ["publish", "publish_encoded", "publish_media_piece"]

# The first attempt of a publish waits this long for the stream's ack before sending again.
FIRST_ATTEMPT_SECONDS = 1.0


async def publish(js: JetStreamContext, event: Event, *, timeout: float = 5.0) -> PubAck:
    """Publish `event` on its subject with `Nats-Msg-Id = event_id` and wait for the stream's ack."""
    return await publish_encoded(
        js, type(event).subject, encode(event), msg_id=event.event_id, timeout=timeout
    )


async def publish_encoded(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Publish bytes already encoded (the outbox relay's path); JetStream drops a repeated `msg_id`.

    Within `timeout`, an attempt that is not answered is sent again (the first after 1 s, then after
    longer waits): while a clustered stream elects a new leader, a publish reaches no one and would wait
    out the whole timeout even if the leader is elected a moment later. Sending again is safe, since the
    stream keeps one message per `msg_id`."""
    with tracer.start_as_current_span(f"{subject} publish", kind=SpanKind.PRODUCER):
        all_headers = inject_context(dict(headers or {}))
        all_headers["Nats-Msg-Id"] = msg_id
        try:
            ack = await _publish_patiently(js, subject, payload, all_headers, timeout)
        except Exception:
            PUBLISHED.labels(subject, "error").inc()
            raise
    PUBLISHED.labels(subject, "duplicate" if ack.duplicate else "ok").inc()
    return ack


async def _publish_patiently(
    js: JetStreamContext, subject: str, payload: bytes, headers: dict[str, str], timeout: float
) -> PubAck:
    deadline = time.monotonic() + timeout
    wait = FIRST_ATTEMPT_SECONDS
    while True:
        left = deadline - time.monotonic()
        try:
            return await js.publish(subject, payload, timeout=max(0.01, min(wait, left)), headers=headers)
        except (NatsTimeoutError, NoStreamResponseError, ServiceUnavailableError):
            # Unanswered, or no stream (leader) took it yet: again while there is time.
            if deadline - time.monotonic() < 0.05:
                raise
            wait *= 2
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


async def publish_media_piece(
    js: JetStreamContext, subject: str, payload: bytes, *, msg_id: str, headers: dict[str, str] | None = None
) -> PubAck:
    """Publish a piece of media (a DASH chunk) to JetStream, deduplicated by `msg_id`; counted under one
    "media" label, since its per-session subjects must not become metric labels, and not traced."""
    all_headers = dict(headers or {})
    all_headers["Nats-Msg-Id"] = msg_id
    try:
        ack = await js.publish(subject, payload, headers=all_headers)
    except Exception:
        PUBLISHED.labels("media", "error").inc()
        raise
    PUBLISHED.labels("media", "duplicate" if ack.duplicate else "ok").inc()
    return ack
