"""Web Push (RFC 8030/8291/8292): the VAPID key pair kept in our schema, and a sender that drains queued
sends through pywebpush on worker threads (encryption and HTTP never run on the event loop). The sender
is the step of the runtime's "webpush" worker, woken whenever sends are queued."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import Executor
from dataclasses import dataclass

import msgspec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from libs.db import Pool
from libs.obs.logging import get_logger
from services.notification import delivery_store as ds
from services.notification.delivery_store import DuePush
from services.notification.domain import Retries, push_outcome

__all__ = ["PushSender", "load_vapid", "push_payload"]

log = get_logger("notification")

_encoder = msgspec.json.Encoder()


async def load_vapid(pool: Pool) -> tuple[Vapid, str]:
    """The VAPID key pair (made and stored at first start) and its public key in base64url."""
    async with pool.acquire() as conn:
        row = await ds.vapid_key(conn)
        if row is None:
            fresh = Vapid()
            fresh.generate_keys()
            pem = fresh.private_pem().decode()
            await ds.put_vapid_key(conn, private_pem=pem, public_key=_public_key(fresh))
            row = await ds.vapid_key(conn)  # a replica may have stored its pair first: use that one
            log.info("vapid_key_created")
    assert row is not None
    return Vapid.from_pem(row.private_pem.encode()), row.public_key


def _public_key(vapid: Vapid) -> str:
    raw = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def push_payload(due: DuePush) -> bytes:
    """The message a service worker shows: a title, where a click goes, and the notification."""
    note = due.notification
    title = (
        f"{note.channel_name} is live" if note.kind == "live" else f"New {note.kind} on {note.channel_name}"
    )
    return _encoder.encode({"title": title, "url": f"/{note.channel_name}", "notification": note})


@dataclass(frozen=True, kw_only=True, slots=True)
class PushSender:
    """Sends due Web Push messages, a batch per `step`; a 404/410 removes the subscription, other failures
    are retried."""

    pool: Pool
    vapid: Vapid
    executor: Executor
    subject: str
    retries: Retries
    batch: int = 50
    lease_seconds: float = 60.0

    async def step(self) -> int:
        """Send one batch of due messages; how many were taken (more may wait when > 0)."""
        async with self.pool.acquire() as conn:
            due = await ds.claim_pushes(conn, limit=self.batch, lease_seconds=self.lease_seconds)
        await asyncio.gather(*(self._send(d) for d in due))
        return len(due)

    def _post(self, due: DuePush) -> int:
        """Encrypt and POST one message (on a worker thread); returns the push service's status."""
        info = {"endpoint": due.endpoint, "keys": {"p256dh": due.p256dh, "auth": due.auth}}
        try:
            response = webpush(
                info,
                data=push_payload(due).decode(),
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.subject},
                ttl=3600,
                timeout=10,
            )
        except WebPushException as exc:
            return exc.response.status_code if exc.response is not None else 0
        except Exception as exc:  # connection refused, DNS, TLS: worth another try
            log.info("push_send_error", endpoint=due.endpoint[:80], error=str(exc))
            return 0
        return int(response.status_code)

    async def _send(self, due: DuePush) -> None:
        status = await asyncio.get_running_loop().run_in_executor(self.executor, self._post, due)
        outcome = push_outcome(status, due.attempts, self.retries)
        async with self.pool.acquire() as conn:
            if outcome == "subscription_removed":
                await ds.drop_push_subscription(conn, subscription_id=due.subscription_id)
            elif outcome == "retry":
                error = f"push service answered {status}" if status else "push service did not answer"
                delay = self.retries.delay(due.attempts)
                await ds.retry(conn, "push_deliveries", delivery_id=due.id, delay=delay, error=error)
            else:  # sent, or given up
                await ds.finish(conn, "push_deliveries", delivery_id=due.id)
        log.info("push_sent", subscription_id=due.subscription_id, status=status, outcome=outcome)
