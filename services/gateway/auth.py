"""Access-token checks at the edge: EdDSA JWTs verified with identity's public keys, `alg` pinned."""

from __future__ import annotations

import hmac
import time
from typing import Any

import jwt
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection

from libs.bus import Forbidden, Unauthorized
from proto.identity import KEYS, Keys, KeysRequest
from services.gateway.backend import Backend

__all__ = ["ALGORITHM", "AuthUser", "TokenVerifier", "current_user", "operator", "optional_user"]

# The one algorithm we accept, whatever a token's header claims.
ALGORITHM = "EdDSA"


class AuthUser(msgspec.Struct, frozen=True):
    """The signed-in user a request acts for."""

    id: str
    username: str


class TokenVerifier:
    """Verifies access tokens locally; fetches identity's keys at first use and when a new `kid` shows."""

    def __init__(self, backend: Backend, *, refetch_interval: float = 5.0) -> None:
        self._backend = backend
        self._keys: dict[str, Any] = {}
        self._issuer = ""
        self._audience = ""
        self._fetched_at = 0.0
        self._refetch_interval = refetch_interval

    async def _refresh(self) -> None:
        keys: Keys = await self._backend.call(KEYS, KeysRequest())
        self._keys = {k.kid: _load_pem(k.public_key_pem) for k in keys.keys if k.alg == ALGORITHM}
        self._issuer, self._audience = keys.issuer, keys.audience
        self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> AuthUser:
        """Return the token's user, or raise Unauthorized saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("access token is malformed", code="invalid_token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(
                f'access token algorithm "{header.get("alg")}" is not accepted', code="invalid_token"
            )
        kid = header.get("kid", "")
        if kid not in self._keys and time.monotonic() - self._fetched_at > self._refetch_interval:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("access token is signed by an unknown key", code="invalid_token")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token has expired", code="token_expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"access token is invalid: {exc}", code="invalid_token") from None
        return AuthUser(id=str(claims["sub"]), username=str(claims.get("name", "")))


def _load_pem(pem: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem.encode())


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    value = connection.headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized('Authorization header must be "Bearer <access token>"', code="invalid_token")
    return token.strip()


async def current_user(request: Request[Any, Any, Any]) -> AuthUser:
    """Dependency: the signed-in user, or 401."""
    token = _bearer(request)
    if token is None:
        raise Unauthorized("sign in first: no access token in the Authorization header", code="missing_token")
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


async def optional_user(request: Request[Any, Any, Any]) -> AuthUser | None:
    """Dependency: the signed-in user when a token is sent, else None (a bad token is still 401)."""
    token = _bearer(request)
    if token is None:
        return None
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


async def operator(request: Request[Any, Any, Any]) -> bool:
    """Dependency for operator routes: `X-Operator-Token` must equal CPC_OPERATOR_TOKEN (when set)."""
    expected: str = request.app.state.config.operator_token
    if not expected:
        raise Forbidden("the operator API is turned off (CPC_OPERATOR_TOKEN is not set)", code="operator_off")
    given = request.headers.get("x-operator-token", "")
    if not given:
        raise Unauthorized("operator routes need the X-Operator-Token header", code="missing_operator_token")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("X-Operator-Token is wrong", code="invalid_operator_token")
    return True
