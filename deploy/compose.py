"""docker-compose.yml services and Prometheus scrape targets for the catalog entries."""

from __future__ import annotations

from typing import Any

from deploy.catalog import Entry
from deploy.kube import HTTP_PORT

__all__ = ["compose_services", "scrape_config"]

Obj = dict[str, Any]
IMAGE = "${CPC_IMAGE:-cpc-live:dev}"


def _environment(entry: Entry, required: list[str]) -> Obj:
    env: Obj = {
        "CPC_NATS_URL": "nats://nats:4222",
        "CPC_DATABASE_URL": "postgresql://cpc:${POSTGRES_PASSWORD:-cpc}@postgres:5432/cpc",
        "CPC_METRICS_HOST": "0.0.0.0",
        "CPC_METRICS_PORT": str(entry.metrics_port),
        "CPC_LOG_JSON": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
    }
    # Secrets come from the shell or a `.env` file beside the compose file, never from this file.
    env.update({var: f"${{{var}:-}}" for var in sorted(entry.secret_env)})
    if entry.kind == "gateway":
        env.update(
            CPC_HTTP_HOST="0.0.0.0",
            CPC_HTTP_PORT=str(HTTP_PORT),
            CPC_REQUIRED_SERVICES=",".join(required),
            CPC_FORWARDED_ALLOW_IPS="*",
        )
    if entry.udp_ports is not None:
        env[entry.public_ip_env] = "${CPC_PUBLIC_IP:-127.0.0.1}"
        env[entry.port_min_env] = str(entry.udp_ports[0])
        env[entry.port_max_env] = str(entry.udp_ports[1])
    env.update(entry.env)
    return env


def _service(entry: Entry, required: list[str]) -> Obj:
    infra = {"condition": "service_healthy"}
    depends: Obj = {"nats": infra, "postgres": infra}
    probe = ["CMD", "python", "-m", "libs.obs.probe", "readyz"]
    if entry.kind == "gateway":
        depends.update({name: infra for name in required})
        probe.append(str(HTTP_PORT))
    svc: Obj = {
        "image": IMAGE,
        "build": {"context": ".", "dockerfile": "deploy/Dockerfile"},
        "command": [entry.module],
        "environment": _environment(entry, required),
        "depends_on": depends,
        "healthcheck": {
            "test": probe,
            "interval": "10s",
            "timeout": "3s",
            "retries": 5,
            "start_period": "30s",
        },
        "restart": "unless-stopped",
        "read_only": True,
        "tmpfs": ["/tmp"],
    }
    if entry.kind == "gateway":
        svc["ports"] = [f"${{CPC_HTTP_PUBLISH:-8080}}:{HTTP_PORT}"]
    if entry.udp_ports is not None:
        first, last = entry.udp_ports
        svc["ports"] = [f"{first}-{last}:{first}-{last}/udp"]
    return svc


def compose_services(entries: list[Entry]) -> Obj:
    """The compose `services:` entries of every catalog entry."""
    required = [e.name for e in entries if e.kind != "gateway"]
    return {e.name: _service(e, required) for e in entries}


def scrape_config(entries: list[Entry]) -> Obj:
    """prometheus.yml for compose: every process's /metrics, plus the rules under deploy/grafana/alerts."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": ["/etc/prometheus/alerts/*.yml"],
        "scrape_configs": [
            {
                "job_name": f"cpc-{e.name}",
                "static_configs": [
                    {"targets": [f"{e.name}:{e.metrics_port}"], "labels": {"service": e.name}}
                ],
            }
            for e in entries
        ],
    }
