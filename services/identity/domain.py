"""identity's rules: usernames, passwords (OWASP ASVS), emails, sign-in throttling, refresh verdicts.
Pure functions and values, no I/O."""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import math
import re
import unicodedata
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from libs.bus import BadRequest, TooManyRequests, Unauthorized
from proto.identity import USER

__all__ = [
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "RefreshState",
    "RefreshVerdict",
    "StoredKey",
    "StoredToken",
    "StoredUser",
    "ThrottlePolicy",
    "access_claims",
    "address_key",
    "check_email",
    "check_password",
    "check_user_id",
    "check_username",
    "is_uuid",
    "judge_refresh",
    "login_name",
    "login_throttle",
    "lookup_field",
    "normalize_password",
    "parse_common_passwords",
    "refresh_error",
    "retry_after",
    "token_digest",
]

USERNAME = re.compile(r"[A-Za-z0-9_]{3,25}", re.ASCII)
PASSWORD_MIN = 8
PASSWORD_MAX = 128
EMAIL_MAX = 254
_EMAIL_LOCAL = re.compile(r"[^\s@\x00-\x1f\x7f]{1,64}")
_EMAIL_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_DOMAIN = re.compile(rf"(?:{_EMAIL_LABEL}\.)+[A-Za-z0-9-]{{2,63}}", re.ASCII)


def _shown(value: str, limit: int = 40) -> str:
    """`value` cut short for an error message, so a huge input is not echoed back whole."""
    return value if len(value) <= limit else value[:limit] + "…"


def check_username(raw: str) -> str:
    """The stored, lower-cased form of `raw`; BadRequest naming it unless it is 3-25 of [a-z0-9_]."""
    if not USERNAME.fullmatch(raw):
        raise BadRequest(
            f'username "{_shown(raw)}" must be 3 to 25 characters of a-z, 0-9 and _',
            code="invalid_username",
        )
    return raw.lower()


def login_name(raw: str) -> str:
    """The account a sign-in is for (and throttled under): lower-cased, cut to a bounded length.
    No stored name is longer than 25, so a longer one still matches nobody after the cut."""
    return raw.lower()[:64]


def normalize_password(password: str) -> str:
    """NFKC form, so the same characters typed on two keyboards hash alike (NIST SP 800-63B 5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


def parse_common_passwords(text: str) -> frozenset[str]:
    """The lower-cased passwords of a list with one per line; `#` comments and blank lines skipped."""
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line.lower() for line in lines if line and not line.startswith("#"))


def check_password(password: str, *, username: str, common: Collection[str]) -> str:
    """The normalized password, or BadRequest saying which rule it breaks (never echoing it)."""
    password = normalize_password(password)
    length = len(password)
    if length < PASSWORD_MIN:
        raise BadRequest(
            f"password is too short: {length} characters, at least {PASSWORD_MIN} are needed",
            code="weak_password",
        )
    if length > PASSWORD_MAX:
        raise BadRequest(
            f"password is too long: {length} characters, at most {PASSWORD_MAX} are allowed",
            code="weak_password",
        )
    if password.lower() in common:
        raise BadRequest(
            "password is one of the most common passwords and easy to guess; choose another",
            code="common_password",
        )
    if password.lower() == username.lower():
        raise BadRequest("password must not be the username", code="weak_password")
    return password


def check_email(raw: str) -> str:
    """`raw` trimmed with its domain lower-cased; BadRequest naming it unless it looks like an address."""
    email = raw.strip()
    local, at, domain = email.rpartition("@")
    if not (
        at
        and len(email) <= EMAIL_MAX
        and _EMAIL_LOCAL.fullmatch(local)
        and _EMAIL_DOMAIN.fullmatch(domain)
        and len(domain) <= 253
    ):
        raise BadRequest(
            f'email "{_shown(raw, 60)}" is not a valid address (want name@example.org)', code="invalid_email"
        )
    return f"{local}@{domain.lower()}"


def check_user_id(raw: str) -> str:
    """`raw` as a canonical UUID string, or BadRequest naming it."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadRequest(f'user id "{_shown(raw)}" is not a UUID', code="invalid_user_id") from None


def lookup_field(raw: str) -> str:
    """The user field a lookup is by (user_id or username, any case), or BadRequest naming it."""
    by = raw.strip().lower()
    if by not in USER.lookups:
        raise BadRequest(
            f'a user is looked up by user_id or username, not "{_shown(raw)}"', code="bad_lookup"
        )
    return by


def is_uuid(raw: str) -> bool:
    """Whether `raw` reads as a UUID (anything else names no user)."""
    try:
        uuid.UUID(raw.strip())
    except ValueError:
        return False
    return True


