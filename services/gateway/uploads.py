"""Image uploads and downloads shared by the avatar/banner and emote routes: the raw body read under a
size limit with its declared type checked, and an in-memory cache of stored images."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException

from libs.bus import PayloadTooLarge

__all__ = ["IMMUTABLE_CACHE", "ImageCache", "read_body", "read_image"]

# For URLs whose bytes can never change (content-addressed or never-reused ids).
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"


class ImageCache:
    """Image bytes by key (an etag or an object name), least recently used dropped first; keys are
    content-addressed, so an entry is never stale."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._max_bytes = max_bytes

    def get(self, key: str) -> bytes | None:
        """The cached bytes, or None."""
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Keep `data`, dropping the least recently used images beyond the size budget."""
        if key in self._items or len(data) > self._max_bytes:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self._max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
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


async def read_image(
    request: Request[Any, Any, Any], types: tuple[str, ...], limit: int
) -> tuple[str, bytes]:
    """(content type, bytes) of an image sent as the raw body: 415 unless its Content-Type is one of
    `types`, 413 beyond `limit` bytes. The limit is the gateway's setting, enforced here on the bytes
    received (a route-level limit would be fixed at import, before the settings are read)."""
    declared = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared not in types:
        raise HTTPException(
            status_code=415, detail=f'Content-Type "{declared or "(none)"}" is not one of {", ".join(types)}'
        )
    return declared, await read_body(request, limit)
