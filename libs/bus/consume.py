"""The one way to consume events: durable pull consumers, explicit acks, ack-by-return. A consumer may
handle several events at once (`concurrency`) and, for long work, tell JetStream every third of
`ack_wait` that the event is still in progress, so it is redelivered elsewhere only if this process dies.

Nothing is dropped: a failing event is redelivered without limit (back-off capped at `retry_max_seconds`)
while the failure is a dependency being away; after `dead_letter_after` other failures, or at once when it
is poison, it moves to the dead-letter stream (libs/bus/deadletters) and only then is terminated here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind

from libs.bus import deadletters
from libs.bus.codec import Event, decode
from libs.bus.errors import Poison, RetryLater, is_unavailable
from libs.obs.logging import get_logger
from libs.obs.metrics import HANDLED, HANDLING_SECONDS
from libs.obs.tracing import extract_context, tracer

__all__ = ["ConsumerSpec", "EventHandler", "consume", "is_unavailable"]  # is_unavailable: libs.bus.errors

log = get_logger("bus")

EventHandler = Callable[[Any], Awaitable[None]]

RETRY_MAX_SECONDS = 5.0
# Failures remembered per process; an event pushed out only gets more tries before its dead letter.
_REMEMBERED_FAILURES = 10_000


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable consumer: which stream, under what name, and the event types it takes by subject."""

    stream: str
    durable: str
    events: tuple[type[Event], ...]
    ack_wait_seconds: float = 30.0
    # JetStream never gives up on an event (-1): one that keeps failing becomes a dead letter instead.
    max_deliver: int = -1
    # Failures of one event (a dependency being away does not count) before it becomes a dead letter.
    # 20 at the capped back-off is about 1.5 minutes of retrying: a race or a restart of a peer heals in
    # that time, a broken event does not, and its dead letter can be replayed once the bug is fixed.
    dead_letter_after: int = 20
    # A failing event comes back after 0.25 s, doubling up to this (an event waits at most this long
    # after its dependency returns).
    retry_max_seconds: float = RETRY_MAX_SECONDS
    batch: int = 64
    deliver_all: bool = True
    # Events handled at once; above 1 they run concurrently and order is no longer kept.
    concurrency: int = 1
    # Long work: send in-progress heartbeats while the handler runs (ack_wait then bounds a dead process).
    in_progress: bool = False

    def __post_init__(self) -> None:
        if self.dead_letter_after < 1:
            raise ValueError(f"dead_letter_after must be at least 1, not {self.dead_letter_after}")
        if self.retry_max_seconds <= 0:
            raise ValueError(f"retry_max_seconds must be above 0, not {self.retry_max_seconds}")

    def by_subject(self) -> Mapping[str, type[Event]]:
        """Event type for each subject this consumer receives."""
        return {cls.subject: cls for cls in self.events}

    def max_ack_pending(self) -> int:
        """Messages handed out and not yet settled at most."""
        return max(self.batch * 4, self.concurrency * 64)

    def config(self) -> ConsumerConfig:
        """The nats-py ConsumerConfig for this spec."""
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self.deliver_all else DeliverPolicy.NEW,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliver,
            filter_subjects=[cls.subject for cls in self.events],
            max_ack_pending=self.max_ack_pending(),
        )

    def backoff(self, attempt: int) -> float:
        """Seconds before delivery `attempt + 1` of a failing event."""
        return float(min(self.retry_max_seconds, 0.25 * 2 ** min(16, max(0, attempt - 1))))


