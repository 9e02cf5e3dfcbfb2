"""The notification rules: grace periods, inbox cursors, webhook signing and callback checks. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from libs.bus import BadRequest, Forbidden
from proto.notification import WEBHOOK_TYPES, Notification

__all__ = [
    "check_callback_url",
    "check_limit",
    "check_owner",
    "check_secret",
    "check_webhook_type",
    "decode_cursor",
    "is_reconnect",
    "notification_view",
    "retry_delay",
    "sign",
]

LIMIT_MAX = 100
SECRET_MIN, SECRET_MAX = 10, 100
URL_MAX = 2048


def is_reconnect(
    previous_started: datetime | None, previous_ended: datetime | None, started_at: datetime, grace: float
) -> bool:
    """A start is a reconnect (no new notification) when the channel's previous session is still open
    or ended less than `grace` seconds before this one started."""
    if previous_started is None:
        return False
    if previous_ended is None:
        return True
    return started_at - previous_ended <= timedelta(seconds=grace)


def check_limit(limit: int) -> int:
    """A page size between 1 and 100."""
    if not 1 <= limit <= LIMIT_MAX:
        raise BadRequest(f"limit {limit} must be between 1 and {LIMIT_MAX}", code="invalid_limit")
    return limit


def decode_cursor(text: str) -> int | None:
    """The notification id a page ends at (the cursor is that id, as text); '' is the first page."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f'cursor "{text[:80]}" is not one this API returned', code="invalid_cursor")
    return int(text)


def notification_view(row: Mapping[str, Any]) -> Notification:
    """The Notification for an inbox row."""
    return Notification(
        id=row["id"],
        kind=row["kind"],
        channel_id=row["channel_id"],
        channel_name=row["channel_name"],
        actor_username=row["actor_username"],
        tier=row["tier"],
        created_at=row["created_at"],
        read=row["read_at"] is not None,
    )


def check_owner(owner_id: str | None, actor_id: str, channel: str) -> None:
    """Forbidden unless `actor_id` owns the channel."""
    if not actor_id or owner_id != actor_id:
        raise Forbidden(f'only the owner of channel "{channel}" may manage its webhooks', code="not_owner")


def check_webhook_type(kind: str) -> str:
    """One of the EventSub-like types."""
    if kind not in WEBHOOK_TYPES:
        raise BadRequest(
            f'webhook type "{kind}" is unknown; choose one of: {", ".join(WEBHOOK_TYPES)}',
            code="invalid_webhook_type",
        )
    return kind


def check_secret(secret: str) -> str:
    """A signing secret of 10 to 100 printable ASCII characters (as Twitch EventSub asks)."""
    if not SECRET_MIN <= len(secret) <= SECRET_MAX or not (secret.isascii() and secret.isprintable()):
        raise BadRequest(
            f"secret must be {SECRET_MIN} to {SECRET_MAX} printable ASCII characters", code="invalid_secret"
        )
    return secret


def check_callback_url(url: str, *, allow_private: bool, what: str = "callback") -> str:
    """An https URL to a public host; plain http and loopback/private addresses only when allowed
    (tests and closed networks), so a webhook cannot be aimed at our own internal services."""
    if len(url) > URL_MAX:
        raise BadRequest(f"{what} URL is longer than {URL_MAX} characters", code="invalid_url")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise BadRequest(
            f'{what} URL "{url[:200]}" must be an {" or ".join(schemes)} URL', code="invalid_url"
        )
    if not allow_private and _private_host(parts.hostname):
        raise BadRequest(f'{what} URL host "{parts.hostname}" is not a public address', code="invalid_url")
    return url


def _private_host(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not addr.is_global


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 over message id, timestamp and raw body (EventSub's scheme)."""
    mac = hmac.new(secret.encode(), message_id.encode() + timestamp.encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def retry_delay(attempt: int, base: float) -> float:
    """Seconds before try `attempt + 1`: base, 2 base, 4 base, ... (at most an hour)."""
    return float(min(3600.0, base * 2 ** max(0, attempt - 1)))
