"""The ingest service's config (CPC_*), read from the environment once at start into a frozen Struct."""

from __future__ import annotations

from datetime import timedelta

from libs.media.ice import MediaServiceConfig

__all__ = ["IngestConfig"]


class IngestConfig(MediaServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the ingest service."""

    # A broadcaster whose connection dropped may come back into the same session for this long.
    grace_seconds: float = 10.0
    # A process that has not refreshed its sessions for this long is taken for gone.
    stale_seconds: float = 6.0
    media_timeout_seconds: float = 5.0
    connect_timeout_seconds: float = 15.0
    # How often a process refreshes its sessions and ends those whose grace period passed.
    maintain_seconds: float = 1.0

    @property
    def grace(self) -> timedelta:
        """The grace period of a dropped broadcaster."""
        return timedelta(seconds=self.grace_seconds)

    @property
    def stale(self) -> timedelta:
        """How long a process may go without refreshing its sessions."""
        return timedelta(seconds=self.stale_seconds)
