"""A room's stored messages: read the last ones for a joiner, remove deleted ones from the stream, and
forget the rows of those the stream no longer keeps."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import msgspec
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.bus import utcnow
from libs.bus.codec import decoder_for, encode
from libs.db import Pool
from libs.obs.logging import get_logger
from proto import chat as pc
from services.chat import store

__all__ = ["delete_seqs", "prune", "purge_room", "read_history"]

log = get_logger("chat")

HISTORY_READ_TIMEOUT = 2.0


async def read_history(nc: Client, room_id: str) -> list[pc.ChatMessage]:
    """The messages stored for a room, oldest first (at most proto.chat.ROOM_HISTORY), in one batched
    direct get (nats-server 2.11+): no consumer is created, so a join storm stays cheap."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    query = {"seq": 0, "next_by_subj": pc.room_subject(room_id), "batch": pc.ROOM_HISTORY * 2}
    decoder = decoder_for(pc.ChatMessage)
    out: list[pc.ChatMessage] = []
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{pc.ROOM_STREAM.name}", encode(query), reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=HISTORY_READ_TIMEOUT)
            except (TimeoutError, NatsTimeoutError):
                log.warning("history_read_incomplete", room_id=room_id, got=len(out))
                break
            status = (msg.headers or {}).get("Status")
            if status is not None:  # 204: end of the batch; 404: the room has no messages
                if status not in ("204", "404"):
                    log.warning("history_read_failed", room_id=room_id, status=status)
                break
            with contextlib.suppress(msgspec.MsgspecError):
                out.append(decoder.decode(msg.data))
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


async def prune(pool: Pool) -> bool:
    """One prune round (a worker step): forget message rows older than the room stream keeps them."""
    before = utcnow() - timedelta(seconds=pc.ROOM_STREAM.max_age_seconds)
    async with pool.acquire() as conn:
        removed = await store.prune_messages(conn, before=before)
    log.info("messages_pruned", removed=removed)
    return False
