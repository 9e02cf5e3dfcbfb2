"""Creator analytics of a channel (owner only): viewer curves from edge, audience history from social; the
services check ownership and the parameters."""

from __future__ import annotations

from typing import Any

from litestar import get

from proto import edge as pe
from proto import social as ps
from services.gateway.auth import AuthUser
from services.gateway.backend import Backend

__all__ = ["ROUTES"]


@get("/api/v1/channels/{name:str}/analytics/viewers", tags=["analytics"])
async def viewer_history(
    backend: Backend, name: str, user: AuthUser, session: str = "", bucket: int = 60
) -> pe.ViewerHistory:
    """The channel's recent sessions and the viewer curve of `session` (default: the latest), sampled
    every `bucket` seconds, with its peak and average (owner only)."""
    payload = pe.ViewerHistoryRequest(
        channel=name, actor_id=user.id, session_id=session, bucket_seconds=bucket
    )
    return await backend.call(pe.VIEWER_HISTORY, payload)


@get("/api/v1/channels/{name:str}/analytics/audience", tags=["analytics"])
async def audience_history(backend: Backend, name: str, user: AuthUser, days: int = 30) -> ps.AudienceHistory:
    """Followers and active subscribers at the end of each of the last `days` days, UTC (owner only)."""
    payload = ps.HistoryRequest(channel=name, actor_id=user.id, days=days)
    return await backend.call(ps.HISTORY, payload)


ROUTES: list[Any] = [viewer_history, audience_history]
