"""Wires the identity service: config, runtime (NATS, schema, outbox relay), signing key, endpoints.

Settings (environment, read once at start), besides those of every service:
  CPC_IDENTITY_SIGNING_KEY        PKCS#8 PEM of the Ed25519 key that signs access tokens (literal `\\n`
                                  allowed). Unset: a key is made at first start and kept in
                                  identity.signing_keys, shared by every replica.
  CPC_TOKEN_ISSUER, CPC_TOKEN_AUDIENCE             `iss` and `aud` of access tokens.
  CPC_ACCESS_TOKEN_TTL_SECONDS (900), CPC_REFRESH_TOKEN_TTL_SECONDS (30 days).
  CPC_LOGIN_MAX_ACCOUNT_FAILURES (5), CPC_LOGIN_MAX_ADDRESS_FAILURES (20),
  CPC_LOGIN_FAILURE_WINDOW_SECONDS (900)          failed sign-ins allowed per account / address.
  CPC_PASSWORD_HASH_WORKERS (4)                   threads hashing passwords (19 MiB each while busy).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec

import proto.identity
from libs.bus import route, utcnow
from libs.obs.logging import get_logger
from libs.runtime import Runtime, ServiceConfig
from proto.identity import FIND_USER, KEYS, LOGIN, LOGOUT, REFRESH, REGISTER, WHOAMI
from services.identity import store
from services.identity.domain import ThrottlePolicy
from services.identity.handlers import Handlers, TokenSettings
from services.identity.passwords import Passwords, load_common_passwords
from services.identity.signing import SigningKey, SigningKeyError, load_signing_key

__all__ = ["IdentityConfig", "run"]

log = get_logger("identity")

Positive = Annotated[int, msgspec.Meta(gt=0)]

PRUNE_INTERVAL_SECONDS = 600.0


class IdentityConfig(ServiceConfig, frozen=True, kw_only=True):
    """identity's settings (CPC_*); see the module docstring."""

    identity_signing_key: str = ""
    token_issuer: str = "cpc-live"
    token_audience: str = "cpc-live"
    access_token_ttl_seconds: Positive = 15 * 60
    refresh_token_ttl_seconds: Positive = 30 * 24 * 3600
    login_max_account_failures: Positive = 5
    login_max_address_failures: Positive = 20
    login_failure_window_seconds: Positive = 15 * 60
    password_hash_workers: Positive = 4


async def _prune_forever(pool: Any, window: timedelta) -> None:
    """Every few minutes, drop failures that no longer count and refresh tokens expired a day ago."""
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
        now = utcnow()
        try:
            async with pool.acquire() as conn:
                failures, tokens = await store.prune(
                    conn, failures_before=now - window, tokens_before=now - timedelta(days=1)
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The database is away for a moment: the rows wait for the next round.
            log.warning("identity_prune_failed", error=str(exc))
            continue
        log.info("identity_pruned", login_failures=failures, refresh_tokens=tokens)


def _handlers(
    config: IdentityConfig, *, pool: Any, passwords: Passwords, signing_key: SigningKey
) -> Handlers:
    """The request handlers with their settings."""
    return Handlers(
        pool=pool,
        passwords=passwords,
        signing_key=signing_key,
        tokens=TokenSettings(
            issuer=config.token_issuer,
            audience=config.token_audience,
            access_ttl_seconds=config.access_token_ttl_seconds,
            refresh_ttl_seconds=config.refresh_token_ttl_seconds,
        ),
        throttle=ThrottlePolicy(
            account_failures=config.login_max_account_failures,
            address_failures=config.login_max_address_failures,
            window=timedelta(seconds=config.login_failure_window_seconds),
        ),
        common_passwords=load_common_passwords(),
    )


async def run(config: IdentityConfig) -> None:
    """Start the identity service and serve until SIGTERM."""
    passwords = Passwords(workers=config.password_hash_workers)
    try:
        async with Runtime(
            name="identity",
            config=config,
            description="users, passwords, sessions and access-token signing keys",
            schema="identity",
            migrations=Path(__file__).parent / "migrations",
            streams=[proto.identity.STREAM],
        ) as rt:
            try:
                signing_key = await load_signing_key(rt.pool, config.identity_signing_key)
            except SigningKeyError as exc:
                raise SystemExit(f"identity: bad setting CPC_IDENTITY_SIGNING_KEY: {exc}") from None
            await passwords.start()
            handlers = _handlers(config, pool=rt.pool, passwords=passwords, signing_key=signing_key)
            await rt.serve(
                [
                    route(REGISTER, handlers.register),
                    route(LOGIN, handlers.login),
                    route(REFRESH, handlers.refresh),
                    route(LOGOUT, handlers.logout),
                    route(WHOAMI, handlers.whoami),
                    route(KEYS, handlers.keys),
                    route(FIND_USER, handlers.find_user),
                ]
            )
            window = timedelta(seconds=config.login_failure_window_seconds)
            rt.spawn(_prune_forever(rt.pool, window), name="identity-prune")
            await rt.wait()
    finally:
        passwords.close()
