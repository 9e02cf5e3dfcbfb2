"""identity's request handlers: register, login, refresh, logout, whoami, keys, lookup_user, and the prune
step. Thin: rules live in `domain`, SQL in `store`, hashing in `passwords`, signing in `signing`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from libs.bus import Conflict, NotFound, Unauthorized, answers, new_id, utcnow
from libs.db import Connection, Pool, add_event
from libs.obs.logging import get_logger
from proto import identity as pi
from proto.base import Lookup
from proto.identity import (
    Done,
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
from services.identity.config import TokenSettings
from services.identity.passwords import Passwords
from services.identity.signing import ALGORITHM, SigningKey

__all__ = ["Handlers"]

log = get_logger("identity")

INVALID_CREDENTIALS = "invalid username or password"


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """One method per identity request, marked with the Rpc it answers (`routes_of` collects them)."""

    pool: Pool
    passwords: Passwords
    signing_key: SigningKey
    tokens: TokenSettings
    throttle: domain.ThrottlePolicy
    common_passwords: frozenset[str]

    @answers(pi.REGISTER)
    async def register(self, req: RegisterRequest) -> User:
        """Create a user and record `UserRegistered` in the same transaction."""
        username = domain.check_username(req.username)
        email = domain.check_email(req.email)
        password = domain.check_password(req.password, username=username, common=self.common_passwords)
        password_hash = await self.passwords.hash(password)
        user_id = new_id()
        async with self.pool.acquire() as conn, conn.transaction():
            created = await store.insert_user(
                conn, id=user_id, username=username, email=email, password_hash=password_hash
            )
            if not created:
                raise Conflict(f'username "{username}" is already taken', code="username_taken")
            await add_event(conn, UserRegistered(user_id=user_id, username=username))
        log.info("user_registered", user_id=user_id, username=username)
        return User(id=user_id, username=username)

    @answers(pi.LOGIN)
    async def login(self, req: LoginRequest) -> TokenPair:
        """Check the password (throttled per account and per address) and start a session."""
        username = domain.login_name(req.username)
        address = domain.address_key(req.client_addr)
        user = await self._admit_login(username, address)
        password = domain.normalize_password(req.password)
        stored_hash = user.password_hash if user is not None else None
        # Verified even for an unknown user (against a dummy hash), so timing does not tell them apart.
        verified = await self.passwords.verify(stored_hash, password)
        if user is None or not verified:
            # The attempt row written by _admit_login stays: it now counts as a failure.
            log.info("login_failed", username=username, client_addr=address, known_user=user is not None)
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials")
        user_id = user.id
        rehash = self.passwords.needs_rehash(user.password_hash)
        new_hash = await self.passwords.hash(password) if rehash else None
        async with self.pool.acquire() as conn, conn.transaction():
            await store.clear_login_failures(conn, username=username)
            if new_hash is not None:
                await store.update_password_hash(conn, id=user_id, password_hash=new_hash)
            pair = await self._start_pair(conn, user_id=user_id, username=username, client_addr=address)
        log.info("login_succeeded", user_id=user_id, client_addr=address)
        return pair

    async def _admit_login(self, username: str, address: str) -> domain.StoredUser | None:
        """Count the attempt, refuse it past either limit, else return the user row (or None)."""
        async with self.pool.acquire() as conn:
            attempt_id, now = await store.insert_login_attempt(conn, username=username, client_addr=address)
            # Attempts in flight count too, so parallel guesses cannot overshoot the limit.
            account, by_address = await store.recent_login_failures(
                conn,
                username=username,
                client_addr=address,
                since=now - self.throttle.window,
                exclude_id=attempt_id,
            )
            refusal = domain.login_throttle(
                username=username,
                address=address,
                account_failures=account,
                address_failures=by_address,
                policy=self.throttle,
                now=now,
            )
            if refusal is not None:
                await store.delete_login_attempt(conn, id=attempt_id)
                log.warning("login_throttled", username=username, client_addr=address, detail=refusal.detail)
                raise refusal
            return await store.user_by_username(conn, username=username)

    @answers(pi.REFRESH)
    async def refresh(self, req: RefreshRequest) -> TokenPair:
        """Exchange a refresh token for a new pair in its family; a replayed token ends the family."""
        token_hash = domain.token_digest(req.refresh_token)
        async with self.pool.acquire() as conn, conn.transaction():
            token = await store.lock_refresh_token(conn, token_hash=token_hash)
            verdict = domain.judge_refresh(None if token is None else token.state(), now=utcnow())
            if token is not None and verdict is domain.RefreshVerdict.ROTATE:
                await store.mark_refresh_token_used(conn, token_hash=token_hash)
                return await self._issue(
                    conn,
                    user_id=token.user_id,
                    username=token.username,
                    family_id=token.family_id,
                    client_addr=domain.address_key(req.client_addr),
                )
            if token is not None and verdict is domain.RefreshVerdict.REUSED:
                await store.revoke_refresh_family(conn, family_id=token.family_id, reason="reuse")
        # Only refusals get here, after the revocation above has been committed.
        family = None if token is None else token.family_id
        log.warning("refresh_refused", verdict=verdict.value, family_id=family, client_addr=req.client_addr)
        raise domain.refresh_error(verdict)

    @answers(pi.LOGOUT)
    async def logout(self, req: LogoutRequest) -> Done:
        """End the session the refresh token belongs to (again is fine; an unknown token is not)."""
        token_hash = domain.token_digest(req.refresh_token)
        async with self.pool.acquire() as conn:
            family_id = await store.refresh_family_of(conn, token_hash=token_hash)
            if family_id is None:
                raise domain.refresh_error(domain.RefreshVerdict.UNKNOWN)
            await store.revoke_refresh_family(conn, family_id=family_id, reason="logout")
        log.info("logged_out", family_id=family_id)
        return Done()

    @answers(pi.WHOAMI)
    async def whoami(self, req: WhoamiRequest) -> Profile:
        """The profile of a user by id."""
        user_id = domain.check_user_id(req.user_id)
        async with self.pool.acquire() as conn:
            user = await store.user_by_id(conn, id=user_id)
        if user is None:
            raise NotFound(f'user "{user_id}" does not exist', code="user_not_found")
        return Profile(id=user_id, username=user.username, email=user.email, created_at=user.created_at)

    @answers(pi.LOOKUP_USER)
    async def lookup_user(self, req: Lookup) -> pi.UserCopy:
        """A user as other services keep a copy of it, by user_id or username (libs.replica asks this)."""
        by = domain.lookup_field(req.by)
        found = None
        if by != "user_id" or domain.is_uuid(req.value):
            async with self.pool.acquire() as conn:
                found = await store.user_copy(conn, by=by, value=req.value.strip())
        if found is None:
            raise NotFound(f'no user with {by} "{req.value}"', code="user_not_found")
        return found

    @answers(pi.KEYS)
    async def keys(self, req: KeysRequest) -> Keys:
        """The public key that verifies access tokens, with issuer and audience."""
        signing = self.signing_key
        key = PublicKey(kid=signing.kid, alg=ALGORITHM, public_key_pem=signing.public_key_pem)
        return Keys(keys=[key], issuer=self.tokens.issuer, audience=self.tokens.audience)

    async def _start_pair(
        self, conn: Connection, *, user_id: str, username: str, client_addr: str
    ) -> TokenPair:
        family_id = new_id()
        await store.insert_refresh_family(conn, id=family_id, user_id=user_id)
        return await self._issue(
            conn, user_id=user_id, username=username, family_id=family_id, client_addr=client_addr
        )

    async def _issue(
        self, conn: Connection, *, user_id: str, username: str, family_id: str, client_addr: str
    ) -> TokenPair:
        """A new access token and a new refresh token in `family_id` (stored by digest only)."""
        now = utcnow()
        refresh_token = secrets.token_urlsafe(32)
        await store.insert_refresh_token(
            conn,
            token_hash=domain.token_digest(refresh_token),
            family_id=family_id,
            user_id=user_id,
            expires_at=now + timedelta(seconds=self.tokens.refresh_ttl_seconds),
            client_addr=client_addr,
        )
        ttl = self.tokens.access_ttl_seconds
        claims = domain.access_claims(
            user_id=user_id,
            username=username,
            issuer=self.tokens.issuer,
            audience=self.tokens.audience,
            now=now,
            ttl_seconds=ttl,
            jti=new_id(),
        )
        access_token = self.signing_key.sign(claims)
        return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=ttl)

    async def prune(self) -> bool:
        """One prune round: drop failures that no longer count and refresh tokens expired a day ago."""
        now = utcnow()
        async with self.pool.acquire() as conn:
            failures, tokens = await store.prune(
                conn, failures_before=now - self.throttle.window, tokens_before=now - timedelta(days=1)
            )
        log.info("identity_pruned", login_failures=failures, refresh_tokens=tokens)
        return False
