"""Outgoing webhooks, EventSub-like: signed POSTs with message id and timestamp headers, a challenge the
callback must echo before a webhook is enabled, retries with exponential backoff, then a dead letter."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from libs.obs.logging import get_logger
from services.notification import delivery_store as ds
from services.notification.domain import retry_delay, sign

__all__ = ["VERIFICATION", "WebhookSender", "headers_for", "verification_body"]

log = get_logger("notification")

VERIFICATION = "webhook_callback_verification"
NOTIFICATION = "notification"
_encoder = msgspec.json.Encoder()


def verification_body(webhook_id: str, kind: str, channel_id: str) -> dict[str, Any]:
    """The challenge message sent when a webhook is registered."""
    return {
        "challenge": secrets.token_urlsafe(24),
        "subscription": {"id": webhook_id, "type": kind, "condition": {"broadcaster_user_id": channel_id}},
    }


def headers_for(secret: str, message_id: str, message_type: str, kind: str, body: bytes) -> dict[str, str]:
    """The delivery headers; the signature covers id + timestamp + raw body, so a replay with another
    timestamp fails and receivers can refuse old timestamps."""
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "Content-Type": "application/json",
        "CPC-Message-Id": message_id,
        "CPC-Message-Timestamp": timestamp,
        "CPC-Message-Type": message_type,
        "CPC-Message-Signature": sign(secret, message_id, timestamp, body),
        "CPC-Subscription-Type": kind,
    }


class WebhookSender:
    """Delivers due webhook messages until cancelled."""

    def __init__(
        self, pool: Any, *, max_attempts: int, retry_base_seconds: float, timeout: float,
        poll_seconds: float = 0.25,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.max_attempts = max_attempts
        self.retry_base = retry_base_seconds
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Messages were queued: look now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                try:
                    async with self.pool.acquire() as conn:
                        rows = await ds.claim_deliveries(conn, limit=50, lease_seconds=self.timeout + 30)
                    await asyncio.gather(*(self._deliver(client, r) for r in rows))
                    if rows:
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("webhook_loop_failed", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                self._wake.clear()

    async def _post(self, client: httpx.AsyncClient, row: Any) -> str:
        """Send one message; '' when accepted, else why not."""
        body = _encoder.encode(row["body"])
        headers = headers_for(row["secret"], row["message_id"], row["message_type"], row["type"], body)
        try:
            response = await client.post(row["callback_url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if not 200 <= response.status_code < 300:
            return f"callback answered {response.status_code}"
        if row["message_type"] == VERIFICATION and response.text != row["body"]["challenge"]:
            return "callback did not echo the challenge"
        return ""

    async def _deliver(self, client: httpx.AsyncClient, row: Any) -> None:
        error = await self._post(client, row)
        async with self.pool.acquire() as conn, conn.transaction():
            if not error:
                await ds.finish_delivery(conn, delivery_id=row["id"])
                if row["message_type"] == VERIFICATION:
                    await ds.set_webhook_status(conn, webhook_id=row["webhook_id"], status="enabled")
                outcome = "delivered"
            elif row["attempts"] >= self.max_attempts:
                await ds.dead_letter(conn, delivery_id=row["id"], error=error)
                if row["message_type"] == VERIFICATION:
                    await ds.set_webhook_status(
                        conn, webhook_id=row["webhook_id"], status="verification_failed"
                    )
                outcome = "dead_letter"
            else:
                delay = retry_delay(row["attempts"], self.retry_base)
                await ds.retry_delivery(conn, delivery_id=row["id"], delay=delay, error=error)
                outcome = "retry"
        log.info(
            "webhook_delivery",
            webhook_id=row["webhook_id"],
            message_id=row["message_id"],
            attempt=row["attempts"],
            outcome=outcome,
            error=error,
        )