def address_key(addr: str) -> str:
    """What failures from one client are counted under: the IPv4 address, or the IPv6 /64 network."""
    try:
        ip = ipaddress.ip_address(addr.strip())
    except ValueError:
        return addr.strip()[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # One subscriber usually holds a whole /64; counting single addresses would let them rotate.
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failed sign-ins an account, and a client address, may have within `window`."""

    account_failures: int = 5
    address_failures: int = 20
    window: timedelta = timedelta(minutes=15)


def retry_after(failures: Sequence[datetime], *, limit: int, window: timedelta, now: datetime) -> int | None:
    """Whole seconds until fewer than `limit` of `failures` fall within `window`; None if already so."""
    recent = sorted((t for t in failures if t > now - window), reverse=True)
    if len(recent) < limit:
        return None
    # Once the limit-th newest failure leaves the window, only limit - 1 remain.
    return max(1, math.ceil((recent[limit - 1] + window - now).total_seconds()))


def login_throttle(
    *,
    username: str,
    address: str,
    account_failures: Sequence[datetime],
    address_failures: Sequence[datetime],
    policy: ThrottlePolicy,
    now: datetime,
) -> TooManyRequests | None:
    """The refusal for a sign-in attempt past either limit, or None when it may go ahead."""
    limits = [(account_failures, policy.account_failures, f'for "{username}"')]
    if address:
        limits.append((address_failures, policy.address_failures, f"from {address}"))
    for failures, limit, whose in limits:
        wait = retry_after(failures, limit=limit, window=policy.window, now=now)
        if wait is not None:
            return TooManyRequests(
                f"too many failed sign-ins {whose}; try again in {wait} seconds",
                code="login_throttled",
                retry_after=wait,
            )
    return None


def token_digest(token: str) -> bytes:
    """SHA-256 of a refresh token: what is stored, so a database leak yields no usable token."""
    return hashlib.sha256(token.encode()).digest()


class RefreshVerdict(enum.Enum):
    """What presenting a refresh token leads to."""

    ROTATE = "rotate"
    UNKNOWN = "unknown"
    REUSED = "reused"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class RefreshState:
    """What the store knows of a presented refresh token."""

    used: bool
    revoked: bool
    expires_at: datetime


class StoredUser(msgspec.Struct, frozen=True, kw_only=True):
    """A user as identity stores it."""

    id: str
    username: str
    email: str
    password_hash: str
    created_at: datetime


class StoredToken(msgspec.Struct, frozen=True, kw_only=True):
    """A presented refresh token with its family's state and its user's name."""

    family_id: str
    user_id: str
    username: str
    expires_at: datetime
    used: bool
    revoked: bool

    def state(self) -> RefreshState:
        """What the refresh rules judge."""
        return RefreshState(used=self.used, revoked=self.revoked, expires_at=self.expires_at)


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """A signing key as kept in identity.signing_keys."""

    kid: str
    private_key_pem: str
    public_key_pem: str


def judge_refresh(state: RefreshState | None, *, now: datetime) -> RefreshVerdict:
    """Rotate a live token; a used one is a replay (its family must be revoked), whatever else holds."""
    if state is None:
        return RefreshVerdict.UNKNOWN
    if state.used:
        return RefreshVerdict.REUSED
    if state.revoked:
        return RefreshVerdict.REVOKED
    if state.expires_at <= now:
        return RefreshVerdict.EXPIRED
    return RefreshVerdict.ROTATE


_REFRESH_ERRORS = {
    RefreshVerdict.UNKNOWN: ("refresh token is not recognised; sign in again", "invalid_refresh_token"),
    RefreshVerdict.REUSED: ("refresh token was already used; sign in again", "refresh_token_reused"),
    RefreshVerdict.REVOKED: ("refresh token was revoked; sign in again", "refresh_token_revoked"),
    RefreshVerdict.EXPIRED: ("refresh token has expired; sign in again", "refresh_token_expired"),
}


def refresh_error(verdict: RefreshVerdict) -> Unauthorized:
    """The error a refused refresh token answers with."""
    detail, code = _REFRESH_ERRORS[verdict]
    return Unauthorized(detail, code=code)


def access_claims(
    *, user_id: str, username: str, issuer: str, audience: str, now: datetime, ttl_seconds: int, jti: str
) -> dict[str, Any]:
    """The claims of an access token for `user_id`, valid `ttl_seconds` from `now`."""
    issued = int(now.timestamp())
    return {
        "sub": user_id,
        "name": username,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": jti,
    }