async def consume(js: JetStreamContext, spec: ConsumerSpec, handler: EventHandler) -> None:
    """Pull and handle events (and this consumer's replays) forever: return acks, RetryLater naks with
    delay, other failures nak with back-off until they become dead letters, Poison is a dead letter."""
    await _prepare(js, spec)
    deadletters.count_from_zero(spec.durable, [cls.subject for cls in spec.events])
    consumer = _Consumer(js, spec, handler)
    subs = [
        await js.pull_subscribe_bind(spec.durable, stream=spec.stream),
        await js.pull_subscribe_bind(
            deadletters.replay_consumer(spec.stream, spec.durable), stream=deadletters.REPLAY_STREAM
        ),
    ]
    log.info(
        "consumer_started",
        stream=spec.stream,
        durable=spec.durable,
        subjects=list(consumer.types),
        concurrency=spec.concurrency,
    )
    try:
        await asyncio.gather(consumer.pull(subs[0], spec.concurrency), consumer.pull(subs[1], 1))
    finally:
        # Stopped (cancelled): what a subscription still holds would keep the connection's drain()
        # waiting forever, as no one reads it now; unacked, it is redelivered after ack_wait.
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _prepare(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create (or update) the consumer and its replay consumer, and the dead-letter streams; while
    JetStream is away or electing a leader (a lost cluster node), try again with back-off until it answers,
    so a consumer started during an outage waits for it instead of ending its process."""
    attempt = 0
    while True:
        try:
            source = await js.stream_info(spec.stream)
            await deadletters.ensure_dead_letter_streams(js, replicas=source.config.num_replicas or 1)
            await js.add_consumer(spec.stream, spec.config())
            await deadletters.add_replay_consumer(
                js,
                spec.stream,
                spec.durable,
                ack_wait=spec.ack_wait_seconds,
                max_ack_pending=spec.max_ack_pending(),
            )
            return
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            attempt += 1
            delay = spec.backoff(attempt)
            log.warning(
                "consumer_setup_retry", durable=spec.durable, attempt=attempt, delay=delay, error=str(exc)
            )
            await asyncio.sleep(delay)


class _Consumer:
    """One durable consumer's settling: its handler, types and the failures it has counted."""

    def __init__(self, js: JetStreamContext, spec: ConsumerSpec, handler: EventHandler) -> None:
        self.js = js
        self.spec = spec
        self.handler = handler
        self.types = spec.by_subject()
        self.replay_prefix = deadletters.replay_subject(spec.stream, spec.durable, "")
        self.failures: dict[tuple[str, int], int] = {}

    async def pull(self, sub: Any, concurrency: int) -> None:
        """Fetch and settle until cancelled: in order a batch at a time, or `concurrency` at once."""
        if concurrency == 1:
            while True:
                for msg in await self._fetch(sub, self.spec.batch):
                    await self._settle(msg)
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                # Pull only as many as there are free slots, so the rest wait for another replica.
                await slots.acquire()
                free = 1
                while free < concurrency and not slots.locked():
                    await slots.acquire()
                    free += 1
                messages = await self._fetch(sub, free)
                for _ in range(free - len(messages)):
                    slots.release()
                for msg in messages:
                    task = asyncio.create_task(self._settle_then_release(msg, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, sub: Any, count: int) -> list[Any]:
        """Up to `count` messages; none on a quiet stream or while the connection is away."""
        try:
            messages: list[Any] = await sub.fetch(count, timeout=5.0)
            return messages
        except (TimeoutError, NatsTimeoutError):
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection is reconnecting: wait and pull again
            log.warning("consumer_fetch_failed", durable=self.spec.durable, error=str(exc))
            await asyncio.sleep(1.0)
            return []

    async def _settle_then_release(self, msg: Any, slots: asyncio.Semaphore) -> None:
        try:
            await self._settle(msg)
        finally:
            slots.release()

    async def _settle(self, msg: Any) -> None:
        """Handle one message, with in-progress heartbeats if asked; never raises but cancellation."""
        spec = self.spec
        alive = asyncio.create_task(_keep_alive(msg, spec.ack_wait_seconds / 3)) if spec.in_progress else None
        try:
            await self._handle_one(msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ack/nak lost with the connection: redelivered after ack_wait
            log.warning("event_settle_failed", subject=msg.subject, error=str(exc))
        finally:
            if alive is not None:
                alive.cancel()

    async def _handle_one(self, msg: Any) -> None:
        # A replay arrives as replay.<durable>.<subject> and is handled as the event on <subject>.
        subject = msg.subject.removeprefix(self.replay_prefix)
        started = time.perf_counter()
        with tracer.start_as_current_span(
            f"{subject} process", context=extract_context(msg.headers), kind=SpanKind.CONSUMER
        ):
            outcome = await self._outcome(msg, subject)
        elapsed = time.perf_counter() - started
        HANDLED.labels(subject, "event", outcome).inc()
        HANDLING_SECONDS.labels(subject, "event").observe(elapsed)
        log.info(
            "event_handled",
            subject=subject,
            durable=self.spec.durable,
            outcome=outcome,
            ms=round(elapsed * 1000, 2),
        )

    async def _outcome(self, msg: Any, subject: str) -> str:
        """Run the handler and settle the message; the outcome names how."""
        durable = self.spec.durable
        key = (msg.metadata.stream, msg.metadata.sequence.stream)
        attempt = msg.metadata.num_delivered
        try:
            cls = self.types.get(subject)
            if cls is None:
                raise Poison(f'no handler for subject "{subject}"')
            try:
                event = decode(msg.data, cls)
            except msgspec.DecodeError as exc:
                raise Poison(f'undecodable "{subject}" event: {exc}') from exc
            await self.handler(event)
        except RetryLater as exc:
            await msg.nak(delay=exc.delay)
            log.info("event_retry", subject=subject, durable=durable, reason=str(exc), delay=exc.delay)
            return "retry"
        except Poison as exc:
            log.error("event_poison", subject=subject, durable=durable, reason=str(exc))
            return await self._dead_letter(msg, subject, exc, key)
        except Exception as exc:
            if is_unavailable(exc):  # an outage: retried for as long as it lasts, never a dead letter
                log.warning(
                    "event_dependency_away", subject=subject, durable=durable, attempt=attempt, error=str(exc)
                )
                await msg.nak(delay=self.spec.backoff(attempt))
                return "unavailable"
            failures = self._count_failure(key)
            log.exception(
                "event_failed", subject=subject, durable=durable, attempt=attempt, failures=failures
            )
            if failures >= self.spec.dead_letter_after:
                return await self._dead_letter(msg, subject, exc, key)
            await msg.nak(delay=self.spec.backoff(attempt))
            return "error"
        self.failures.pop(key, None)
        await msg.ack()
        return "ack"

    def _count_failure(self, key: tuple[str, int]) -> int:
        count = self.failures.pop(key, 0) + 1
        self.failures[key] = count
        if len(self.failures) > _REMEMBERED_FAILURES:
            del self.failures[next(iter(self.failures))]
        return count

    async def _dead_letter(self, msg: Any, subject: str, error: BaseException, key: tuple[str, int]) -> str:
        """Move to the dead-letter stream, then terminate; if the move fails, nak and try again later."""
        durable = self.spec.durable
        try:
            await deadletters.move(self.js, msg, subject=subject, durable=durable, error=error)
        except Exception as exc:
            log.warning("dead_letter_failed", subject=subject, durable=durable, error=str(exc))
            await msg.nak(delay=self.spec.backoff(msg.metadata.num_delivered))
            return "retry"
        self.failures.pop(key, None)
        await msg.term()
        log.error(
            "event_dead_lettered",
            subject=subject,
            durable=durable,
            stream=key[0],
            seq=key[1],
            error=deadletters.error_text(error),
        )
        return "dead"


async def _keep_alive(msg: Any, every: float) -> None:
    """Tell JetStream the message is still being worked on, until cancelled."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):
            await msg.in_progress()
