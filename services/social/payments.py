"""Payment-provider webhooks: the signature check (HMAC-SHA256 over `timestamp + "." + body`) and the
event payloads we accept. No I/O (a refusal is logged); docs/payments.md describes the wire format."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Literal

import msgspec

from libs.bus import BadRequest, Forbidden, Unauthorized
from libs.obs.logging import get_logger

__all__ = [
    "EVENT_TYPES",
    "GiftData",
    "ProviderEvent",
    "SubscriptionData",
    "authentic_event",
    "gift_data",
    "parse_event",
    "sign",
    "subscription_data",
    "verify",
]

log = get_logger("social")

# The types we act on; any other type is acknowledged and ignored (providers send many).
EVENT_TYPES = (
    "subscription.created",
    "subscription.renewed",
    "subscription.updated",
    "subscription.deleted",
    "gift.purchased",
)


class ProviderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope: the provider's unique event id, its type, when it was created, its data."""

    id: str
    type: str
    created: int = 0
    data: msgspec.Raw = msgspec.Raw(b"{}")


class SubscriptionData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of the subscription.* events: whose subscription to which channel, and what changed."""

    username: str
    channel: str
    tier: int | None = None
    period_end: datetime | None = None
    cancel_at_period_end: bool | None = None
    reason: Literal["cancelled", "refunded"] = "cancelled"


class GiftData(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of gift.purchased: one to `recipient`, or `count` to random followers of `channel`."""

    gifter: str
    channel: str
    tier: int = 1
    recipient: str = ""
    count: int = 0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header a provider sends: `t=<unix seconds>,v1=<hex HMAC-SHA256>`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        raise BadRequest(
            'signature header must look like "t=<unix seconds>,v1=<hex HMAC-SHA256>"',
            code="malformed_signature",
        )
    return timestamp, macs


def verify(header: str, body: bytes, *, secrets: list[str], now: float, tolerance: float) -> int:
    """Check the signature header against every configured secret; returns its timestamp."""
    if not header.strip():
        raise BadRequest("the CPC-Signature header is missing", code="missing_signature")
    timestamp, macs = _parse_header(header)
    expected = [sign(s, timestamp, body).rsplit("v1=", 1)[1] for s in secrets]
    if not any(hmac.compare_digest(m.encode(), e.encode()) for m in macs for e in expected):
        raise Unauthorized("webhook signature does not match the body", code="bad_signature")
    if abs(now - timestamp) > tolerance:
        raise Unauthorized(
            f"webhook signature timestamp {timestamp} is {abs(now - timestamp):.0f} s away from now;"
            f" at most {tolerance:g} s allowed",
            code="signature_expired",
        )
    return timestamp


_envelope = msgspec.json.Decoder(ProviderEvent)
_subscription = msgspec.json.Decoder(SubscriptionData)
_gift = msgspec.json.Decoder(GiftData)


def parse_event(body: bytes) -> ProviderEvent:
    """The envelope of a (signed) webhook body, or BadRequest naming the problem."""
    try:
        event = _envelope.decode(body)
    except msgspec.MsgspecError as exc:
        raise BadRequest(f"webhook body is not a valid event: {exc}", code="invalid_webhook") from None
    if not event.id or len(event.id) > 200:
        raise BadRequest("webhook event id must be 1 to 200 characters", code="invalid_webhook")
    return event


def subscription_data(event: ProviderEvent) -> SubscriptionData:
    """`data` of a subscription.* event."""
    try:
        return _subscription.decode(event.data)
    except msgspec.MsgspecError as exc:
        raise BadRequest(f"{event.type} data is invalid: {exc}", code="invalid_webhook") from None


def gift_data(event: ProviderEvent) -> GiftData:
    """`data` of a gift.purchased event."""
    try:
        return _gift.decode(event.data)
    except msgspec.MsgspecError as exc:
        raise BadRequest(f"{event.type} data is invalid: {exc}", code="invalid_webhook") from None


def authentic_event(
    header: str, body: bytes, *, secrets: list[str], now: float, tolerance: float
) -> ProviderEvent:
    """The provider's event once its signature checks out against one of `secrets`; Forbidden when no
    secret is configured (webhooks off), and a refused signature is logged."""
    if not secrets:
        raise Forbidden(
            "payment webhooks are turned off (CPC_PAYMENT_WEBHOOK_SECRET is not set)", code="webhooks_off"
        )
    try:
        verify(header, body, secrets=secrets, now=now, tolerance=tolerance)
    except (BadRequest, Unauthorized) as exc:
        log.warning("payment_webhook_refused", code=exc.code, detail=exc.detail, bytes=len(body))
        raise
    return parse_event(body)
