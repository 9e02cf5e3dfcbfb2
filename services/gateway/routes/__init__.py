"""Route handlers, one module per area; each exposes ROUTES."""

from __future__ import annotations

from typing import Any

from services.gateway.routes import auth, channels, health, notifications, social, web, webrtc

ROUTES: list[Any] = [
    *health.ROUTES,
    *auth.ROUTES,
    *channels.ROUTES,
    *social.ROUTES,
    *notifications.ROUTES,
    *webrtc.ROUTES,
    # The web app catch-all goes last.
    *web.ROUTES,
]
