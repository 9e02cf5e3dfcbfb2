"""The go-live fan-out: one inbox row per follower in set-based batches, each batch's live pushes
published on core NATS after its commit, and the Web Push worker woken when a batch queued sends.
Resumable: the job's cursor is committed with each batch, and the unique (user_id, dedup_key) makes a
repeated batch write nothing, so a kill mid fan-out followed by a restart gives every follower exactly one
notification. `step` is the runtime's "fanout" worker's step: one batch of each pending job."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.aio.client import Client

from libs.bus import utcnow
from libs.db import Pool
from libs.faults import failpoint
from libs.obs.logging import get_logger
from proto.notification import Notification, user_subject
from services.notification import store
from services.notification.store import FanoutBatch, FanoutJob

__all__ = ["FanOut"]

log = get_logger("notification")

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, kw_only=True, slots=True)
class FanOut:
    """Runs pending fan-out jobs a batch at a time; `wake_push` tells the Web Push worker of new sends."""

    pool: Pool
    nc: Client
    batch: int
    wake_push: Callable[[], None]

    async def step(self) -> bool:
        """One batch of every pending job (a crashed replica's too); True while a job has more."""
        async with self.pool.acquire() as conn:
            jobs = await store.pending_fanouts(conn)
        more = False
        for session_id in jobs:
            done = await self.run_batch(session_id)
            more = more or done is False
        return more

    async def run_batch(self, session_id: str) -> bool | None:
        """One batch of a job in one transaction, then its pushes: whether the job is finished; None when
        there is no such job (finished, or another replica holds it)."""
        started = time.perf_counter()
        created_at = utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            job = await store.claim_fanout(conn, session_id=session_id)
            if job is None:
                return None
            written = await store.fanout_batch(conn, job=job, batch=self.batch, created_at=created_at)
            done = written.seen < self.batch
            await store.advance_fanout(conn, session_id=session_id, cursor=None if done else written.last)
        failpoint("notification.fanout_after_batch")
        if written.pushes:
            self.wake_push()
        await self._publish(job, written, created_at)
        log.info(
            "fanout_done" if done else "fanout_batch",
            session_id=session_id,
            notifications=len(written.ids),
            pushes=written.pushes,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return done

    async def _publish(self, job: FanoutJob, written: FanoutBatch, created_at: datetime) -> None:
        """Publish the batch's live pushes on core NATS, flushed once per batch."""
        template = Notification(
            id=0, kind="live", channel_id=job.channel_id, channel_name=job.channel_name, created_at=created_at
        )
        publish = self.nc.publish
        for notification_id, user_id in zip(written.ids, written.users, strict=True):
            payload = _encoder.encode(msgspec.structs.replace(template, id=notification_id))
            await publish(user_subject(user_id), payload)
        await self.nc.flush()
