"""All SQL of the identity service (schema `identity`); every function takes a connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
]


async def insert_user(conn: Any, *, id: str, username: str, email: str, password_hash: str) -> Any:
    """Insert a user; returns the row (with `created_at`), or None when the username is taken."""
    return await conn.fetchrow(
        "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (username) DO NOTHING RETURNING id, username, created_at",
        id,
        username,
        email,
        password_hash,
    )


async def user_by_username(conn: Any, *, username: str) -> Any:
    """The user named `username` (lower-cased), or None."""
    return await conn.fetchrow(
        "SELECT id, username, email, password_hash, created_at FROM users WHERE username = $1", username
    )


async def user_by_id(conn: Any, *, id: str) -> Any:
    """The user with `id`, or None."""
    return await conn.fetchrow(
        "SELECT id, username, email, password_hash, created_at FROM users WHERE id = $1", id
    )


async def update_password_hash(conn: Any, *, id: str, password_hash: str) -> None:
    """Replace a user's password hash (after a parameter upgrade)."""
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", id, password_hash)


async def insert_login_attempt(conn: Any, *, username: str, client_addr: str) -> tuple[int, datetime]:
    """Count a sign-in attempt as failed until it is known to succeed; returns its id and time."""
    row = await conn.fetchrow(
        "INSERT INTO login_failures (username, client_addr) VALUES ($1, $2) RETURNING id, failed_at",
        username,
        client_addr,
    )
    return row["id"], row["failed_at"]


async def recent_login_failures(
    conn: Any, *, username: str, client_addr: str, since: datetime, exclude_id: int
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
    account = [r["failed_at"] for r in rows if r["by_account"]]
    address = [r["failed_at"] for r in rows if r["by_address"] and client_addr]
    return account, address


async def delete_login_attempt(conn: Any, *, id: int) -> None:
    """Forget one attempt (it was refused by the throttle before any password was checked)."""
    await conn.execute("DELETE FROM login_failures WHERE id = $1", id)


async def clear_login_failures(conn: Any, *, username: str) -> None:
    """Forget an account's failures after it signed in."""
    await conn.execute("DELETE FROM login_failures WHERE username = $1", username)


async def insert_refresh_family(conn: Any, *, id: str, user_id: str) -> None:
    """Start a refresh-token family (one per sign-in)."""
    await conn.execute("INSERT INTO refresh_families (id, user_id) VALUES ($1, $2)", id, user_id)


async def insert_refresh_token(
    conn: Any, *, token_hash: bytes, family_id: str, user_id: str, expires_at: datetime, client_addr: str
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


async def lock_refresh_token(conn: Any, *, token_hash: bytes) -> Any:
    """The token with its family's state and its user's name, locked until the transaction ends; or None."""
    return await conn.fetchrow(
        "SELECT t.family_id, t.user_id, u.username, t.expires_at,"
        " t.used_at IS NOT NULL AS used, f.revoked_at IS NOT NULL AS revoked"
        " FROM refresh_tokens t"
        " JOIN refresh_families f ON f.id = t.family_id"
        " JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = $1 FOR UPDATE OF t",
        token_hash,
    )


async def mark_refresh_token_used(conn: Any, *, token_hash: bytes) -> None:
    """Record that a refresh token was exchanged; presenting it again is a replay."""
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash)


async def refresh_family_of(conn: Any, *, token_hash: bytes) -> Any:
    """The family id of a refresh token, or None when the token is unknown."""
    return await conn.fetchval("SELECT family_id FROM refresh_tokens WHERE token_hash = $1", token_hash)


async def revoke_refresh_family(conn: Any, *, family_id: Any, reason: str) -> None:
    """End a session: no token of the family is accepted again (the first reason is kept)."""
    await conn.execute(
        "UPDATE refresh_families SET revoked_at = now(), revoked_reason = $2"
        " WHERE id = $1 AND revoked_at IS NULL",
        family_id,
        reason,
    )


async def lock_signing_keys(conn: Any) -> None:
    """Serialise key creation among replicas until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity.signing_keys'))")


async def newest_signing_key(conn: Any) -> Any:
    """The key that signs now, or None before the first start."""
    return await conn.fetchrow(
        "SELECT kid, private_key_pem, public_key_pem FROM signing_keys ORDER BY created_at DESC LIMIT 1"
    )


async def insert_signing_key(conn: Any, *, kid: str, private_key_pem: str, public_key_pem: str) -> None:
    """Keep a new signing key."""
    await conn.execute(
        "INSERT INTO signing_keys (kid, private_key_pem, public_key_pem) VALUES ($1, $2, $3)",
        kid,
        private_key_pem,
        public_key_pem,
    )


async def prune(conn: Any, *, failures_before: datetime, tokens_before: datetime) -> tuple[int, int]:
    """Delete failures older than the throttle window and long-expired refresh tokens; returns counts."""
    failures = await conn.execute("DELETE FROM login_failures WHERE failed_at < $1", failures_before)
    tokens = await conn.execute("DELETE FROM refresh_tokens WHERE expires_at < $1", tokens_before)
    await conn.execute(
        "DELETE FROM refresh_families f"
        " WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id)"
    )
    # asyncpg answers with the command tag, "DELETE <rows>".
    return int(failures.split()[-1]), int(tokens.split()[-1])
