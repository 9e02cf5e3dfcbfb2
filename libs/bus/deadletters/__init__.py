"""Dead letters: where a consumer puts an event it cannot handle, so nothing is ever dropped.

A message lands here after `ConsumerSpec.dead_letter_after` failures that were not "a dependency is away",
or at once when it is poison (undecodable, no handler, the handler raised Poison). One stream, DEADLETTERS,
holds every consumer's dead letters under `deadletter.<durable>.<original subject>`, with the original
payload and headers plus `Cpc-Dead-*` headers naming where it came from and why. Replays go to a second
stream, REPLAYS (work queue), under `replay.<stream>.<durable>.<original subject>`: each consumer also pulls
its own `replay.<stream>.<durable>.>` through the consumer `<durable>@<stream>` on REPLAYS, so a replay
reaches that consumer only, never the other consumers of the original subject nor a consumer of the same
durable name on another stream (JetStream names a consumer within its stream only)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from libs.bus.publish import publish_encoded
from libs.obs.metrics import DEAD_LETTERS

__all__ = [
    "DEAD_PREFIX",
    "DEAD_STREAM",
    "H_AT",
    "H_CONSUMER",
    "H_DELIVERIES",
    "H_ERROR",
    "H_MSG_ID",
    "H_SEQUENCE",
    "H_STREAM",
    "H_SUBJECT",
    "REPLAY_PREFIX",
    "REPLAY_STREAM",
    "add_replay_consumer",
    "count_from_zero",
    "dead_subject",
    "ensure_dead_letter_streams",
    "error_text",
    "move",
    "replay_config",
    "replay_consumer",
    "replay_subject",
]

DEAD_STREAM = "DEADLETTERS"
REPLAY_STREAM = "REPLAYS"
DEAD_PREFIX = "deadletter"
REPLAY_PREFIX = "replay"
# Long enough that a process killed between "dead letter stored" and "original terminated" finds its
# dead letter already there when the original comes back (ack_wait plus another round of failures).
DUPLICATE_WINDOW_SECONDS = 24 * 3600.0
ERROR_CHARS = 500

H_STREAM = "Cpc-Dead-Stream"  # the stream and sequence the event was first stored at
H_SEQUENCE = "Cpc-Dead-Sequence"
H_SUBJECT = "Cpc-Dead-Subject"
H_CONSUMER = "Cpc-Dead-Consumer"
H_DELIVERIES = "Cpc-Dead-Deliveries"
H_ERROR = "Cpc-Dead-Error"
H_AT = "Cpc-Dead-At"
H_MSG_ID = "Cpc-Dead-Msg-Id"  # the original Nats-Msg-Id (the event id)


def dead_subject(durable: str, subject: str) -> str:
    """Where `durable`'s dead letter of an event on `subject` is kept."""
    return f"{DEAD_PREFIX}.{durable}.{subject}"


def replay_subject(stream: str, durable: str, subject: str) -> str:
    """Where a replay of an event on `subject` for `stream`'s consumer `durable` (and no other consumer)
    is published."""
    return f"{REPLAY_PREFIX}.{stream}.{durable}.{subject}"


def replay_consumer(stream: str, durable: str) -> str:
    """The name, on REPLAYS, of the consumer that takes `stream`'s consumer `durable`'s replays."""
    return f"{durable}@{stream}"


