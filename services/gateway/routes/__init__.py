"""Route handlers, one module per area; each exposes ROUTES."""

from __future__ import annotations

from typing import Any

from services.gateway.routes import (
    analytics,
    auth,
    channels,
    chat,
    dash,
    emotes,
    health,
    notifications,
    schema,
    social,
    web,
    webrtc,
)

ROUTES: list[Any] = [
    *health.ROUTES,
    *auth.ROUTES,
    *channels.ROUTES,
    *social.ROUTES,
    *analytics.ROUTES,
    *notifications.ROUTES,
    *webrtc.ROUTES,
    *dash.ROUTES,
    *chat.ROUTES,
    *emotes.ROUTES,
    *schema.ROUTES,
    # The web app catch-all goes last.
    *web.ROUTES,
]
