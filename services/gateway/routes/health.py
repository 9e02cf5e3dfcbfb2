"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar import Response, get

from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig
from services.gateway.problems import problem

__all__ = ["ROUTES"]

# How long /readyz waits for each service's `$SRV.STATS` answer.
STATS_TIMEOUT = 1.0
# What a service reports in its stats' `data` (libs/runtime.py health()), and how /readyz names it.
DEPENDENCY_NAMES = {"postgres": "PostgreSQL"}


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is alive (also while NATS or PostgreSQL is away: only /readyz says that)."""
    return {"status": "ok"}


async def _health(backend: Backend, name: str) -> dict[str, bool] | None:
    """What service `name` says of its dependencies ({"postgres": False}); None if it does not answer."""
    try:
        msg = await backend.nc.request(f"$SRV.STATS.{name}", b"", timeout=STATS_TIMEOUT)
        stats = json.loads(msg.data)
    except Exception:
        return None
    health: dict[str, bool] = {}
    for endpoint in stats.get("endpoints") or []:
        for dependency, ok in (endpoint.get("data") or {}).items():
            health[dependency] = health.get(dependency, True) and bool(ok)
    return health


@get("/readyz", include_in_schema=False)
async def readyz(backend: Backend, config: GatewayConfig) -> Response[Any]:
    """NATS is reachable, every required service answers, and none reports a dependency away; a 503 names
    in `down` what is not ("nats", "postgres" or a service's name)."""
    names = config.required()
    if not backend.nc.is_connected:
        return problem(503, "NATS is not reachable", code="not_ready", down=["nats"], services={})
    reports = await asyncio.gather(*(_health(backend, n) for n in names))
    services = {n: report is not None for n, report in zip(names, reports, strict=True)}
    silent = [n for n, ok in services.items() if not ok]
    deps: dict[str, list[str]] = {}
    for name, report in zip(names, reports, strict=True):
        for dependency, ok in (report or {}).items():
            if not ok:
                deps.setdefault(dependency, []).append(name)
    if not silent and not deps:
        return Response({"status": "ready", "services": services})
    parts = [f"{DEPENDENCY_NAMES.get(d, d)} is unavailable (to {', '.join(who)})" for d, who in deps.items()]
    if silent:
        parts.append(f"services not answering: {', '.join(silent)}")
    return problem(503, "; ".join(parts), code="not_ready", down=[*deps, *silent], services=services)


ROUTES: list[Any] = [healthz, readyz]
