"""Wires the gateway: config, NATS, token verifier, routes, problems, limits, CORS, metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from libs.bus import connect
from libs.obs.logging import get_logger
from services.gateway.auth import TokenVerifier
from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig
from services.gateway.dependencies import DEPENDENCIES
from services.gateway.problems import EXCEPTION_HANDLERS
from services.gateway.routes import ROUTES
from services.gateway.routes.schema import asyncapi_document

__all__ = ["create_app"]

log = get_logger("gateway")

HTTP_REQUESTS = Counter(
    "cpc_http_requests_total", "HTTP requests by method, route and status.", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "cpc_http_request_seconds",
    "HTTP request duration by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Count and time every HTTP request by its route template (never the raw path)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            route = str(scope.get("path_template") or "unmatched")
            method = scope.get("method", "")
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(elapsed)
            log.info("http_request", method=method, route=route, status=status, ms=round(elapsed * 1000, 2))

    return middleware


def create_app(config: GatewayConfig) -> Litestar:
    """The Litestar application for `config`."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        nc = await connect(config.nats_url, name="gateway")
        backend = Backend(nc, timeout=config.request_timeout_seconds)
        app.state.backend = backend
        app.state.verifier = TokenVerifier(backend)
        try:
            yield
        finally:
            # drain() raises while the client is reconnecting (NATS away): the lifespan's shutdown
            # would fail with a traceback and uvicorn exit 3; a connection that is not up is just closed.
            if nc.is_connected:
                await nc.drain()
            else:
                await nc.close()

    origins = [o.strip() for o in config.cors_origins.split(",") if o.strip()]
    return Litestar(
        route_handlers=ROUTES,
        dependencies=DEPENDENCIES,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[metrics_middleware],
        request_max_body_size=config.max_json_body_bytes,
        cors_config=CORSConfig(
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "If-Match"],
            expose_headers=["Location", "ETag", "Retry-After", "Link", "Accept-Post", "Accept-Patch"],
            max_age=600,
        )
        if origins
        else None,
        openapi_config=OpenAPIConfig(
            title="CPC Live API",
            version="1.0.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        state=_initial_state(config),
        debug=False,
    )


def _initial_state(config: GatewayConfig) -> Any:
    from litestar.datastructures import State

    return State({"config": config, "asyncapi": asyncapi_document()})
