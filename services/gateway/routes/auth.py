"""/api/v1/auth and /api/v1/me: relayed to the identity service."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
