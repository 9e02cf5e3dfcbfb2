"""/api/v1/channels/{name}/emotes and /api/v1/emotes: relayed to the channel service, which checks and
re-encodes uploads; emote images are served from the JetStream object store, cacheable for good."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, delete, get, post
from nats.js.errors import ObjectNotFoundError

from libs.bus import NotFound
from proto import channel as pc
from services.gateway.auth import AuthUser
from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig
from services.gateway.uploads import IMMUTABLE_CACHE, ImageCache, read_image

__all__ = ["ROUTES"]

EMOTE_TYPES = ("image/png", "image/gif", "image/webp")
UPLOAD_TIMEOUT_SECONDS = 30.0
_EMOTE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_cache = ImageCache(max_bytes=16 * 1024 * 1024)


@get("/api/v1/emotes/global", tags=["emotes"])
async def global_emotes(backend: Backend) -> pc.EmoteList:
    """The global emote set, usable in every chat."""
    return await backend.call(pc.LIST_EMOTES, pc.ListEmotes(name=""))


@get("/api/v1/channels/{name:str}/emotes", tags=["emotes"])
async def channel_emotes(backend: Backend, name: str) -> pc.EmoteList:
    """A channel's emotes (those with a tier are for subscribers of at least that tier)."""
    return await backend.call(pc.LIST_EMOTES, pc.ListEmotes(name=name))


@post("/api/v1/channels/{name:str}/emotes", request_max_body_size=None, tags=["emotes"])
async def upload_emote(
    request: Request[Any, Any, Any],
    backend: Backend,
    config: GatewayConfig,
    name: str,
    user: AuthUser,
    code: str,
    tier: int = 0,
) -> Response[pc.Emote]:
    """Add an emote (owner only): the image (PNG, GIF or WebP) is the raw body; `?code=` names it."""
    declared, data = await read_image(request, EMOTE_TYPES, config.max_image_body_bytes)
    payload = pc.UploadEmote(
        actor_id=user.id, name=name, code=code, tier=tier, content_type=declared, data=data
    )
    emote = await backend.call(pc.UPLOAD_EMOTE, payload, timeout=UPLOAD_TIMEOUT_SECONDS)
    return Response(
        emote, status_code=201, headers={"Location": f"/api/v1/channels/{name}/emotes/{emote.code}"}
    )


@delete("/api/v1/channels/{name:str}/emotes/{code:str}", tags=["emotes"])
async def delete_emote(backend: Backend, name: str, code: str, user: AuthUser) -> None:
    """Remove an emote (owner only)."""
    await backend.call(pc.DELETE_EMOTE, pc.DeleteEmote(actor_id=user.id, name=name, code=code))


@get("/api/v1/emotes/{emote_id:str}/{size:str}", tags=["emotes"])
async def emote_image(backend: Backend, emote_id: str, size: str) -> Response[bytes]:
    """One size (1x, 2x, 4x) of an emote as WebP; ids are never reused, so it is cacheable for good."""
    if _EMOTE_ID.match(emote_id) is None:
        raise NotFound(f'no emote "{emote_id[:40]}"', code="emote_not_found")
    if size not in pc.EMOTE_SIZES:
        raise NotFound(f'emote size "{size}" is not one of {", ".join(pc.EMOTE_SIZES)}', code="no_emote_size")
    key = pc.emote_object_name(emote_id, size)
    data = _cache.get(key)
    if data is None:
        bucket = await backend.object_store(pc.EMOTE_BUCKET)
        try:
            result = await bucket.get(key)
        except ObjectNotFoundError:
            raise NotFound(f'no emote "{emote_id}"', code="emote_not_found") from None
        data = bytes(result.data)
        _cache.put(key, data)
    return Response(data, media_type="image/webp", headers={"Cache-Control": IMMUTABLE_CACHE})


ROUTES: list[Any] = [global_emotes, channel_emotes, upload_emote, delete_emote, emote_image]
