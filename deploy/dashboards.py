"""Grafana dashboards, one per concern, built from short panel lists so every query is in one place."""

from __future__ import annotations

from typing import Any

__all__ = ["DASHBOARDS", "dashboard"]

Obj = dict[str, Any]
# (panel title, unit, [(PromQL, legend)])
Panel = tuple[str, str, list[tuple[str, str]]]

_FAILED = 'outcome=~"error|poison"'
DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "bus": (
        "CPC Live / Bus: messages and failures by subject",
        [
            (
                "Messages handled by subject",
                "ops",
                [
                    (
                        "sum by (subject, kind) (rate(cpc_messages_handled_total[$__rate_interval]))",
                        "{{kind}} {{subject}}",
                    ),
                ],
            ),
            (
                "Failures by subject (error, poison)",
                "ops",
                [
                    (
                        f"sum by (subject, outcome) (rate(cpc_messages_handled_total{{{_FAILED}}}[$__rate_interval]))",
                        "{{outcome}} {{subject}}",
                    ),
                ],
            ),
            (
                "Retries by subject",
                "ops",
                [
                    (
                        'sum by (subject) (rate(cpc_messages_handled_total{outcome="retry"}[$__rate_interval]))',
                        "{{subject}}",
                    ),
                ],
            ),
            (
                "Handling latency p99 by subject",
                "s",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, subject) "
                        "(rate(cpc_message_handling_seconds_bucket[$__rate_interval])))",
                        "{{subject}}",
                    ),
                ],
            ),
            (
                "Events published by outcome",
                "ops",
                [
                    (
                        "sum by (subject, outcome) (rate(cpc_events_published_total[$__rate_interval]))",
                        "{{outcome}} {{subject}}",
                    ),
                ],
            ),
            ("Processes up", "none", [('sum by (job) (up{job=~"cpc-.+"})', "{{job}}")]),
        ],
    ),
    "api": (
        "CPC Live / API: requests, errors, latency",
        [
            (
                "Requests by route",
                "reqps",
                [
                    (
                        "sum by (method, route) (rate(cpc_http_requests_total[$__rate_interval]))",
                        "{{method}} {{route}}",
                    ),
                ],
            ),
            (
                "Error ratio (5xx)",
                "percentunit",
                [
                    (
                        'sum(rate(cpc_http_requests_total{status=~"5.."}[$__rate_interval])) '
                        "/ sum(rate(cpc_http_requests_total[$__rate_interval]))",
                        "5xx",
                    ),
                ],
            ),
            (
                "Client errors by status (4xx)",
                "reqps",
                [
                    (
                        'sum by (status) (rate(cpc_http_requests_total{status=~"4.."}[$__rate_interval]))',
                        "{{status}}",
                    ),
                ],
            ),
            (
                "Latency p50 / p99",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(cpc_http_request_seconds_bucket[$__rate_interval])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(cpc_http_request_seconds_bucket[$__rate_interval])))",
                        "p99",
                    ),
                ],
            ),
            (
                "Latency p99 by route",
                "s",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, route) "
                        "(rate(cpc_http_request_seconds_bucket[$__rate_interval])))",
                        "{{route}}",
                    ),
                ],
            ),
        ],
    ),
    "chat": (
        "CPC Live / Chat: sockets, deliveries, latency",
        [
            ("Open chat sockets", "none", [("sum(cpc_chat_sockets)", "sockets")]),
            ("Deliveries", "ops", [("sum(rate(cpc_chat_deliveries_total[$__rate_interval]))", "messages/s")]),
            (
                "Delivery latency p50 / p99",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(cpc_chat_delivery_seconds_bucket[$__rate_interval])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(cpc_chat_delivery_seconds_bucket[$__rate_interval])))",
                        "p99",
                    ),
                ],
            ),
        ],
    ),
    "media": (
        "CPC Live / Media: live streams, viewers, transcoding",
        [
            ("Live streams", "none", [("sum(cpc_media_live_streams)", "live")]),
            ("Viewers", "none", [("sum(cpc_media_viewers)", "viewers")]),
            (
                "Transcode real-time factor (below 1 falls behind)",
                "none",
                [
                    ("min by (rendition) (cpc_transcode_realtime_factor)", "{{rendition}}"),
                ],
            ),
        ],
    ),
}


def _panel(index: int, panel: Panel) -> Obj:
    title, unit, queries = panel
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(queries)
        ],
    }


def dashboard(name: str) -> Obj:
    """The Grafana dashboard JSON model of concern `name`."""
    title, panels = DASHBOARDS[name]
    return {
        "uid": f"cpc-{name}",
        "title": title,
        "tags": ["cpc-live"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}
            ]
        },
        "annotations": {"list": []},
        "panels": [_panel(i, p) for i, p in enumerate(panels)],
    }
