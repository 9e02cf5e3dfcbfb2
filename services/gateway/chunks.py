"""Segments still being made (low-latency DASH): read from the transcoder's chunk stream with an ordered
consumer, which replays the chunks already out and then follows new ones with no gap in between, and sent
on as a chunked HTTP body until the chunk marked final."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import Error as JetStreamError

from libs.obs.logging import get_logger
from proto import transcode as pt

__all__ = ["open_segment"]

log = get_logger("gateway")

# A segment is listed once its first chunk is out, so a real request finds one at once; the wait only
# covers a request made a moment early. Between chunks: a chunk is half a second of media, the last one
# waits for the slowest rung.
FIRST_CHUNK_SECONDS = 3.0
NEXT_CHUNK_SECONDS = 6.0


async def open_segment(js: Any, session: str, track: str, number: int) -> AsyncIterator[bytes] | None:
    """The segment's bytes as they come, or None when no chunk of it shows up."""
    subject = pt.chunk_subject(session, track, number)
    try:
        sub = await js.subscribe(subject, stream=pt.CHUNK_STREAM.name, ordered_consumer=True)
    except (JetStreamError, NatsError) as exc:  # no chunk stream (yet): nothing is being made
        log.info("chunk_subscribe_failed", subject=subject, error=str(exc))
        return None
    try:
        first = await sub.next_msg(timeout=FIRST_CHUNK_SECONDS)
    except NatsTimeout:
        await sub.unsubscribe()
        return None
    return _follow(sub, first)


async def _follow(sub: Any, msg: Any) -> AsyncIterator[bytes]:
    try:
        while True:
            if msg.data:
                yield bytes(msg.data)
            if msg.headers and msg.headers.get(pt.FINAL_CHUNK_HEADER):
                return
            # A timeout here ends the body without its last chunk: the client (and any cache) sees a
            # broken transfer, never a short segment.
            msg = await sub.next_msg(timeout=NEXT_CHUNK_SECONDS)
    finally:
        await sub.unsubscribe()