def stream_configs(replicas: int) -> list[StreamConfig]:
    """DEADLETTERS (kept until an operator replays or drops them) and REPLAYS (gone once handled)."""
    common: dict[str, Any] = {
        "discard": DiscardPolicy.OLD,
        "storage": StorageType.FILE,
        "duplicate_window": DUPLICATE_WINDOW_SECONDS,
        "num_replicas": replicas,
        "allow_direct": True,
    }
    return [
        StreamConfig(
            name=DEAD_STREAM,
            description="Events a consumer could not handle, kept for an operator",
            subjects=[f"{DEAD_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=0,
            **common,
        ),
        StreamConfig(
            name=REPLAY_STREAM,
            description="Dead letters an operator sent back to their consumer",
            subjects=[f"{REPLAY_PREFIX}.>"],
            # No max_age: a replay waits for its consumer however long it is away, never expires unseen.
            retention=RetentionPolicy.WORK_QUEUE,
            max_age=0,
            **common,
        ),
    ]


async def ensure_dead_letter_streams(js: JetStreamContext, *, replicas: int) -> None:
    """Create the two streams when missing (an existing one is left as it is)."""
    for config in stream_configs(replicas):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            # BadRequest: another consumer created it between our two calls.
            with contextlib.suppress(BadRequestError):
                await js.add_stream(config)


def replay_config(stream: str, durable: str, *, ack_wait: float, max_ack_pending: int) -> ConsumerConfig:
    """The consumer on REPLAYS that takes only the replays of `stream`'s consumer `durable`."""
    return ConsumerConfig(
        durable_name=replay_consumer(stream, durable),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        filter_subject=replay_subject(stream, durable, ">"),
        max_ack_pending=max_ack_pending,
    )


async def add_replay_consumer(
    js: JetStreamContext, stream: str, durable: str, *, ack_wait: float, max_ack_pending: int
) -> None:
    """Create (or update) the consumer on REPLAYS for `stream`'s consumer `durable`; refuse to take over
    one of that name that serves another consumer (a name holding "@"), as changing its filter would
    steal that consumer's replays."""
    config = replay_config(stream, durable, ack_wait=ack_wait, max_ack_pending=max_ack_pending)
    name = replay_consumer(stream, durable)
    try:
        info = await js.consumer_info(REPLAY_STREAM, name)
    except NotFoundError:
        pass
    else:
        if info.config.filter_subject not in (None, config.filter_subject):
            raise ValueError(
                f'replay consumer "{name}" already takes "{info.config.filter_subject}", '
                f'not "{config.filter_subject}": rename durable "{durable}"'
            )
    await js.add_consumer(REPLAY_STREAM, config)


def error_text(error: BaseException) -> str:
    """The exception's type and message on one line, short enough for a header."""
    text = f"{type(error).__name__}: {error}".replace("\r", " ").replace("\n", " ")
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def count_from_zero(durable: str, subjects: list[str]) -> None:
    """Export `durable`'s dead-letter counters at 0 from its start: a series that first appears at 1 has
    no increase for Prometheus, and the alert on the first dead letter would never fire."""
    for subject in subjects:
        DEAD_LETTERS.labels(durable, subject)


async def move(js: JetStreamContext, msg: Any, *, subject: str, durable: str, error: BaseException) -> None:
    """Store `msg` (an event on `subject` that `durable` failed) as a dead letter and wait for the ack.
    Its Nats-Msg-Id is derived from where this copy is stored (and the event's own id), so storing it
    twice (a process killed between this and the term) keeps one and counts one."""
    meta = msg.metadata
    stream, seq = meta.stream, meta.sequence.stream
    original = dict(msg.headers or {})
    headers = {k: v for k, v in original.items() if not k.startswith("Nats-")}
    # A replayed message already names where the event was first stored; keep that.
    headers.setdefault(H_STREAM, stream)
    headers.setdefault(H_SEQUENCE, str(seq))
    own_id = original.get("Nats-Msg-Id", "")
    if own_id:
        headers.setdefault(H_MSG_ID, own_id)
    headers |= {
        H_SUBJECT: subject,
        H_CONSUMER: durable,
        H_DELIVERIES: str(meta.num_delivered),
        H_ERROR: error_text(error),
        H_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    ack = await publish_encoded(
        js,
        dead_subject(durable, subject),
        msg.data,
        # The event id too: a stream deleted and made again reuses its sequences within the window.
        msg_id=f"deadletter:{stream}:{durable}:{seq}:{own_id}",
        headers=headers,
    )
    if not ack.duplicate:
        DEAD_LETTERS.labels(durable, subject).inc()
