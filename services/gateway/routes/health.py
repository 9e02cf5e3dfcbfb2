"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get

from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig
from services.gateway.problems import problem

__all__ = ["ROUTES"]


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def _ping(backend: Backend, name: str) -> bool:
    try:
        await backend.nc.request(f"$SRV.PING.{name}", b"", timeout=1.0)
    except Exception:
        return False
    return True


@get("/readyz", include_in_schema=False)
async def readyz(backend: Backend, config: GatewayConfig) -> Response[Any]:
    """NATS is reachable and every required service answers its ping."""
    names = config.required()
    if not backend.nc.is_connected:
        return problem(503, "NATS is not reachable", code="not_ready", services={})
    answers = await asyncio.gather(*(_ping(backend, n) for n in names))
    services = dict(zip(names, answers, strict=True))
    if not all(answers):
        missing = ", ".join(n for n, ok in services.items() if not ok)
        return problem(503, f"services not answering: {missing}", code="not_ready", services=services)
    return Response({"status": "ready", "services": services})


ROUTES: list[Any] = [healthz, readyz]
