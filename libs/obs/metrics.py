"""Prometheus metrics every service exports, and the per-service `/metrics` port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = [
    "DEAD_LETTERS",
    "HANDLED",
    "HANDLING_SECONDS",
    "PUBLISHED",
    "WORKER_ERRORS",
    "WORKER_SECONDS",
    "heartbeat",
    "set_readiness",
    "start_metrics_server",
]

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
DEAD_LETTERS = Counter(
    "cpc_dead_letters_total",
    "Events a consumer gave up on and moved to the DEADLETTERS stream, by consumer and subject.",
    ["durable", "subject"],
)
WORKER_ERRORS = Counter(
    "cpc_worker_errors_total",
    "Background worker steps that raised (retried after a back-off), by worker.",
    ["worker"],
)
WORKER_SECONDS = Histogram(
    "cpc_worker_round_seconds",
    "Seconds one round of a background worker took, by worker.",
    ["worker"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0),
)


# The event loop beats at least this often while it is healthy; a longer silence means it is stuck.
STALL_SECONDS = 15.0
_health: dict[str, Any] = {"ready": None, "beat": None}


def set_readiness(check: Callable[[], bool]) -> None:
    """Make `/readyz` on the metrics port answer 200 while `check()` is true (503 before this call)."""
    _health["ready"] = check


def heartbeat() -> None:
    """Record that the event loop is running; `/healthz` answers 503 after STALL_SECONDS of silence."""
    _health["beat"] = time.monotonic()


def _probe(path: str) -> tuple[str, bytes]:
    if path == "/healthz":
        beat = _health["beat"]
        if beat is not None and time.monotonic() - beat > STALL_SECONDS:
            return "503 Service Unavailable", b"event loop stalled\n"
        return "200 OK", b"ok\n"
    check = _health["ready"]
    if check is not None and check():
        return "200 OK", b"ready\n"
    return "503 Service Unavailable", b"not ready\n"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes are not worth a log line each."""


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve `/metrics`, `/healthz` and `/readyz` on `host:port` from a daemon thread; port 0 turns it off."""
    if not port:
        return
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        status, body = _probe(path)
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
