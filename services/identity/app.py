"""Wires the identity service: runtime (NATS, schema, outbox relay), signing key, endpoints, the prune
worker. Settings: services/identity/config.py."""

from __future__ import annotations

from pathlib import Path

import proto.identity
from libs.bus import routes_of
from libs.runtime import Runtime
from services.identity.config import PRUNE_SECONDS, IdentityConfig
from services.identity.handlers import Handlers
from services.identity.passwords import Passwords, load_common_passwords
from services.identity.signing import SigningKeyError, load_signing_key

__all__ = ["IdentityConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: IdentityConfig) -> None:
    """Start the identity service and serve until SIGTERM."""
    passwords = Passwords(workers=config.password_hash_workers)
    try:
        async with Runtime(
            name="identity",
            config=config,
            description="users, passwords, sessions and access-token signing keys",
            schema="identity",
            migrations=MIGRATIONS,
            streams=[proto.identity.STREAM],
        ) as rt:
            try:
                signing_key = await load_signing_key(rt.pool, config.identity_signing_key)
            except SigningKeyError as exc:
                raise SystemExit(f"identity: bad setting CPC_IDENTITY_SIGNING_KEY: {exc}") from None
            await passwords.start()
            handlers = Handlers(
                pool=rt.pool,
                passwords=passwords,
                signing_key=signing_key,
                tokens=config.tokens(),
                throttle=config.throttle(),
                common_passwords=load_common_passwords(),
            )
            await rt.serve(routes_of(handlers))
            rt.worker("identity-prune", handlers.prune, every=PRUNE_SECONDS, first_after=PRUNE_SECONDS)
            await rt.wait()
    finally:
        passwords.close()
