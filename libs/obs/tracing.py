"""OpenTelemetry tracing; W3C trace context travels in NATS headers."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["configure_tracing", "extract_context", "inject_context", "tracer"]

tracer = trace.get_tracer("cpc-live")


def configure_tracing(service: str) -> TracerProvider | None:
    """Export spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise keep the no-op tracer,
    which still passes incoming `traceparent` headers on, at no cost per message."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": f"cpc-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def inject_context(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's `traceparent` (and `tracestate`) to `headers` and return them."""
    propagate.inject(headers)
    return headers


def extract_context(headers: dict[str, str] | None) -> Any:
    """Return the OpenTelemetry context carried in message headers (or the empty one)."""
    return propagate.extract(headers or {}) if headers else context.Context()
