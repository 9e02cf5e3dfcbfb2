"""/api/v1/auth and /api/v1/me: relayed to the identity service."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post

from proto.identity import (
    LOGIN,
    LOGOUT,
    REFRESH,
    REGISTER,
    WHOAMI,
    LoginRequest,
    LogoutRequest,
    Profile,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    User,
    WhoamiRequest,
)
from services.gateway.auth import AuthUser
from services.gateway.backend import Backend
from services.gateway.bodies import Body

__all__ = ["ROUTES"]


class RegisterBody(Body, frozen=True, request=RegisterRequest):
    """POST /api/v1/auth/register body."""


class LoginBody(Body, frozen=True, request=LoginRequest, without=("client_addr",)):
    """POST /api/v1/auth/login body."""


class RefreshBody(Body, frozen=True, request=RefreshRequest, without=("client_addr",)):
    """POST /api/v1/auth/refresh and /logout body."""


def _client_addr(request: Request[Any, Any, Any]) -> str:
    """The caller's address (uvicorn has already applied X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else ""


@post("/api/v1/auth/register", status_code=201, tags=["auth"])
async def register(backend: Backend, data: RegisterBody) -> User:
    """Create an account."""
    return await backend.call(REGISTER, data.to(RegisterRequest))


@post("/api/v1/auth/login", status_code=200, tags=["auth"])
async def login(request: Request[Any, Any, Any], backend: Backend, data: LoginBody) -> TokenPair:
    """Sign in: an access token and a refresh token."""
    return await backend.call(LOGIN, data.to(LoginRequest, client_addr=_client_addr(request)))


@post("/api/v1/auth/refresh", status_code=200, tags=["auth"])
async def refresh(request: Request[Any, Any, Any], backend: Backend, data: RefreshBody) -> TokenPair:
    """Exchange a refresh token for a new pair (the old refresh token stops working)."""
    return await backend.call(REFRESH, data.to(RefreshRequest, client_addr=_client_addr(request)))


@post("/api/v1/auth/logout", status_code=204, tags=["auth"])
async def logout(backend: Backend, data: RefreshBody) -> None:
    """Sign out: the refresh token's session ends."""
    await backend.call(LOGOUT, data.to(LogoutRequest))


@get("/api/v1/me", tags=["auth"], security=[{"BearerToken": []}])
async def me(backend: Backend, user: AuthUser) -> Profile:
    """The signed-in user's profile."""
    return await backend.call(WHOAMI, WhoamiRequest(user_id=user.id))


ROUTES: list[Any] = [register, login, refresh, logout, me]
