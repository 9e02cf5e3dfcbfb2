"""The web app: static files from `CPC_WEB_ROOT` (web/dist), index.html for any other page path.

Registered last and as a catch-all, so every API route keeps priority; paths under the API prefixes never
fall back to the app (an unknown API path is a 404 problem, not a page)."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.response import File

from services.gateway.config import GatewayConfig
from services.gateway.problems import problem

__all__ = ["CSP", "ROUTES"]

# Never served as the app: these belong to the API, media, schema and probes.
RESERVED = ("api", "live", "schema", "healthz", "readyz")

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


def _root(request: Request[Any, Any, Any]) -> Path:
    config: GatewayConfig = request.app.state.config
    return Path(config.web_root).resolve()


def _file(path: Path, cache: str) -> File:
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    return File(path=path, media_type=media_type, headers=headers, content_disposition_type="inline")


def resolve(root: Path, path: str) -> tuple[Path | None, str]:
    """The file for URL path `path` under `root` and its Cache-Control; None when it is not a file there."""
    candidate = (root / path).resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None, ""
    # Vite fingerprints everything under assets/, so those never change; the rest must revalidate.
    immutable = candidate.parent == root / "assets"
    return candidate, "public, max-age=31536000, immutable" if immutable else "no-cache"


@get(["/", "/{path:path}"], include_in_schema=False, sync_to_thread=False)
def web_app(request: Request[Any, Any, Any], path: str = "") -> Response[Any] | File:
    """A file of the built web app, or its index.html for an app route (the SPA routes in the browser)."""
    path = path.lstrip("/")
    if path.split("/", 1)[0] in RESERVED:
        return problem(404, f"no route for {request.url.path}", code="not_found", instance=request.url.path)
    root = _root(request)
    index = root / "index.html"
    if not index.is_file():
        return problem(404, f"the web app is not built: no {index} (run make web)", code="web_not_built")
    found, cache = resolve(root, path) if path else (None, "")
    if found is not None:
        return _file(found, cache)
    last = path.rsplit("/", 1)[-1]
    if "." in last:
        # A missing file (an old asset, a typo) is a 404, not the app: a script tag must not get HTML.
        return problem(404, f"no file {request.url.path}", code="not_found", instance=request.url.path)
    return _file(index, "no-cache")


ROUTES: list[Any] = [web_app]
