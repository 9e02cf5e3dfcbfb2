"""The notification service's settings (CPC_* variables, read once at start)."""

from __future__ import annotations

from libs.runtime import ServiceConfig
from services.notification.domain import Retries

__all__ = ["NotificationConfig"]


class NotificationConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the notification service."""

    # A new session within this many seconds of the channel's previous end is a reconnect: no new
    # go-live notification.
    grace_seconds: float = 600.0
    fanout_batch: int = 5000
    # The workers are woken when work is queued; these polls pick up a crashed replica's work and retries.
    fanout_poll_seconds: float = 2.0
    # Allow http and loopback/private hosts for webhook callbacks and push endpoints (tests, closed nets).
    allow_private_callbacks: bool = False
    webhook_max_attempts: int = 6
    webhook_retry_base_seconds: float = 2.0
    webhook_timeout_seconds: float = 5.0
    webhook_poll_seconds: float = 0.25
    push_workers: int = 4
    push_max_attempts: int = 3
    push_retry_base_seconds: float = 30.0
    push_poll_seconds: float = 5.0
    vapid_subject: str = "mailto:admin@localhost"
    ticket_ttl_seconds: float = 30.0

    def webhook_retries(self) -> Retries:
        """How a webhook message is tried again."""
        return Retries(max_attempts=self.webhook_max_attempts, base_seconds=self.webhook_retry_base_seconds)

    def push_retries(self) -> Retries:
        """How a Web Push send is tried again."""
        return Retries(max_attempts=self.push_max_attempts, base_seconds=self.push_retry_base_seconds)
