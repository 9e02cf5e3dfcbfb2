"""The social service's settings (CPC_* variables, read once at start) and the part the subscription rules
use."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from libs.runtime import ServiceConfig

__all__ = ["BillingSettings", "SocialConfig"]


class BillingSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the subscription rules need from the service's config."""

    period: timedelta
    webhook_secrets: list[str]
    webhook_tolerance_seconds: float
    grace: timedelta


class SocialConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the social service."""

    # Shared secret(s) of the payment provider's webhook signatures, comma-separated while rotating.
    payment_webhook_secret: str = ""
    payment_webhook_tolerance_seconds: float = 300.0
    # One subscription month, for grants and gifts (a provider's events carry their own period end).
    subscription_period_days: int = 30
    # How long after its period end an unrenewed subscription is ended (a late renewal keeps the streak).
    subscription_grace_seconds: float = 3600.0
    subscription_sweep_seconds: float = 30.0

    def billing(self) -> BillingSettings:
        """The settings the subscription rules use."""
        return BillingSettings(
            period=timedelta(days=self.subscription_period_days),
            webhook_secrets=[s.strip() for s in self.payment_webhook_secret.split(",") if s.strip()],
            webhook_tolerance_seconds=self.payment_webhook_tolerance_seconds,
            grace=timedelta(seconds=self.subscription_grace_seconds),
        )
