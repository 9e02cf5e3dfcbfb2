"""The channel service's settings (CPC_* variables, read once at start into a frozen Struct)."""

from __future__ import annotations

from libs.runtime import ServiceConfig

__all__ = ["ChannelConfig"]


class ChannelConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the channel service."""

    # Threads that decode and re-encode uploaded images (each may hold one 160 MB decoded picture).
    image_workers: int = 2
