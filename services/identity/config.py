"""identity's settings (CPC_* variables, read once at start) and the parts the handlers use.

Besides those of every service:
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

from datetime import timedelta
from typing import Annotated

import msgspec

from libs.runtime import ServiceConfig
from services.identity.domain import ThrottlePolicy

__all__ = ["PRUNE_SECONDS", "IdentityConfig", "TokenSettings"]

Positive = Annotated[int, msgspec.Meta(gt=0)]

# How often failures that no longer count and long-expired refresh tokens are dropped.
PRUNE_SECONDS = 600.0


class TokenSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Who issues access tokens, for whom, and how long tokens live."""

    issuer: str
    audience: str
    access_ttl_seconds: int
    refresh_ttl_seconds: int


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

    def tokens(self) -> TokenSettings:
        """The settings access and refresh tokens are issued under."""
        return TokenSettings(
            issuer=self.token_issuer,
            audience=self.token_audience,
            access_ttl_seconds=self.access_token_ttl_seconds,
            refresh_ttl_seconds=self.refresh_token_ttl_seconds,
        )

    def throttle(self) -> ThrottlePolicy:
        """How many failed sign-ins are allowed, per account and per address, in which window."""
        return ThrottlePolicy(
            account_failures=self.login_max_account_failures,
            address_failures=self.login_max_address_failures,
            window=timedelta(seconds=self.login_failure_window_seconds),
        )
