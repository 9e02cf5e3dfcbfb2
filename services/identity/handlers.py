"""identity's request handlers: register, login, refresh, logout, whoami, keys. Thin: rules live in
`domain`, SQL in `store`, hashing in `passwords`, signing in `signing`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from libs.bus import Conflict, NotFound, Unauthorized, new_id, utcnow
from libs.db import add_event
from libs.obs.logging import get_logger
from proto.identity import (
    Done,
    FindUserRequest,
    Keys,
    KeysRequest,
    LoginRequest,
    LogoutRequest,
    Profile,
    PublicKey,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    User,
    UserRegistered,
    WhoamiRequest,
)
from services.identity import domain, store
from services.identity.passwords import Passwords
from services.identity.signing import ALGORITHM, SigningKey

__all__ = ["Handlers", "TokenSettings"]

log = get_logger("identity")

INVALID_CREDENTIALS = "invalid username or password"


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Who issues access tokens, for whom, and how long tokens live."""

    issuer: str
    audience: str
    access_ttl_seconds: int
    refresh_ttl_seconds: int


def _refresh_state(row: Any) -> domain.RefreshState | None:
    """What the rules need to know of a stored refresh token row."""
    if row is None:
        return None
    return domain.RefreshState(used=row["used"], revoked=row["revoked"], expires_at=row["expires_at"])


