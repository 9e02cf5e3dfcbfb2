"""Wires the social service: its schema and stream, its copies of users and channels, its request
endpoints and the subscription expiry sweep."""

from __future__ import annotations

from pathlib import Path

from libs.bus import routes_of
from libs.runtime import Runtime
from proto import channel as pc
from proto import identity
from proto import social as ps
from services.social.config import SocialConfig
from services.social.handlers import SocialHandlers

__all__ = ["run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: SocialConfig) -> None:
    """Run the social service until a stop signal."""
    async with Runtime("social", config, schema="social", migrations=MIGRATIONS, streams=[ps.STREAM]) as rt:
        users = await rt.keep_copy(identity.USER)
        channels = await rt.keep_copy(pc.CHANNEL)
        handlers = SocialHandlers(pool=rt.pool, users=users, channels=channels, settings=config.billing())
        await rt.serve(routes_of(handlers))
        rt.worker("subscription-sweep", handlers.sweep_once, every=config.subscription_sweep_seconds)
        await rt.wait()
