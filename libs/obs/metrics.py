"""Prometheus metrics every service exports, and the per-service `/metrics` port."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

__all__ = ["HANDLED", "HANDLING_SECONDS", "PUBLISHED", "start_metrics_server"]

HANDLED = Counter(
    "cpc_messages_handled_total",
    "Messages, requests and events handled, by subject and outcome.",
    ["subject", "kind", "outcome"],
)
HANDLING_SECONDS = Histogram(
    "cpc_message_handling_seconds",
    "Seconds spent handling one message, by subject and kind.",
    ["subject", "kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PUBLISHED = Counter(
    "cpc_events_published_total",
    "Events published to JetStream, by subject and outcome.",
    ["subject", "outcome"],
)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve `/metrics` on `host:port` from a daemon thread; port 0 turns it off."""
    if port:
        start_http_server(port, addr=host)
