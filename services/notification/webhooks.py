"""Outgoing webhooks, EventSub-like: message bodies for the events we relay, signed POSTs with message id
and timestamp headers, a challenge the callback must echo before a webhook is enabled, retries with
exponential backoff, then a dead letter. The sender is a step of the runtime's "webhooks" worker."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from libs.db import Pool
from libs.obs.logging import get_logger
from proto.ingest import SessionEnded, SessionStarted
from proto.social import Followed, Subscribed
from services.notification import delivery_store as ds
from services.notification.delivery_store import DueDelivery
from services.notification.domain import Retries, sign, webhook_outcome

__all__ = [
    "NOTIFICATION",
    "VERIFICATION",
    "WebhookSender",
    "event_body",
    "headers_for",
    "message_id",
    "verification_body",
    "wrap",
]

log = get_logger("notification")

VERIFICATION = "webhook_callback_verification"
NOTIFICATION = "notification"
_NAMESPACE = uuid.UUID("6f1c2a9e-31f4-4c3e-9a55-0c0de11e0001")
_encoder = msgspec.json.Encoder()

Relayed = SessionStarted | SessionEnded | Followed | Subscribed


def message_id(event_id: str, webhook_id: str) -> str:
    """The same id for the same event to the same webhook, however often the event is redelivered."""
    return str(uuid.uuid5(_NAMESPACE, f"{event_id}/{webhook_id}"))


def event_body(event: Relayed) -> tuple[str, dict[str, Any]]:
    """The webhook type an event feeds and its `event` object."""
    if isinstance(event, SessionStarted):
        return "stream.online", {
            "id": event.session_id,
            "broadcaster_user_id": event.channel_id,
            "broadcaster_user_login": event.channel_name,
            "type": "live",
            "started_at": event.started_at.isoformat(),
        }
    if isinstance(event, SessionEnded):
        return "stream.offline", {
            "id": event.session_id,
            "broadcaster_user_id": event.channel_id,
            "broadcaster_user_login": event.channel_name,
            "ended_at": event.ended_at.isoformat(),
        }
    common = {
        "user_id": event.user_id,
        "user_login": event.username,
        "broadcaster_user_id": event.channel_id,
        "broadcaster_user_login": event.channel_name,
    }
    if isinstance(event, Followed):
        return "channel.follow", {**common, "followed_at": event.followed_at.isoformat()}
    return "channel.subscribe", {
        **common,
        "tier": str(event.tier * 1000),
        "is_gift": bool(event.gifted_by_id),
    }


def wrap(webhook_id: str, kind: str, channel_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The whole message body for one webhook."""
    subscription = {"id": webhook_id, "type": kind, "condition": {"broadcaster_user_id": channel_id}}
    return {"subscription": subscription, "event": event}


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


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookSender:
    """Delivers due webhook messages, a batch per `step` (the "webhooks" worker's step)."""

    pool: Pool
    client: httpx.AsyncClient
    retries: Retries
    lease_seconds: float
    batch: int = 50

    async def step(self) -> int:
        """Deliver one batch of due messages; how many were taken (more may wait when > 0)."""
        async with self.pool.acquire() as conn:
            due = await ds.claim_deliveries(conn, limit=self.batch, lease_seconds=self.lease_seconds)
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _post(self, due: DueDelivery) -> str:
        """Send one message; '' when accepted, else why not."""
        body = _encoder.encode(due.body)
        headers = headers_for(due.secret, due.message_id, due.message_type, due.type, body)
        try:
            response = await self.client.post(due.callback_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if not 200 <= response.status_code < 300:
            return f"callback answered {response.status_code}"
        if due.message_type == VERIFICATION and response.text != due.body["challenge"]:
            return "callback did not echo the challenge"
        return ""

    async def _deliver(self, due: DueDelivery) -> None:
        error = await self._post(due)
        outcome = webhook_outcome(error, due.attempts, self.retries)
        verifying = due.message_type == VERIFICATION
        async with self.pool.acquire() as conn, conn.transaction():
            if outcome == "delivered":
                await ds.finish(conn, "webhook_deliveries", delivery_id=due.id)
                if verifying:
                    await ds.set_webhook_status(conn, webhook_id=due.webhook_id, status="enabled")
            elif outcome == "dead_letter":
                await ds.dead_letter(conn, delivery_id=due.id, error=error)
                if verifying:
                    await ds.set_webhook_status(conn, webhook_id=due.webhook_id, status="verification_failed")
            else:
                delay = self.retries.delay(due.attempts)
                await ds.retry(conn, "webhook_deliveries", delivery_id=due.id, delay=delay, error=error)
        log.info(
            "webhook_delivery",
            webhook_id=due.webhook_id,
            message_id=due.message_id,
            attempt=due.attempts,
            outcome=outcome,
            error=error,
        )
