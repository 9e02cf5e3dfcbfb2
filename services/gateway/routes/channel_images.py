"""/api/v1/channels/{name}/avatar and /banner: uploads relayed to the channel service, which checks and
re-encodes them; downloads read from the JetStream object store with ETag revalidation."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, put
from nats.js.errors import ObjectNotFoundError

from libs.bus import NotFound
from proto import channel as pc
from services.gateway.auth import AuthUser
from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig
from services.gateway.uploads import IMMUTABLE_CACHE, ImageCache, read_image

__all__ = ["ROUTES"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# Without ?v=<etag> the URL's content may change: caches revalidate with the ETag after five minutes.
# With ?v= equal to the current etag the bytes can never change under that URL.
SHORT_CACHE = "public, max-age=300"
UPLOAD_TIMEOUT_SECONDS = 30.0

_cache = ImageCache()


async def _upload(
    request: Request[Any, Any, Any],
    backend: Backend,
    config: GatewayConfig,
    name: str,
    kind: pc.ImageKind,
    user: AuthUser,
) -> pc.Image:
    declared, data = await read_image(request, IMAGE_TYPES, config.max_image_body_bytes)
    payload = pc.SetImage(actor_id=user.id, name=name, kind=kind, content_type=declared, data=data)
    return await backend.call(pc.SET_IMAGE, payload, timeout=UPLOAD_TIMEOUT_SECONDS)


def _etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison against a list of entity tags, or `*`."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == f'"{etag}"':
            return True
    return False


async def _image_bytes(backend: Backend, channel: pc.Channel, kind: str, image: pc.Image) -> bytes:
    data = _cache.get(image.etag)
    if data is None:
        bucket = await backend.object_store(pc.IMAGE_BUCKET)
        result = await bucket.get(pc.image_object_name(channel.id, kind, image.etag))
        data = bytes(result.data)
        _cache.put(image.etag, data)
    return data


async def _serve(
    request: Request[Any, Any, Any], backend: Backend, name: str, kind: pc.ImageKind, v: str
) -> Response[Any]:
    channel = await backend.call(pc.GET, pc.GetChannel(name=name))
    image: pc.Image | None = getattr(channel, kind)
    if image is None:
        raise NotFound(f'channel "{channel.name}" has no {kind}', code=f"no_{kind}")
    headers = {
        "ETag": f'"{image.etag}"',
        "Cache-Control": IMMUTABLE_CACHE if v == image.etag else SHORT_CACHE,
    }
    if _etag_matches(request.headers.get("if-none-match", ""), image.etag):
        return Response(content=b"", status_code=304, headers=headers)
    data = await _image_bytes(backend, channel, kind, image)
    return Response(content=data, media_type=image.content_type, headers=headers)


async def _download(
    request: Request[Any, Any, Any], backend: Backend, name: str, kind: pc.ImageKind, v: str
) -> Response[Any]:
    try:
        return await _serve(request, backend, name, kind, v)
    except ObjectNotFoundError:
        pass  # replaced between our two reads: the channel now names the new image
    try:
        return await _serve(request, backend, name, kind, v)
    except ObjectNotFoundError:
        raise NotFound(f'the {kind} of channel "{name}" is not stored', code=f"no_{kind}") from None


# The body limit is the gateway's setting (CPC_MAX_IMAGE_BODY_BYTES), enforced by read_image.
@put(
    "/api/v1/channels/{name:str}/avatar",
    request_max_body_size=None,
    tags=["channels"],
)
async def put_avatar(
    request: Request[Any, Any, Any], backend: Backend, config: GatewayConfig, name: str, user: AuthUser
) -> pc.Image:
    """Upload the channel's avatar (PNG, JPEG or WebP as the raw body; center-cropped to 256x256)."""
    return await _upload(request, backend, config, name, "avatar", user)


@put(
    "/api/v1/channels/{name:str}/banner",
    request_max_body_size=None,
    tags=["channels"],
)
async def put_banner(
    request: Request[Any, Any, Any], backend: Backend, config: GatewayConfig, name: str, user: AuthUser
) -> pc.Image:
    """Upload the channel's banner (PNG, JPEG or WebP as the raw body; fit into 1200x480)."""
    return await _upload(request, backend, config, name, "banner", user)


@get("/api/v1/channels/{name:str}/avatar", tags=["channels"])
async def get_avatar(
    request: Request[Any, Any, Any], backend: Backend, name: str, v: str = ""
) -> Response[Any]:
    """The channel's avatar; `?v=<etag>` makes the answer cacheable for good."""
    return await _download(request, backend, name, "avatar", v)


@get("/api/v1/channels/{name:str}/banner", tags=["channels"])
async def get_banner(
    request: Request[Any, Any, Any], backend: Backend, name: str, v: str = ""
) -> Response[Any]:
    """The channel's banner; `?v=<etag>` makes the answer cacheable for good."""
    return await _download(request, backend, name, "banner", v)


ROUTES: list[Any] = [put_avatar, put_banner, get_avatar, get_banner]
