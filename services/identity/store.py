"""All SQL of the identity service (schema `identity`); every function takes a connection and returns
Structs (or plain values) rather than rows."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import msgspec
from asyncpg import Record

from libs.db import Connection
from proto.identity import UserCopy
from services.identity.domain import StoredKey, StoredToken, StoredUser

__all__ = [
    "clear_login_failures",
    "delete_login_attempt",
    "insert_login_attempt",
    "insert_refresh_family",
    "insert_refresh_token",
    "insert_signing_key",
    "insert_user",
    "lock_refresh_token",
    "lock_signing_keys",
    "mark_refresh_token_used",
    "newest_signing_key",
    "prune",
    "recent_login_failures",
    "refresh_family_of",
    "revoke_refresh_family",
    "update_password_hash",
    "user_by_id",
    "user_by_username",
    "user_copy",
]

# Constant text only; every value is a bound parameter.
_USER_SELECT = "SELECT id::text AS id, username, email, password_hash, created_at FROM users "
_COPY_SELECT = "SELECT id::text AS user_id, username FROM users "
_COPY_BY_ID = _COPY_SELECT + "WHERE id = $1::uuid"
_COPY_BY_NAME = _COPY_SELECT + "WHERE username = lower($1)"

T = TypeVar("T", bound=msgspec.Struct)


def _one(record: Record | None, struct: type[T]) -> T | None:
    return None if record is None else msgspec.convert(dict(record), struct)


async def insert_user(conn: Connection, *, id: str, username: str, email: str, password_hash: str) -> bool:
    """Insert a user; False when the username is taken."""
    created = await conn.fetchval(
        "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (username) DO NOTHING RETURNING true",
        id,
        username,
        email,
        password_hash,
    )
    return created is not None


async def user_by_username(conn: Connection, *, username: str) -> StoredUser | None:
    """The user named `username` (lower-cased), or None."""
    return _one(await conn.fetchrow(_USER_SELECT + "WHERE username = $1", username), StoredUser)


async def user_by_id(conn: Connection, *, id: str) -> StoredUser | None:
    """The user with `id`, or None."""
    return _one(await conn.fetchrow(_USER_SELECT + "WHERE id = $1", id), StoredUser)


async def user_copy(conn: Connection, *, by: str, value: str) -> UserCopy | None:
    """The user whose `by` (user_id, or username in any case) is `value`, as others copy it; or None."""
    return _one(await conn.fetchrow(_COPY_BY_ID if by == "user_id" else _COPY_BY_NAME, value), UserCopy)


async def update_password_hash(conn: Connection, *, id: str, password_hash: str) -> None:
    """Replace a user's password hash (after a parameter upgrade)."""
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", id, password_hash)


async def insert_login_attempt(conn: Connection, *, username: str, client_addr: str) -> tuple[int, datetime]:
    """Count a sign-in attempt as failed until it is known to succeed; returns its id and time."""
    attempt_id, failed_at = await conn.fetchrow(
        "INSERT INTO login_failures (username, client_addr) VALUES ($1, $2) RETURNING id, failed_at",
        username,
        client_addr,
    )
    return attempt_id, failed_at


async def recent_login_failures(
    conn: Connection, *, username: str, client_addr: str, since: datetime, exclude_id: int
) -> tuple[list[datetime], list[datetime]]:
    """Times of failures since `since` for the account, and for the client address (if one is given)."""
    rows = await conn.fetch(
        "SELECT failed_at, username = $1 AS by_account, client_addr = $2 AS by_address"
        " FROM login_failures"
        " WHERE failed_at > $3 AND id <> $4 AND (username = $1 OR ($2 <> '' AND client_addr = $2))",
        username,
        client_addr,
        since,
        exclude_id,
    )
    account = [failed_at for failed_at, by_account, _ in rows if by_account]
    address = [failed_at for failed_at, _, by_address in rows if by_address and client_addr]
    return account, address


