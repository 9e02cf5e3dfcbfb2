"""Logs (structlog), traces (OpenTelemetry) and metrics (Prometheus) set up the same way in every process."""

from libs.obs.logging import configure_logging, get_logger
from libs.obs.metrics import HANDLED, HANDLING_SECONDS, start_metrics_server
from libs.obs.tracing import configure_tracing, extract_context, inject_context, tracer

__all__ = [
    "HANDLED",
    "HANDLING_SECONDS",
    "configure_logging",
    "configure_tracing",
    "extract_context",
    "get_logger",
    "inject_context",
    "start_metrics_server",
    "tracer",
]
