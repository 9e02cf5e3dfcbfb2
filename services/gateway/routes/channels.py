"""/api/v1/channels: relayed to the channel service."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
