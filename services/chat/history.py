"""A room's stored messages: read the last ones for a joiner, remove deleted ones from the stream."""

from __future__ import annotations

import contextlib

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs.bus.codec import decoder_for
from libs.obs.logging import get_logger
from proto import chat as pc

__all__ = ["delete_seqs", "purge_room", "read_history"]

log = get_logger("chat")

HISTORY_READ_TIMEOUT = 2.0


async def read_history(js: JetStreamContext, room_id: str) -> list[pc.ChatMessage]:
    """The messages stored for a room, oldest first (at most proto.chat.ROOM_HISTORY)."""
    subject = pc.room_subject(room_id)
    try:
        last = await js.get_last_msg(pc.ROOM_STREAM.name, subject)
    except NotFoundError:
        return []
    decoder = decoder_for(pc.ChatMessage)
    out: list[pc.ChatMessage] = []
    sub = await js.subscribe(
        subject,
        stream=pc.ROOM_STREAM.name,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=HISTORY_READ_TIMEOUT)
            except (TimeoutError, NatsTimeoutError):
                log.warning("history_read_incomplete", room_id=room_id, got=len(out))
                break
            with contextlib.suppress(msgspec.MsgspecError):
                out.append(decoder.decode(msg.data))
            if msg.metadata.sequence.stream >= (last.seq or 0):
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


async def delete_seqs(js: JetStreamContext, seqs: list[int]) -> None:
    """Remove messages from the room stream (already gone ones are fine: limits may have dropped them)."""
    for seq in seqs:
        with contextlib.suppress(NotFoundError):
            await js.delete_msg(pc.ROOM_STREAM.name, seq)


async def purge_room(js: JetStreamContext, room_id: str) -> None:
    """Remove every stored message of a room."""
    await js.purge_stream(pc.ROOM_STREAM.name, subject=pc.room_subject(room_id))