class Handlers:
    """One method per identity request; bound to their subjects in `app.py`."""

    def __init__(
        self,
        *,
        pool: Any,
        passwords: Passwords,
        signing_key: SigningKey,
        tokens: TokenSettings,
        throttle: domain.ThrottlePolicy,
        common_passwords: frozenset[str],
    ) -> None:
        self._pool = pool
        self._passwords = passwords
        self._key = signing_key
        self._tokens = tokens
        self._throttle = throttle
        self._common = common_passwords

    async def register(self, req: RegisterRequest) -> User:
        """Create a user and record `UserRegistered` in the same transaction."""
        username = domain.check_username(req.username)
        email = domain.check_email(req.email)
        password = domain.check_password(req.password, username=username, common=self._common)
        password_hash = await self._passwords.hash(password)
        user_id = new_id()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.insert_user(
                conn, id=user_id, username=username, email=email, password_hash=password_hash
            )
            if row is None:
                raise Conflict(f'username "{username}" is already taken', code="username_taken")
            await add_event(conn, UserRegistered(user_id=user_id, username=username))
        log.info("user_registered", user_id=user_id, username=username)
        return User(id=user_id, username=username)

    async def login(self, req: LoginRequest) -> TokenPair:
        """Check the password (throttled per account and per address) and start a session."""
        username = domain.login_name(req.username)
        address = domain.address_key(req.client_addr)
        user = await self._admit_login(username, address)
        password = domain.normalize_password(req.password)
        stored_hash = user["password_hash"] if user is not None else None
        if not await self._passwords.verify(stored_hash, password):
            # The attempt row written by _admit_login stays: it now counts as a failure.
            log.info("login_failed", username=username, client_addr=address, known_user=user is not None)
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials")
        user_id = str(user["id"])
        rehash = self._passwords.needs_rehash(user["password_hash"])
        new_hash = await self._passwords.hash(password) if rehash else None
        async with self._pool.acquire() as conn, conn.transaction():
            await store.clear_login_failures(conn, username=username)
            if new_hash is not None:
                await store.update_password_hash(conn, id=user_id, password_hash=new_hash)
            pair = await self._start_pair(conn, user_id=user_id, username=username, client_addr=address)
        log.info("login_succeeded", user_id=user_id, client_addr=address)
        return pair

    async def _admit_login(self, username: str, address: str) -> Any:
        """Count the attempt, refuse it past either limit, else return the user row (or None)."""
        async with self._pool.acquire() as conn:
            attempt_id, now = await store.insert_login_attempt(conn, username=username, client_addr=address)
            # Attempts in flight count too, so parallel guesses cannot overshoot the limit.
            account, by_address = await store.recent_login_failures(
                conn,
                username=username,
                client_addr=address,
                since=now - self._throttle.window,
                exclude_id=attempt_id,
            )
            refusal = domain.login_throttle(
                username=username,
                address=address,
                account_failures=account,
                address_failures=by_address,
                policy=self._throttle,
                now=now,
            )
            if refusal is not None:
                await store.delete_login_attempt(conn, id=attempt_id)
                log.warning("login_throttled", username=username, client_addr=address, detail=refusal.detail)
                raise refusal
            return await store.user_by_username(conn, username=username)

    async def refresh(self, req: RefreshRequest) -> TokenPair:
        """Exchange a refresh token for a new pair in its family; a replayed token ends the family."""
        token_hash = domain.token_digest(req.refresh_token)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.lock_refresh_token(conn, token_hash=token_hash)
            verdict = domain.judge_refresh(_refresh_state(row), now=utcnow())
            if verdict is domain.RefreshVerdict.ROTATE:
                await store.mark_refresh_token_used(conn, token_hash=token_hash)
                return await self._issue(
                    conn,
                    user_id=str(row["user_id"]),
                    username=row["username"],
                    family_id=str(row["family_id"]),
                    client_addr=domain.address_key(req.client_addr),
                )
            if verdict is domain.RefreshVerdict.REUSED:
                await store.revoke_refresh_family(conn, family_id=row["family_id"], reason="reuse")
        # Only refusals get here, after the revocation above has been committed.
        family = None if row is None else str(row["family_id"])
        log.warning("refresh_refused", verdict=verdict.value, family_id=family, client_addr=req.client_addr)
        raise domain.refresh_error(verdict)

    async def logout(self, req: LogoutRequest) -> Done:
        """End the session the refresh token belongs to (again is fine; an unknown token is not)."""
        token_hash = domain.token_digest(req.refresh_token)
        async with self._pool.acquire() as conn:
            family_id = await store.refresh_family_of(conn, token_hash=token_hash)
            if family_id is None:
                raise domain.refresh_error(domain.RefreshVerdict.UNKNOWN)
            await store.revoke_refresh_family(conn, family_id=family_id, reason="logout")
        log.info("logged_out", family_id=str(family_id))
        return Done()

    async def whoami(self, req: WhoamiRequest) -> Profile:
        """The profile of a user by id."""
        user_id = domain.check_user_id(req.user_id)
        async with self._pool.acquire() as conn:
            row = await store.user_by_id(conn, id=user_id)
        if row is None:
            raise NotFound(f'user "{user_id}" does not exist', code="user_not_found")
        return Profile(id=user_id, username=row["username"], email=row["email"], created_at=row["created_at"])

    async def find_user(self, req: FindUserRequest) -> User:
        """A user's id and canonical name by username, any case."""
        async with self._pool.acquire() as conn:
            row = await store.user_by_username(conn, username=req.username.strip().lower())
        if row is None:
            raise NotFound(f'no user named "{req.username}"', code="user_not_found")
        return User(id=str(row["id"]), username=row["username"])

    async def keys(self, req: KeysRequest) -> Keys:
        """The public key that verifies access tokens, with issuer and audience."""
        key = PublicKey(kid=self._key.kid, alg=ALGORITHM, public_key_pem=self._key.public_key_pem)
        return Keys(keys=[key], issuer=self._tokens.issuer, audience=self._tokens.audience)

    async def _start_pair(self, conn: Any, *, user_id: str, username: str, client_addr: str) -> TokenPair:
        family_id = new_id()
        await store.insert_refresh_family(conn, id=family_id, user_id=user_id)
        return await self._issue(
            conn, user_id=user_id, username=username, family_id=family_id, client_addr=client_addr
        )

    async def _issue(
        self, conn: Any, *, user_id: str, username: str, family_id: str, client_addr: str
    ) -> TokenPair:
        """A new access token and a new refresh token in `family_id` (stored by digest only)."""
        now = utcnow()
        refresh_token = secrets.token_urlsafe(32)
        await store.insert_refresh_token(
            conn,
            token_hash=domain.token_digest(refresh_token),
            family_id=family_id,
            user_id=user_id,
            expires_at=now + timedelta(seconds=self._tokens.refresh_ttl_seconds),
            client_addr=client_addr,
        )
        ttl = self._tokens.access_ttl_seconds
        claims = domain.access_claims(
            user_id=user_id,
            username=username,
            issuer=self._tokens.issuer,
            audience=self._tokens.audience,
            now=now,
            ttl_seconds=ttl,
            jti=new_id(),
        )
        return TokenPair(access_token=self._key.sign(claims), refresh_token=refresh_token, expires_in=ttl)
