"""/api/v1/channels/{name}/avatar and /banner: uploads relayed to the channel service, which checks and
re-encodes them; downloads read from the JetStream object store with ETag revalidation."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from litestar import Request, Response, get, put
from litestar.di import Provide
from litestar.exceptions import HTTPException
from nats.js.errors import ObjectNotFoundError

from libs.bus import NotFound, PayloadTooLarge
from proto import channel as pc
from services.gateway.auth import AuthUser, current_user
from services.gateway.backend import Backend
from services.gateway.config import GatewayConfig

__all__ = ["ROUTES"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# Without ?v=<etag> the URL's content may change: caches revalidate with the ETag after five minutes.
# With ?v= equal to the current etag the bytes can never change under that URL.
SHORT_CACHE = "public, max-age=300"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
UPLOAD_TIMEOUT_SECONDS = 30.0


class ImageCache:
    """Image bytes by etag, least recently used dropped first; content-addressed, so never stale."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._max_bytes = max_bytes

    def get(self, etag: str) -> bytes | None:
        """The cached bytes, or None."""
        data = self._items.get(etag)
        if data is not None:
            self._items.move_to_end(etag)
        return data

    def put(self, etag: str, data: bytes) -> None:
        """Keep `data`, dropping the least recently used images beyond the size budget."""
        if etag in self._items or len(data) > self._max_bytes:
            return
        self._items[etag] = data
        self._size += len(data)
        while self._size > self._max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)


_cache = ImageCache()


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def _read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    too_large = PayloadTooLarge(
        f"image body is larger than the limit of {limit} bytes", code="image_too_large"
    )
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload(request: Request[Any, Any, Any], name: str, kind: pc.ImageKind, user: AuthUser) -> pc.Image:
    declared = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared not in IMAGE_TYPES:
        raise HTTPException(
            status_code=415,
            detail=f'Content-Type "{declared or "(none)"}" is not one of {", ".join(IMAGE_TYPES)}',
        )
    config: GatewayConfig = request.app.state.config
    data = await _read_body(request, config.max_image_body_bytes)
    payload = pc.SetImage(actor_id=user.id, name=name, kind=kind, content_type=declared, data=data)
    return await _backend(request).call(pc.SET_IMAGE, payload, timeout=UPLOAD_TIMEOUT_SECONDS)


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


async def _serve(request: Request[Any, Any, Any], name: str, kind: pc.ImageKind, v: str) -> Response[Any]:
    backend = _backend(request)
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


async def _download(request: Request[Any, Any, Any], name: str, kind: pc.ImageKind, v: str) -> Response[Any]:
    try:
        return await _serve(request, name, kind, v)
    except ObjectNotFoundError:
        pass  # replaced between our two reads: the channel now names the new image
    try:
        return await _serve(request, name, kind, v)
    except ObjectNotFoundError:
        raise NotFound(f'the {kind} of channel "{name}" is not stored', code=f"no_{kind}") from None


# The body limit is the gateway's setting (CPC_MAX_IMAGE_BODY_BYTES), enforced by _read_body on the
# bytes received; a route-level limit would be fixed at import, before the settings are read.
_SIGNED_IN = {"user": Provide(current_user)}


@put(
    "/api/v1/channels/{name:str}/avatar",
    dependencies=_SIGNED_IN,
    request_max_body_size=None,
    tags=["channels"],
)
async def put_avatar(request: Request[Any, Any, Any], name: str, user: AuthUser) -> pc.Image:
    """Upload the channel's avatar (PNG, JPEG or WebP as the raw body; center-cropped to 256x256)."""
    return await _upload(request, name, "avatar", user)


@put(
    "/api/v1/channels/{name:str}/banner",
    dependencies=_SIGNED_IN,
    request_max_body_size=None,
    tags=["channels"],
)
async def put_banner(request: Request[Any, Any, Any], name: str, user: AuthUser) -> pc.Image:
    """Upload the channel's banner (PNG, JPEG or WebP as the raw body; fit into 1200x480)."""
    return await _upload(request, name, "banner", user)


@get("/api/v1/channels/{name:str}/avatar", tags=["channels"])
async def get_avatar(request: Request[Any, Any, Any], name: str, v: str = "") -> Response[Any]:
    """The channel's avatar; `?v=<etag>` makes the answer cacheable for good."""
    return await _download(request, name, "avatar", v)


@get("/api/v1/channels/{name:str}/banner", tags=["channels"])
async def get_banner(request: Request[Any, Any, Any], name: str, v: str = "") -> Response[Any]:
    """The channel's banner; `?v=<etag>` makes the answer cacheable for good."""
    return await _download(request, name, "banner", v)


ROUTES: list[Any] = [put_avatar, put_banner, get_avatar, get_banner]
