"""The go-live fan-out: one inbox row per follower in set-based batches, each batch's live pushes
published on core NATS after its commit. Resumable: the job's cursor is committed with each batch, and
the unique (user_id, dedup_key) makes a repeated batch write nothing, so a kill mid fan-out followed by a
restart gives every follower exactly one notification."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
from nats.aio.client import Client

from libs.bus import utcnow
from libs.faults import failpoint
from libs.obs.logging import get_logger
from proto.notification import Notification, user_subject
from services.notification import store

__all__ = ["FanOut"]

log = get_logger("notification")

_encoder = msgspec.json.Encoder()


class FanOut:
    """Runs pending fan-out jobs: at start, when woken, and every `poll_seconds` (a crashed replica's)."""

    def __init__(self, pool: Any, nc: Client, *, batch: int, poll_seconds: float = 2.0) -> None:
        self.pool = pool
        self.nc = nc
        self.batch = batch
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A job was queued: look now."""
        self._wake.set()

    async def run(self) -> None:
        """Work until cancelled."""
        while True:
            try:
                async with self.pool.acquire() as conn:
                    jobs = await store.pending_fanouts(conn)
                for session_id in jobs:
                    await self.run_job(session_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or NATS is away: the jobs stay and are retried
                log.warning("fanout_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()

    async def run_job(self, session_id: str) -> int:
        """Fan one session out to the end; returns the inbox rows this process wrote."""
        started = time.perf_counter()
        written = 0
        while True:
            step = await self._step(session_id)
            if step is None:
                break
            count, done = step
            written += count
            if done:
                break
        if written:
            log.info(
                "fanout_done",
                session_id=session_id,
                notifications=written,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return written

    async def _step(self, session_id: str) -> tuple[int, bool] | None:
        """One batch in one transaction, then its pushes: (rows written, finished); None when there is
        no such job (finished, or another replica holds it)."""
        created_at = utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            job = await store.claim_fanout(conn, session_id=session_id)
            if job is None:
                return None
            seen, last, ids, users = await store.fanout_batch(
                conn, job=job, batch=self.batch, created_at=created_at
            )
            done = seen < self.batch
            await store.advance_fanout(conn, session_id=session_id, cursor=None if done else last)
        failpoint("notification.fanout_after_batch")
        await self._push(job, ids, users, created_at)
        return len(ids), done

    async def _push(self, job: Any, ids: list[int], users: list[str], created_at: Any) -> None:
        """Publish the batch's live pushes on core NATS, flushed once per batch."""
        template = Notification(
            id=0, kind="live", channel_id=job["channel_id"], channel_name=job["channel_name"],
            created_at=created_at,
        )  # fmt: skip
        publish = self.nc.publish
        for notification_id, user_id in zip(ids, users, strict=True):
            payload = _encoder.encode(msgspec.structs.replace(template, id=notification_id))
            await publish(user_subject(user_id), payload)
        await self.nc.flush()
