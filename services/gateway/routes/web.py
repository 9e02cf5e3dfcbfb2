"""The web app: static files from `CPC_WEB_ROOT` (web/dist), index.html for any other page path.

Registered last and as a catch-all, so every API route keeps priority; paths under the API prefixes never
fall back to the app (an unknown API path is a 404 problem, not a page)."""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import stat
import time
from pathlib import Path
from typing import Any

from litestar import Request, Response, get, route

from services.gateway.config import GatewayConfig
from services.gateway.problems import problem

__all__ = ["CSP", "ROUTES"]

# Never served as the app: these belong to the API, media, schema and probes.
RESERVED = ("api", "live", "vod", "schema", "healthz", "readyz")

# Chat and channel text are never HTML, and this keeps it so even if a bug slipped markup through.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("image/svg+xml", ".svg")


class FileCache:
    """The app's files in memory; each is checked against its size and mtime at most once a second, so a
    rebuild is picked up at once while hits cost no system call. The built app is a few MB."""

    def __init__(self, recheck_seconds: float = 1.0) -> None:
        self._recheck = recheck_seconds
        self._files: dict[Path, tuple[float, int, int, bytes, str]] = {}

    async def get(self, path: Path) -> tuple[bytes, str] | None:
        """(bytes, etag) of `path`, None when it is not a file."""
        now = time.monotonic()
        hit = self._files.get(path)
        if hit is not None and now - hit[0] < self._recheck:
            return hit[3], hit[4]
        try:
            st = await asyncio.to_thread(os.stat, path)
            if not stat.S_ISREG(st.st_mode):
                return None
            if hit is not None and hit[1] == st.st_mtime_ns and hit[2] == st.st_size:
                self._files[path] = (now, *hit[1:])
                return hit[3], hit[4]
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            self._files.pop(path, None)
            return None
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        self._files[path] = (now, st.st_mtime_ns, st.st_size, data, etag)
        return data, etag


_cache = FileCache()


def _root(config: GatewayConfig) -> Path:
    return Path(os.path.abspath(config.web_root))


async def _file(request: Request[Any, Any, Any], path: Path, cache: str) -> Response[Any] | None:
    found = await _cache.get(path)
    if found is None:
        return None
    data, etag = found
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(data, media_type=media_type, headers=headers)


def resolve(root: Path, path: str) -> tuple[Path | None, str]:
    """The file for URL path `path` under `root` and its Cache-Control; None when it is outside `root`."""
    # normpath folds ".." without touching the disk; anything that lands outside root is refused.
    candidate = Path(os.path.normpath(root / path))
    if root not in candidate.parents:
        return None, ""
    # Vite fingerprints everything under assets/, so those never change; the rest must revalidate.
    immutable = candidate.parent == root / "assets"
    return candidate, "public, max-age=31536000, immutable" if immutable else "no-cache"


def _not_found(request: Request[Any, Any, Any], detail: str, code: str = "not_found") -> Response[Any]:
    return problem(404, detail, code=code, instance=request.url.path)


@get(["/", "/{path:path}"], include_in_schema=False)
async def web_app(request: Request[Any, Any, Any], config: GatewayConfig, path: str = "") -> Response[Any]:
    """A file of the built web app, or its index.html for an app route (the SPA routes in the browser)."""
    path = path.lstrip("/")
    if path.split("/", 1)[0] in RESERVED:
        return _not_found(request, f"no route for {request.url.path}")
    root = _root(config)
    found, cache = resolve(root, path) if path else (None, "")
    if found is not None:
        response = await _file(request, found, cache)
        if response is not None:
            return response
    if "." in path.rsplit("/", 1)[-1]:
        # A missing file (an old asset, a typo) is a 404, not the app: a script tag must not get HTML.
        return _not_found(request, f"no file {request.url.path}")
    index = await _file(request, root / "index.html", "no-cache")
    if index is None:
        detail = f"the web app is not built: no {root / 'index.html'} (run make web)"
        return _not_found(request, detail, code="web_not_built")
    return index


@route(["/", "/{path:path}"], http_method=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def not_a_route(request: Request[Any, Any, Any], path: str = "") -> Response[Any]:
    """Other methods on a path no API route has: 404 under the API prefixes, 405 on app pages."""
    if path.lstrip("/").split("/", 1)[0] in RESERVED:
        return _not_found(request, f"no route for {request.method} {request.url.path}")
    detail = f"{request.method} is not allowed on {request.url.path}: web app pages only answer GET"
    return problem(405, detail, code="method_not_allowed", headers={"Allow": "GET"})


ROUTES: list[Any] = [web_app, not_a_route]
