"""What route handlers receive by parameter name, provided once for the whole app (Litestar DI).

A handler asks for what it needs by naming it:
- `backend: Backend`: the one door to services (NATS requests, object stores);
- `config: GatewayConfig`: the settings read at start;
- `user: AuthUser`: the signed-in user (401 without a valid access token);
- `viewer: AuthUser | None`: the signed-in user when a token is sent, else None;
- `is_operator: bool`: the caller sent the right X-Operator-Token (401/403 otherwise)."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from services.gateway.auth import current_user, operator, optional_user
from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig

__all__ = ["DEPENDENCIES"]


def _backend(state: State) -> Backend:
    backend: Backend = state.backend
    return backend


def _config(state: State) -> GatewayConfig:
    config: GatewayConfig = state.config
    return config


DEPENDENCIES: dict[str, Provide] = {
    "backend": Provide(_backend, sync_to_thread=False),
    "config": Provide(_config, sync_to_thread=False),
    "user": Provide(current_user),
    "viewer": Provide(optional_user),
    "is_operator": Provide(operator),
}
