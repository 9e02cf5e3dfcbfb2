"""What an operator does with dead letters: list, show, replay to their consumer alone, drop."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.bus.deadletters import (
    DEAD_PREFIX,
    DEAD_STREAM,
    H_AT,
    H_CONSUMER,
    H_DELIVERIES,
    H_ERROR,
    H_SEQUENCE,
    H_STREAM,
    H_SUBJECT,
    REPLAY_PREFIX,
    REPLAY_STREAM,
    replay_consumer,
    replay_subject,
)
from libs.bus.publish import publish_encoded

__all__ = ["DeadLetter", "Unknown", "drop", "drop_consumer", "get", "list_letters", "replay"]


class Unknown(Exception):
    """The operator named a dead letter or a consumer that does not exist."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter as stored: where it is kept (`seq`), what it was, who failed it and why."""

    seq: int
    subject: str
    consumer: str
    deliveries: int
    error: str
    at: str
    stream: str
    stream_seq: int
    headers: Mapping[str, str]
    data: bytes

    @classmethod
    def from_stored(cls, seq: int, headers: Mapping[str, str], data: bytes) -> DeadLetter:
        """Read the Cpc-Dead-* headers the consumer wrote."""
        return cls(
            seq=seq,
            subject=headers.get(H_SUBJECT, ""),
            consumer=headers.get(H_CONSUMER, ""),
            deliveries=int(headers.get(H_DELIVERIES, "0") or 0),
            error=headers.get(H_ERROR, ""),
            at=headers.get(H_AT, ""),
            stream=headers.get(H_STREAM, ""),
            stream_seq=int(headers.get(H_SEQUENCE, "0") or 0),
            headers={k: v for k, v in headers.items() if not k.startswith("Nats-")},
            data=data,
        )


async def _stream_exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except NotFoundError:
        return False
    return True


async def list_letters(js: JetStreamContext, consumer: str | None = None) -> list[DeadLetter]:
    """Every dead letter, oldest first, or only `consumer`'s (Unknown if no such consumer)."""
    if consumer is not None:
        await _known_consumer(js, consumer)
    if not await _stream_exists(js, DEAD_STREAM):
        return []
    subject = f"{DEAD_PREFIX}.{consumer}.>" if consumer else f"{DEAD_PREFIX}.>"
    letters: list[DeadLetter] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(DEAD_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return letters
        assert raw.seq is not None
        letters.append(DeadLetter.from_stored(raw.seq, raw.headers or {}, raw.data or b""))
        seq = raw.seq + 1


async def get(js: JetStreamContext, seq: int) -> DeadLetter:
    """The dead letter kept at `seq` (Unknown if there is none)."""
    try:
        raw = await js.get_msg(DEAD_STREAM, seq=seq)
    except NotFoundError:
        raise Unknown(f"no dead letter with sequence {seq}") from None
    return DeadLetter.from_stored(seq, raw.headers or {}, raw.data or b"")


def _check_name(consumer: str) -> None:
    if not consumer or any(c.isspace() or c in ".*>" for c in consumer):
        raise Unknown(f'"{consumer}" is not a consumer name')


async def _known_consumer(js: JetStreamContext, consumer: str) -> None:
    """Every consumer that can take dead letters back has run and made its consumer on REPLAYS, which
    takes replay.<stream>.<durable>.> (Unknown when none has this durable name)."""
    _check_name(consumer)
    offset = 0
    while await _stream_exists(js, REPLAY_STREAM):
        page = await js.consumers_info(REPLAY_STREAM, offset=offset)  # at most 256 at a time
        for info in page:
            tokens = (info.config.filter_subject or "").split(".")
            if len(tokens) == 4 and tokens[0] == REPLAY_PREFIX and tokens[2] == consumer:
                return
        if not page:
            break
        offset += len(page)
    raise Unknown(f'no consumer named "{consumer}" (none has run since dead letters exist)')


async def _replay_target(js: JetStreamContext, letter: DeadLetter) -> str:
    """The subject that reaches `letter`'s own consumer (Unknown if that consumer never ran)."""
    _check_name(letter.consumer)
    if not letter.stream or not letter.subject:
        raise Unknown(f"dead letter {letter.seq} does not name its stream and subject")
    try:
        await js.consumer_info(REPLAY_STREAM, replay_consumer(letter.stream, letter.consumer))
    except NotFoundError:
        raise Unknown(
            f'no consumer "{letter.consumer}" on stream "{letter.stream}" for dead letter {letter.seq}'
        ) from None
    return replay_subject(letter.stream, letter.consumer, letter.subject)


async def replay(js: JetStreamContext, letter: DeadLetter) -> None:
    """Send `letter` back to its consumer alone, then remove it; a repeat after a crash is dropped by
    JetStream (same Nats-Msg-Id), so the consumer gets it once."""
    await publish_encoded(
        js,
        await _replay_target(js, letter),
        letter.data,
        msg_id=f"replay:{letter.stream}:{letter.stream_seq}:{letter.consumer}:{letter.seq}",
        headers=dict(letter.headers),
    )
    await js.delete_msg(DEAD_STREAM, letter.seq)


async def drop(js: JetStreamContext, seq: int) -> None:
    """Remove the dead letter kept at `seq` for good."""
    await get(js, seq)
    await js.delete_msg(DEAD_STREAM, seq)


async def drop_consumer(js: JetStreamContext, consumer: str) -> int:
    """Remove all of `consumer`'s dead letters; how many there were."""
    letters = await list_letters(js, consumer)
    if letters:
        await js.purge_stream(DEAD_STREAM, subject=f"{DEAD_PREFIX}.{consumer}.>")
    return len(letters)
