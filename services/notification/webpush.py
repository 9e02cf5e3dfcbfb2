"""Web Push (RFC 8030/8291/8292): the VAPID key pair kept in our schema, and a sender that drains queued
sends through pywebpush on worker threads (encryption and HTTP never run on the event loop)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from concurrent.futures import Executor
from typing import Any

import msgspec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from libs.obs.logging import get_logger
from services.notification import delivery_store as ds
from services.notification.domain import notification_view, retry_delay

__all__ = ["PushSender", "load_vapid"]

log = get_logger("notification")

# The push service answers these for a subscription that is gone for good (RFC 8030 section 7.3).
GONE = (404, 410)
_encoder = msgspec.json.Encoder()


async def load_vapid(pool: Any) -> tuple[Vapid, str]:
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
    return Vapid.from_pem(row["private_pem"].encode()), row["public_key"]


def _public_key(vapid: Vapid) -> str:
    raw = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _payload(row: Any) -> bytes:
    note = notification_view(_as_dict(row))
    title = (
        f"{note.channel_name} is live" if note.kind == "live" else f"New {note.kind} on {note.channel_name}"
    )
    return _encoder.encode({"title": title, "url": f"/{note.channel_name}", "notification": note})


def _as_dict(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["id"] = data["notification_id"]
    return data


class PushSender:
    """Sends due Web Push messages; a 404/410 removes the subscription, other failures are retried."""

    def __init__(
        self, pool: Any, vapid: Vapid, executor: Executor, *, subject: str, max_attempts: int,
        retry_base_seconds: float, poll_seconds: float = 0.5,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.vapid = vapid
        self.executor = executor
        self.subject = subject
        self.max_attempts = max_attempts
        self.retry_base = retry_base_seconds
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Sends were queued: look now."""
        self._wake.set()

    async def run(self) -> None:
        """Send until cancelled."""
        while True:
            try:
                async with self.pool.acquire() as conn:
                    rows = await ds.claim_pushes(conn, limit=50, lease_seconds=60)
                await asyncio.gather(*(self._send(r) for r in rows))
                if rows:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("push_loop_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()

    def _post(self, row: Any) -> int:
        """Encrypt and POST one message (on a worker thread); returns the push service's status."""
        info = {"endpoint": row["endpoint"], "keys": {"p256dh": row["p256dh"], "auth": row["auth"]}}
        try:
            response = webpush(
                info,
                data=_payload(row).decode(),
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.subject},
                ttl=3600,
                timeout=10,
            )
        except WebPushException as exc:
            return exc.response.status_code if exc.response is not None else 0
        except Exception as exc:  # connection refused, DNS, TLS: worth another try
            log.info("push_send_error", endpoint=row["endpoint"][:80], error=str(exc))
            return 0
        return int(response.status_code)

    async def _send(self, row: Any) -> None:
        status = await asyncio.get_running_loop().run_in_executor(self.executor, self._post, row)
        async with self.pool.acquire() as conn:
            if 200 <= status < 300:
                await ds.finish_push(conn, delivery_id=row["id"])
                outcome = "sent"
            elif status in GONE:
                await ds.drop_push_subscription(conn, subscription_id=row["subscription_id"])
                outcome = "subscription_removed"
            elif row["attempts"] >= self.max_attempts:
                await ds.finish_push(conn, delivery_id=row["id"])
                outcome = "given_up"
            else:
                delay = retry_delay(row["attempts"], self.retry_base)
                await ds.retry_push(conn, delivery_id=row["id"], delay=delay)
                outcome = "retry"
        log.info("push_sent", subscription_id=row["subscription_id"], status=status, outcome=outcome)
