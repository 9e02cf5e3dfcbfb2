"""The one way to consume events: durable pull consumers, explicit acks, ack-by-return."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind

from libs.bus.codec import Event, decode
from libs.bus.errors import Poison, RetryLater
from libs.obs.logging import get_logger
from libs.obs.metrics import HANDLED, HANDLING_SECONDS
from libs.obs.tracing import extract_context, tracer

__all__ = ["ConsumerSpec", "EventHandler", "consume"]

log = get_logger("bus")

EventHandler = Callable[[Any], Awaitable[None]]


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable consumer: which stream, under what name, and the event types it takes by subject."""

    stream: str
    durable: str
    events: tuple[type[Event], ...]
    ack_wait_seconds: float = 30.0
    max_deliver: int = 20
    batch: int = 64
    deliver_all: bool = True

    def by_subject(self) -> Mapping[str, type[Event]]:
        """Event type for each subject this consumer receives."""
        return {cls.subject: cls for cls in self.events}

    def config(self) -> ConsumerConfig:
        """The nats-py ConsumerConfig for this spec."""
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self.deliver_all else DeliverPolicy.NEW,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliver,
            filter_subjects=[cls.subject for cls in self.events],
            max_ack_pending=self.batch * 4,
        )


def _backoff(attempt: int) -> float:
    return float(min(30.0, 0.25 * 2 ** max(0, attempt - 1)))


async def consume(js: JetStreamContext, spec: ConsumerSpec, handler: EventHandler) -> None:
    """Pull and handle events forever: return acks, RetryLater naks with delay, Poison terminates."""
    types = spec.by_subject()
    await js.add_consumer(spec.stream, spec.config())
    sub = await js.pull_subscribe_bind(spec.durable, stream=spec.stream)
    log.info("consumer_started", stream=spec.stream, durable=spec.durable, subjects=list(types))
    while True:
        try:
            messages = await sub.fetch(spec.batch, timeout=5.0)
        except (TimeoutError, NatsTimeoutError):
            continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection is reconnecting: wait and pull again
            log.warning("consumer_fetch_failed", durable=spec.durable, error=str(exc))
            await asyncio.sleep(1.0)
            continue
        for msg in messages:
            try:
                await _handle_one(msg, types, handler, spec.durable)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ack/nak lost with the connection: redelivered after ack_wait
                log.warning("event_settle_failed", subject=msg.subject, error=str(exc))


async def _handle_one(
    msg: Any, types: Mapping[str, type[Event]], handler: EventHandler, durable: str
) -> None:
    subject = msg.subject
    started = time.perf_counter()
    outcome = "ack"
    with tracer.start_as_current_span(
        f"{subject} process", context=extract_context(msg.headers), kind=SpanKind.CONSUMER
    ):
        try:
            cls = types.get(subject)
            if cls is None:
                raise Poison(f'no handler for subject "{subject}"')
            try:
                event = decode(msg.data, cls)
            except msgspec.DecodeError as exc:
                raise Poison(f'undecodable "{subject}" event: {exc}') from exc
            await handler(event)
            await msg.ack()
        except RetryLater as exc:
            outcome = "retry"
            await msg.nak(delay=exc.delay)
            log.info("event_retry", subject=subject, durable=durable, reason=str(exc), delay=exc.delay)
        except Poison as exc:
            outcome = "poison"
            await msg.term()
            log.error("event_poison", subject=subject, durable=durable, reason=str(exc))
        except Exception:
            outcome = "error"
            attempt = msg.metadata.num_delivered if msg.metadata else 1
            log.exception("event_failed", subject=subject, durable=durable, attempt=attempt)
            await msg.nak(delay=_backoff(attempt))
    elapsed = time.perf_counter() - started
    HANDLED.labels(subject, "event", outcome).inc()
    HANDLING_SECONDS.labels(subject, "event").observe(elapsed)
    log.info("event_handled", subject=subject, durable=durable, outcome=outcome, ms=round(elapsed * 1000, 2))
