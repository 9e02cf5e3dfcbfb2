"""Wires the social service: config, schema, streams, endpoints, projections and the expiry sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from libs.bus import ConsumerSpec
from libs.obs.logging import get_logger
from libs.runtime import Runtime, ServiceConfig
from proto import channel as pc
from proto import identity
from proto import social as ps
from services.social.billing import Billing, BillingSettings
from services.social.directory import Directory
from services.social.handlers import FollowHandlers

__all__ = ["SocialConfig", "run"]

log = get_logger("social")

MIGRATIONS = Path(__file__).parent / "migrations"


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


async def sweep_forever(billing: Billing, every: float) -> None:
    """End lapsed subscriptions every `every` seconds (a database hiccup waits for the next round)."""
    while True:
        try:
            while await billing.sweep_once() > 0:
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("subscription_sweep_failed", error=str(exc))
        await asyncio.sleep(every)


async def run(config: SocialConfig) -> None:
    """Run the social service until a stop signal."""
    # identity and channel own IDENTITY and CHANNEL; declaring them here too (same spec from proto/)
    # lets our durable consumers bind whichever service starts first.
    streams = [ps.STREAM, identity.STREAM, pc.STREAM]
    async with Runtime("social", config, schema="social", migrations=MIGRATIONS, streams=streams) as rt:
        directory = Directory(rt.pool, rt.bus)
        follows = FollowHandlers(rt.pool, directory)
        billing = Billing(rt.pool, directory, config.billing())
        await rt.serve([*follows.routes(), *billing.routes()])
        rt.consume(
            ConsumerSpec(
                stream=identity.STREAM.name, durable="social-users", events=(identity.UserRegistered,)
            ),
            directory.on_user_registered,
        )
        rt.consume(
            ConsumerSpec(stream=pc.STREAM.name, durable="social-channels", events=(pc.ChannelCreated,)),
            directory.on_channel_created,
        )
        rt.spawn(sweep_forever(billing, config.subscription_sweep_seconds), name="subscription-sweep")
        await rt.wait()