async def delete_login_attempt(conn: Connection, *, id: int) -> None:
    """Forget one attempt (it was refused by the throttle before any password was checked)."""
    await conn.execute("DELETE FROM login_failures WHERE id = $1", id)


async def clear_login_failures(conn: Connection, *, username: str) -> None:
    """Forget an account's failures after it signed in."""
    await conn.execute("DELETE FROM login_failures WHERE username = $1", username)


async def insert_refresh_family(conn: Connection, *, id: str, user_id: str) -> None:
    """Start a refresh-token family (one per sign-in)."""
    await conn.execute("INSERT INTO refresh_families (id, user_id) VALUES ($1, $2)", id, user_id)


async def insert_refresh_token(
    conn: Connection,
    *,
    token_hash: bytes,
    family_id: str,
    user_id: str,
    expires_at: datetime,
    client_addr: str,
) -> None:
    """Store a refresh token by its digest."""
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, client_addr)"
        " VALUES ($1, $2, $3, $4, $5)",
        token_hash,
        family_id,
        user_id,
        expires_at,
        client_addr,
    )


async def lock_refresh_token(conn: Connection, *, token_hash: bytes) -> StoredToken | None:
    """The token with its family's state and its user's name, locked until the transaction ends; or None."""
    record = await conn.fetchrow(
        "SELECT t.family_id::text AS family_id, t.user_id::text AS user_id, u.username, t.expires_at,"
        " t.used_at IS NOT NULL AS used, f.revoked_at IS NOT NULL AS revoked"
        " FROM refresh_tokens t"
        " JOIN refresh_families f ON f.id = t.family_id"
        " JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = $1 FOR UPDATE OF t",
        token_hash,
    )
    return _one(record, StoredToken)


async def mark_refresh_token_used(conn: Connection, *, token_hash: bytes) -> None:
    """Record that a refresh token was exchanged; presenting it again is a replay."""
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash)


async def refresh_family_of(conn: Connection, *, token_hash: bytes) -> str | None:
    """The family id of a refresh token, or None when the token is unknown."""
    family_id: str | None = await conn.fetchval(
        "SELECT family_id::text FROM refresh_tokens WHERE token_hash = $1", token_hash
    )
    return family_id


async def revoke_refresh_family(conn: Connection, *, family_id: str, reason: str) -> None:
    """End a session: no token of the family is accepted again (the first reason is kept)."""
    await conn.execute(
        "UPDATE refresh_families SET revoked_at = now(), revoked_reason = $2"
        " WHERE id = $1 AND revoked_at IS NULL",
        family_id,
        reason,
    )


async def lock_signing_keys(conn: Connection) -> None:
    """Serialise key creation among replicas until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity.signing_keys'))")


async def newest_signing_key(conn: Connection) -> StoredKey | None:
    """The key that signs now, or None before the first start."""
    record = await conn.fetchrow(
        "SELECT kid, private_key_pem, public_key_pem FROM signing_keys ORDER BY created_at DESC LIMIT 1"
    )
    return _one(record, StoredKey)


async def insert_signing_key(
    conn: Connection, *, kid: str, private_key_pem: str, public_key_pem: str
) -> None:
    """Keep a new signing key."""
    await conn.execute(
        "INSERT INTO signing_keys (kid, private_key_pem, public_key_pem) VALUES ($1, $2, $3)",
        kid,
        private_key_pem,
        public_key_pem,
    )


async def prune(conn: Connection, *, failures_before: datetime, tokens_before: datetime) -> tuple[int, int]:
    """Delete failures older than the throttle window and long-expired refresh tokens; returns counts."""
    failures = await conn.execute("DELETE FROM login_failures WHERE failed_at < $1", failures_before)
    tokens = await conn.execute("DELETE FROM refresh_tokens WHERE expires_at < $1", tokens_before)
    await conn.execute(
        "DELETE FROM refresh_families f"
        " WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id)"
    )
    # asyncpg answers with the command tag, "DELETE <rows>".
    return int(failures.split()[-1]), int(tokens.split()[-1])
