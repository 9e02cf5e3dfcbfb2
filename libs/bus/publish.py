"""The one way to publish an event: wait for the PubAck, deduplicate by `Nats-Msg-Id`."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry.trace import SpanKind

from libs.bus.codec import Event, encode
from libs.obs.metrics import PUBLISHED
from libs.obs.tracing import inject_context, tracer

__all__ = ["publish", "publish_encoded", "publish_media_piece"]


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
    """Publish bytes already encoded (the outbox relay's path); JetStream drops a repeated `msg_id`."""
    with tracer.start_as_current_span(f"{subject} publish", kind=SpanKind.PRODUCER):
        all_headers = inject_context(dict(headers or {}))
        all_headers["Nats-Msg-Id"] = msg_id
        try:
            ack = await js.publish(subject, payload, timeout=timeout, headers=all_headers)
        except Exception:
            PUBLISHED.labels(subject, "error").inc()
            raise
    PUBLISHED.labels(subject, "duplicate" if ack.duplicate else "ok").inc()
    return ack


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
