"""/api/v1/auth and /api/v1/me: relayed to the identity service."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.di import Provide

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
from services.gateway.auth import AuthUser, current_user

__all__ = ["ROUTES"]


class RegisterBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    username: str
    password: str
    email: str


class LoginBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    username: str
    password: str


class RefreshBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    refresh_token: str


def _client_addr(request: Request[Any, Any, Any]) -> str:
    """The caller's address (uvicorn has already applied X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else ""


@post("/api/v1/auth/register", status_code=201, tags=["auth"])
async def register(request: Request[Any, Any, Any], data: RegisterBody) -> User:
    """Create an account."""
    payload = RegisterRequest(username=data.username, password=data.password, email=data.email)
    user: User = await request.app.state.backend.call(REGISTER, payload)
    return user


@post("/api/v1/auth/login", status_code=200, tags=["auth"])
async def login(request: Request[Any, Any, Any], data: LoginBody) -> TokenPair:
    """Sign in: an access token and a refresh token."""
    payload = LoginRequest(username=data.username, password=data.password, client_addr=_client_addr(request))
    pair: TokenPair = await request.app.state.backend.call(LOGIN, payload)
    return pair


@post("/api/v1/auth/refresh", status_code=200, tags=["auth"])
async def refresh(request: Request[Any, Any, Any], data: RefreshBody) -> TokenPair:
    """Exchange a refresh token for a new pair (the old refresh token stops working)."""
    payload = RefreshRequest(refresh_token=data.refresh_token, client_addr=_client_addr(request))
    pair: TokenPair = await request.app.state.backend.call(REFRESH, payload)
    return pair


@post("/api/v1/auth/logout", status_code=204, tags=["auth"])
async def logout(request: Request[Any, Any, Any], data: RefreshBody) -> None:
    """Sign out: the refresh token's session ends."""
    await request.app.state.backend.call(LOGOUT, LogoutRequest(refresh_token=data.refresh_token))


@get(
    "/api/v1/me",
    tags=["auth"],
    dependencies={"user": Provide(current_user)},
    security=[{"BearerToken": []}],
)
async def me(request: Request[Any, Any, Any], user: AuthUser) -> Profile:
    """The signed-in user's profile."""
    profile: Profile = await request.app.state.backend.call(WHOAMI, WhoamiRequest(user_id=user.id))
    return profile


ROUTES: list[Any] = [register, login, refresh, logout, me]
