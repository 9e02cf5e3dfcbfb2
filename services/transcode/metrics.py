"""Prometheus metrics of the transcode service (names agreed in docs/operations.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["ENCODER", "LIVE_STREAMS", "REALTIME_FACTOR", "SEGMENTS"]

REALTIME_FACTOR = Gauge(
    "cpc_transcode_realtime_factor", "media seconds encoded per wall-clock second", ["rendition"]
)
LIVE_STREAMS = Gauge("cpc_media_live_streams", "live sessions this process transcodes")
ENCODER = Gauge("cpc_transcode_encoder_info", "the AV1 encoder in use (1 for the chosen one)", ["encoder"])
SEGMENTS = Counter("cpc_transcode_segments_total", "segments stored", ["track"])
