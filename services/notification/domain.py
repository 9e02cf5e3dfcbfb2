"""The notification rules: grace periods, inbox cursors and marks, preference lists, push keys, webhook
signing, callback checks and what a delivery attempt's outcome is. No I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from libs.bus import BadRequest, Forbidden
from libs.paging import check_limit
from proto.ingest import LiveSession
from proto.notification import WEBHOOK_TYPES

__all__ = [
    "Retries",
    "check_callback_url",
    "check_limit",
    "check_mark_read",
    "check_owner",
    "check_preference_lists",
    "check_push_keys",
    "check_secret",
    "check_webhook_type",
    "decode_cursor",
    "goes_live",
    "is_reconnect",
    "push_outcome",
    "retry_delay",
    "sign",
    "webhook_outcome",
]

MARK_MAX = 1000
PREF_CHANNELS_MAX = 1000
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


def goes_live(previous: LiveSession | None, started_at: datetime, grace: float) -> bool:
    """Whether a session starting at `started_at` notifies the followers (not a reconnect after
    `previous`, the channel's session before it)."""
    if previous is None:
        return True
    return not is_reconnect(previous.started_at, previous.ended_at, started_at, grace)


def decode_cursor(text: str) -> int | None:
    """The notification id a page ends at (the cursor is that id, as text); '' is the first page."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f'cursor "{text[:80]}" is not one this API returned', code="invalid_cursor")
    return int(text)


def check_mark_read(ids: list[int], every: bool) -> list[int] | None:
    """The ids to mark read (None: every one); either a non-empty list of ids or `all`, not both."""
    if every == bool(ids):
        raise BadRequest('send either "ids" (a non-empty list) or "all": true', code="invalid_mark_read")
    if len(ids) > MARK_MAX:
        raise BadRequest(f"{len(ids)} ids given; at most {MARK_MAX}", code="invalid_mark_read")
    if any(not 0 < i < 2**63 for i in ids):
        raise BadRequest("ids must be positive notification ids", code="invalid_mark_read")
    return None if every else ids


def check_preference_lists(muted: list[str], push: list[str]) -> tuple[list[str], list[str]]:
    """The muted and push channel names, lower case, sorted, without repeats, at most 1000 each."""
    muted_names = sorted({n.lower() for n in muted})
    push_names = sorted({n.lower() for n in push})
    if len(muted_names) > PREF_CHANNELS_MAX or len(push_names) > PREF_CHANNELS_MAX:
        raise BadRequest(f"at most {PREF_CHANNELS_MAX} channels per list", code="invalid_preferences")
    return muted_names, push_names


def _key_bytes(value: str, name: str, size: int) -> bytes:
    """A base64url push subscription key of `size` bytes, or BadRequest naming it."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise BadRequest(f"keys.{name} is not base64url", code="invalid_push_subscription") from None
    if len(raw) != size:
        raise BadRequest(
            f"keys.{name} must be {size} bytes, got {len(raw)}", code="invalid_push_subscription"
        )
    return raw


def check_push_keys(p256dh: str, auth: str) -> None:
    """A subscription's keys (RFC 8291): an uncompressed P-256 point and a 16-byte auth secret."""
    if _key_bytes(p256dh, "p256dh", 65)[0] != 4:
        raise BadRequest("keys.p256dh must be an uncompressed P-256 point", code="invalid_push_subscription")
    _key_bytes(auth, "auth", 16)


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


class Retries(msgspec.Struct, frozen=True, kw_only=True):
    """How a Web Push send or a webhook message is tried again: at most `max_attempts` tries, waiting
    `base_seconds`, then twice that, and so on."""

    max_attempts: int
    base_seconds: float

    def delay(self, attempt: int) -> float:
        """Seconds before the try after try number `attempt`."""
        return retry_delay(attempt, self.base_seconds)

    def exhausted(self, attempts: int) -> bool:
        """Whether try number `attempts` was the last one."""
        return attempts >= self.max_attempts


WebhookOutcome = Literal["delivered", "dead_letter", "retry"]
PushOutcome = Literal["sent", "subscription_removed", "given_up", "retry"]
# The push service answers these for a subscription that is gone for good (RFC 8030 section 7.3).
GONE = (404, 410)


def webhook_outcome(error: str, attempts: int, retries: Retries) -> WebhookOutcome:
    """What becomes of a webhook message after try number `attempts` failed with `error` ('' = accepted)."""
    if not error:
        return "delivered"
    return "dead_letter" if retries.exhausted(attempts) else "retry"


def push_outcome(status: int, attempts: int, retries: Retries) -> PushOutcome:
    """What becomes of a Web Push send after try number `attempts` got `status` (0: no answer)."""
    if 200 <= status < 300:
        return "sent"
    if status in GONE:
        return "subscription_removed"
    return "given_up" if retries.exhausted(attempts) else "retry"
