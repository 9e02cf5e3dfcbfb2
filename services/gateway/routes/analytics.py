"""Creator analytics of a channel (owner only): viewer curves from edge, audience history from social; the
services check ownership and the parameters."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import Provide

from proto import edge as pe
from proto import social as ps
from services.gateway.auth import AuthUser, current_user
from services.gateway.backend import Backend

__all__ = ["ROUTES"]

SIGNED_IN = {"user": Provide(current_user)}


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@get("/api/v1/channels/{name:str}/analytics/viewers", dependencies=SIGNED_IN, tags=["analytics"])
async def viewer_history(
    request: Request[Any, Any, Any], name: str, user: AuthUser, session: str = "", bucket: int = 60
) -> pe.ViewerHistory:
    """The channel's recent sessions and the viewer curve of `session` (default: the latest), sampled
    every `bucket` seconds, with its peak and average (owner only)."""
    payload = pe.ViewerHistoryRequest(
        channel=name, actor_id=user.id, session_id=session, bucket_seconds=bucket
    )
    return await _backend(request).call(pe.VIEWER_HISTORY, payload)


@get("/api/v1/channels/{name:str}/analytics/audience", dependencies=SIGNED_IN, tags=["analytics"])
async def audience_history(
    request: Request[Any, Any, Any], name: str, user: AuthUser, days: int = 30
) -> ps.AudienceHistory:
    """Followers and active subscribers at the end of each of the last `days` days, UTC (owner only)."""
    payload = ps.HistoryRequest(channel=name, actor_id=user.id, days=days)
    return await _backend(request).call(ps.HISTORY, payload)


ROUTES: list[Any] = [viewer_history, audience_history]
