"""Against real processes: the dashboards and alerts name metrics the services export, the probes answer,
and the image's command for each service (ENTRYPOINT + compose command + Kubernetes args) starts it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.catalog import ROOT, load_catalog
from libs.bus import connect
from libs.devstack.ports import free_port
from libs.devstack.stack import Stack
from tests.conftest import Isolated

# Concerns whose metrics come from services still being built (chat; ingest, edge, transcode). Their
# metric names are agreed in docs/operations.md. Remove a concern here once its services export them.
PENDING_CONCERNS: set[str] = set()  # dashboards whose services do not export their metrics yet
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def _exported(stack: Stack) -> set[str]:
    names: set[str] = set()
    for port in stack.metrics_ports.values():
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
    return names


def _queries(concern: str) -> list[str]:
    board = json.loads((ROOT / f"deploy/grafana/dashboards/{concern}.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    rules = (
        yaml.safe_load((ROOT / f"deploy/grafana/alerts/{concern}.yml").read_text())
        if (ROOT / f"deploy/grafana/alerts/{concern}.yml").exists()
        else {"groups": []}
    )
    return exprs + [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bcpc_[a-z0-9_]+", expr))


def test_dashboards_and_alerts_name_only_metrics_the_services_export(stack: Stack) -> None:
    exported = _exported(stack)
    assert "cpc_messages_handled_total" in exported
    assert "cpc_http_request_seconds_bucket" in exported
    concerns = {p.stem for p in (ROOT / "deploy/grafana/dashboards").glob("*.json")}
    assert concerns >= {"bus", "api", "chat", "media"}
    operations = (ROOT / "docs/operations.md").read_text()
    for concern in sorted(concerns):
        names = set().union(*(_metric_names(q) for q in _queries(concern)))
        assert names, f"{concern}: no cpc_ metric in its queries"
        if concern in PENDING_CONCERNS:
            bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
            undocumented = {n for n in bases if f"`{n}`" not in operations}
            assert not undocumented, f"{concern}: agree these names in docs/operations.md: {undocumented}"
            continue
        missing = names - exported
        assert not missing, f"{concern} dashboard or alerts query metrics nobody exports: {missing}"


def test_metrics_port_answers_health_and_readiness(stack: Stack) -> None:
    for name, port in stack.metrics_ports.items():
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200, name
        if name != "gateway":  # the gateway answers /readyz on its HTTP port, which checks the services
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200, name
    assert httpx.get(stack.url + "/readyz", timeout=5).status_code == 200


def _image_command(service: str) -> list[str]:
    """ENTRYPOINT of deploy/Dockerfile + the service's compose command, checked equal to the k8s args."""
    text = (ROOT / "deploy/Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    k8s = yaml.safe_load((ROOT / f"k8s/base/services/{service}.yaml").read_text().split("---")[0])
    assert k8s["spec"]["template"]["spec"]["containers"][0]["args"] == compose["command"]
    assert entrypoint[0] == "python"
    return [sys.executable, *entrypoint[1:], *compose["command"]]


def _probe(port: int, path: str) -> int:
    """The compose/Docker health check command, run the same way."""
    cmd = [sys.executable, "-m", "libs.obs.probe", path, str(port)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=10).returncode


async def _wait(proc: subprocess.Popen[bytes], ready: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}: {proc.stdout.read()[-3000:]!r}"  # type: ignore[union-attr]
        if await ready():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("never became ready")


async def test_the_image_command_of_each_service_starts_it(isolated: Isolated, tmp_path: Path) -> None:
    """Each service runs with the Dockerfile's command and the compose environment (hosts pointed at the
    test servers) and answers: NATS services their ping and readiness probe, the gateway /healthz."""
    nc = await connect(isolated.nats_url, name="test-image-command")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for entry in load_catalog():
            env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][entry.name][
                "environment"
            ]
            metrics, http = free_port(), free_port()
            env = {k: v for k, v in env.items() if "${" not in str(v)} | {
                "CPC_NATS_URL": isolated.nats_url,
                "CPC_DATABASE_URL": isolated.database_url,
                "CPC_METRICS_HOST": "127.0.0.1",
                "CPC_METRICS_PORT": str(metrics),
                "CPC_HTTP_HOST": "127.0.0.1",
                "CPC_HTTP_PORT": str(http),
                "PATH": "/usr/bin:/bin",
            }
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")  # the collector is not part of the test
            proc = subprocess.Popen(
                _image_command(entry.name),
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)

            async def ready(
                name: str = entry.name, kind: str = entry.kind, m: int = metrics, h: int = http
            ) -> bool:
                if kind == "gateway":
                    return _probe(h, "healthz") == 0
                try:
                    await nc.request(f"$SRV.PING.{name}", b"", timeout=0.3)
                except Exception:
                    return False
                return _probe(m, "readyz") == 0

            await _wait(proc, ready)
        gateway_port = env["CPC_HTTP_PORT"]
        assert httpx.get(f"http://127.0.0.1:{gateway_port}/readyz", timeout=5).status_code == 200
    finally:
        await nc.drain()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
