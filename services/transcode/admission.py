"""Admission control: replicas share one durable work consumer of `stream.session.started`. A replica pulls a
session only while it has a free slot, and keeps the message unacknowledged (in progress) while it
transcodes; if the replica dies, JetStream redelivers the session to another replica after `ack_wait`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.bus import decode
from libs.obs.logging import get_logger
from proto import ingest

__all__ = ["DURABLE", "admit_forever"]

log = get_logger("transcode")

DURABLE = "transcode-work"
Runner = Callable[[ingest.SessionStarted], Awaitable[None]]


async def admit_forever(js: JetStreamContext, *, capacity: int, ack_wait: float, run: Runner) -> None:
    """Take sessions up to `capacity` at once and run each; acknowledge when its run returns."""
    config = ConsumerConfig(
        durable_name=DURABLE,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW,
        ack_wait=ack_wait,
        max_deliver=-1,
        filter_subject=ingest.SessionStarted.subject,
        max_ack_pending=10_000,
    )
    await js.add_consumer(ingest.STREAM.name, config)
    sub = await js.pull_subscribe_bind(DURABLE, stream=ingest.STREAM.name)
    slots = asyncio.Semaphore(capacity)
    tasks: set[asyncio.Task[None]] = set()
    log.info("admission_started", capacity=capacity, ack_wait=ack_wait)
    try:
        while True:
            await slots.acquire()
            msg = await _next(sub)
            if msg is None:
                slots.release()
                continue
            task = asyncio.create_task(_hold(msg, ack_wait, run, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _next(sub: Any) -> Any:
    try:
        msgs = await sub.fetch(1, timeout=2.0)
    except (TimeoutError, NatsTimeoutError):
        return None
    except Exception as exc:  # reconnecting
        log.warning("admission_fetch_failed", error=str(exc))
        await asyncio.sleep(1.0)
        return None
    return msgs[0] if msgs else None


async def _hold(msg: Any, ack_wait: float, run: Runner, slots: asyncio.Semaphore) -> None:
    """Run one session, telling JetStream it is in progress until it is done."""

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    alive = asyncio.create_task(keep_alive())
    try:
        try:
            event = decode(msg.data, ingest.SessionStarted)
        except msgspec.DecodeError as exc:
            log.error("admission_poison", error=str(exc))
            await msg.term()
            return
        try:
            await run(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("transcode_failed", session_id=event.session_id)
        await msg.ack()
    finally:
        alive.cancel()
        slots.release()
