"""The edge service's config (CPC_*), read from the environment once at start into a frozen Struct."""

from __future__ import annotations

from libs.media.ice import MediaServiceConfig

__all__ = ["EdgeConfig"]


class EdgeConfig(MediaServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the edge service."""

    # Bytes that may wait in one viewer's UDP socket buffer before it skips to the next keyframe
    # (~1 s of a 2.5 Mbit/s stream).
    viewer_backlog_bytes: int = 320_000
    # How often a process refreshes its viewers, lets go of those of silent processes and closes its own
    # viewers whose session ended.
    maintain_seconds: float = 2.0
    # A viewer whose process has not refreshed it for this long no longer counts.
    viewer_stale_seconds: float = 10.0
