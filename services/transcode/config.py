"""The transcode service's config (CPC_*), read from the environment once at start into a frozen Struct."""

from __future__ import annotations

from libs.runtime import ServiceConfig

__all__ = ["TranscodeConfig"]


class TranscodeConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the transcode service."""

    # WIDTHxHEIGHT:KBPS rungs, capped at the source's size.
    transcode_ladder: str = "1280x720:2500,854x480:1200,640x360:700"
    fps: int = 30
    segment_seconds: int = 2
    # Low-latency DASH: segments go out in chunks of this much media while they are made (0: off, no
    # low-latency manifest), and the player is told to stay this far behind the live edge.
    chunk_ms: int = 500
    target_latency_ms: int = 3000
    # Live manifest sliding window (timeShiftBufferDepth).
    window_seconds: int = 30
    # SVT-AV1 preset (0 slowest .. 13 fastest).
    svtav1_preset: int = 12
    # av1_vaapi, av1_nvenc or av1_qsv: used when it opens at start, else libsvtav1.
    hardware_encoder: str = ""
    # Streams one replica transcodes at once; more wait for another replica.
    transcode_capacity: int = 2
    # A replica that stops answering loses its streams to another after this long.
    takeover_seconds: float = 6.0
    queue_frames: int = 600
    # A session that has sent no media for this long is let go (its ingest lost it without an end
    # event: a crash); well above ingest's media timeout plus grace, after which ingest ends it anyway.
    idle_seconds: float = 60.0
    recording_retention_days: float = 30.0
    retention_sweep_seconds: float = 3600.0
