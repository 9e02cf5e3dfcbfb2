"""Dead letters: where a consumer puts an event it cannot handle, so nothing is ever dropped.

A message lands here after `ConsumerSpec.dead_letter_after` failures that were not "a dependency is away",
or at once when it is poison (undecodable, no handler, the handler raised Poison). One stream, DEADLETTERS,
holds every consumer's dead letters under `deadletter.<durable>.<original subject>`, with the original
payload and headers plus `Cpc-Dead-*` headers naming where it came from and why. Replays go to a second
stream, REPLAYS (work queue), under `replay.<durable>.<original subject>`: each consumer also pulls its own
`replay.<durable>.>` through a consumer of the same name on REPLAYS, so a replay reaches that consumer only,
never the other consumers of the original subject."""

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
    "dead_subject",
    "ensure_dead_letter_streams",
    "error_text",
    "move",
    "replay_config",
    "replay_subject",
]

DEAD_STREAM = "DEADLETTERS"
REPLAY_STREAM = "REPLAYS"
DEAD_PREFIX = "deadletter"
REPLAY_PREFIX = "replay"
# Long enough that a process killed between "dead letter stored" and "original terminated" finds its
# dead letter already there when the original comes back (ack_wait plus another round of failures).
DUPLICATE_WINDOW_SECONDS = 24 * 3600.0
REPLAY_MAX_AGE_SECONDS = 7 * 24 * 3600.0
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


def replay_subject(durable: str, subject: str) -> str:
    """Where a replay of an event on `subject` for `durable` (and no other consumer) is published."""
    return f"{REPLAY_PREFIX}.{durable}.{subject}"


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
            retention=RetentionPolicy.WORK_QUEUE,
            max_age=REPLAY_MAX_AGE_SECONDS,
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


def replay_config(durable: str, *, ack_wait: float, max_ack_pending: int) -> ConsumerConfig:
    """The consumer on REPLAYS, named like the original, that takes only this consumer's replays."""
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        filter_subject=f"{REPLAY_PREFIX}.{durable}.>",
        max_ack_pending=max_ack_pending,
    )


def error_text(error: BaseException) -> str:
    """The exception's type and message on one line, short enough for a header."""
    text = f"{type(error).__name__}: {error}".replace("\r", " ").replace("\n", " ")
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


async def move(js: JetStreamContext, msg: Any, *, subject: str, durable: str, error: BaseException) -> None:
    """Store `msg` (an event on `subject` that `durable` failed) as a dead letter and wait for the ack.
    Its Nats-Msg-Id is derived from where this copy is stored, so storing it twice keeps one."""
    meta = msg.metadata
    stream, seq = meta.stream, meta.sequence.stream
    original = dict(msg.headers or {})
    headers = {k: v for k, v in original.items() if not k.startswith("Nats-")}
    # A replayed message already names where the event was first stored; keep that.
    headers.setdefault(H_STREAM, stream)
    headers.setdefault(H_SEQUENCE, str(seq))
    if "Nats-Msg-Id" in original:
        headers.setdefault(H_MSG_ID, original["Nats-Msg-Id"])
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
        msg_id=f"deadletter:{stream}:{durable}:{seq}",
        headers=headers,
    )
    if not ack.duplicate:
        DEAD_LETTERS.labels(durable, subject).inc()
