"""/api/v1/channels/{name}/emotes and /api/v1/emotes: relayed to the channel service, which checks and
re-encodes uploads; emote images are served from the JetStream object store, cacheable for good."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from nats.js.errors import ObjectNotFoundError

from libs.bus import NotFound
from proto import channel as pc
from services.gateway.auth import AuthUser, current_user
from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig
from services.gateway.routes.channel_images import IMMUTABLE_CACHE, ImageCache, _read_body

__all__ = ["ROUTES"]

EMOTE_TYPES = ("image/png", "image/gif", "image/webp")
UPLOAD_TIMEOUT_SECONDS = 30.0
SIGNED_IN = {"user": Provide(current_user)}
_EMOTE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_cache = ImageCache(max_bytes=16 * 1024 * 1024)


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@get("/api/v1/emotes/global", tags=["emotes"])
async def global_emotes(request: Request[Any, Any, Any]) -> pc.EmoteList:
    """The global emote set, usable in every chat."""
    return await _backend(request).call(pc.LIST_EMOTES, pc.ListEmotes(name=""))


@get("/api/v1/channels/{name:str}/emotes", tags=["emotes"])
async def channel_emotes(request: Request[Any, Any, Any], name: str) -> pc.EmoteList:
    """A channel's emotes (those with a tier are for subscribers of at least that tier)."""
    return await _backend(request).call(pc.LIST_EMOTES, pc.ListEmotes(name=name))


@post(
    "/api/v1/channels/{name:str}/emotes",
    dependencies=SIGNED_IN,
    request_max_body_size=None,
    tags=["emotes"],
)
async def upload_emote(
    request: Request[Any, Any, Any], name: str, user: AuthUser, code: str, tier: int = 0
) -> Response[pc.Emote]:
    """Add an emote (owner only): the image (PNG, GIF or WebP) is the raw body; `?code=` names it."""
    declared = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared not in EMOTE_TYPES:
        raise HTTPException(
            status_code=415,
            detail=f'Content-Type "{declared or "(none)"}" is not one of {", ".join(EMOTE_TYPES)}',
        )
    config: GatewayConfig = request.app.state.config
    data = await _read_body(request, config.max_image_body_bytes)
    payload = pc.UploadEmote(
        actor_id=user.id, name=name, code=code, tier=tier, content_type=declared, data=data
    )
    emote = await _backend(request).call(pc.UPLOAD_EMOTE, payload, timeout=UPLOAD_TIMEOUT_SECONDS)
    return Response(
        emote, status_code=201, headers={"Location": f"/api/v1/channels/{name}/emotes/{emote.code}"}
    )


@delete("/api/v1/channels/{name:str}/emotes/{code:str}", dependencies=SIGNED_IN, tags=["emotes"])
async def delete_emote(request: Request[Any, Any, Any], name: str, code: str, user: AuthUser) -> None:
    """Remove an emote (owner only)."""
    await _backend(request).call(pc.DELETE_EMOTE, pc.DeleteEmote(actor_id=user.id, name=name, code=code))


@get("/api/v1/emotes/{emote_id:str}/{size:str}", tags=["emotes"])
async def emote_image(request: Request[Any, Any, Any], emote_id: str, size: str) -> Response[bytes]:
    """One size (1x, 2x, 4x) of an emote as WebP; ids are never reused, so it is cacheable for good."""
    if _EMOTE_ID.match(emote_id) is None:
        raise NotFound(f'no emote "{emote_id[:40]}"', code="emote_not_found")
    if size not in pc.EMOTE_SIZES:
        raise NotFound(f'emote size "{size}" is not one of {", ".join(pc.EMOTE_SIZES)}', code="no_emote_size")
    key = pc.emote_object_name(emote_id, size)
    data = _cache.get(key)
    if data is None:
        bucket = await _backend(request).object_store(pc.EMOTE_BUCKET)
        try:
            result = await bucket.get(key)
        except ObjectNotFoundError:
            raise NotFound(f'no emote "{emote_id}"', code="emote_not_found") from None
        data = bytes(result.data)
        _cache.put(key, data)
    return Response(data, media_type="image/webp", headers={"Cache-Control": IMMUTABLE_CACHE})


ROUTES: list[Any] = [global_emotes, channel_emotes, upload_emote, delete_emote, emote_image]
