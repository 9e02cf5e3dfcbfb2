"""Every Kubernetes manifest, the alert rules and the Dockerfile pass their validators, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.catalog import ROOT
from tests.deploy.crd_schemas import SCHEMAS
from tests.deploy.tools import run_tool

OVERLAYS = ("dev", "production")
# The oldest Kubernetes we support, and the newest the validator knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`kubectl kustomize` output of each overlay, as the operator would apply it."""
    folder = tmp_path_factory.mktemp("k8s")
    out = {}
    for overlay in OVERLAYS:
        result = run_tool("kubectl", "kustomize", f"k8s/overlays/{overlay}")
        assert result.returncode == 0, result.stderr
        out[overlay] = folder / f"{overlay}.yaml"
        out[overlay].write_text(result.stdout)
    return out


def _objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered: dict[str, Path]) -> None:
    """Built-in kinds against Kubernetes' OpenAPI schemas (strict), custom resources against crd_schemas."""
    for overlay, path in rendered.items():
        for obj in _objects(path):
            where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
            crd = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
            if crd is not None:
                jsonschema.validate(obj, crd)
                continue
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{where} (Kubernetes {version}): {exc.message} at {list(exc.path)}")


def test_a_misspelt_field_fails_validation() -> None:
    """The validation above can fail: a typo in a Deployment or in a custom resource is caught."""
    deployment = _objects(ROOT / "k8s/base/services/gateway.yaml")[0]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)
    cluster = _objects(ROOT / "k8s/overlays/production/postgres-cluster.yaml")[0]
    cluster["spec"]["instance"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, SCHEMAS[("postgresql.cnpg.io/v1", "Cluster")])


def test_each_environment_has_what_the_operator_needs(rendered: dict[str, Path]) -> None:
    for overlay, path in rendered.items():
        objects = _objects(path)
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
        assert not any(k == "Secret" for k, _ in kinds), "secrets are created by the operator, never shipped"
        nats = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats")
        assert nats["spec"]["replicas"] == 3
        conf = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config")
        assert "sync_interval: always" in conf["data"]["nats.conf"], "JetStream must fsync before it acks"
        for dep in (o for o in objects if o["kind"] == "Deployment"):
            name = dep["metadata"]["name"]
            assert {
                ("Service", name),
                ("PodDisruptionBudget", name),
                ("HorizontalPodAutoscaler", name),
            } <= kinds
            container = dep["spec"]["template"]["spec"]["containers"][0]
            assert container["args"] == [f"services.{name}"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]
        policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
        assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        ingress = next(o for o in objects if o["kind"] == "Ingress")
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "gateway"
        if overlay == "dev":
            assert ("StatefulSet", "postgres") in kinds
            assert ("Cluster", "cpc-postgres") not in kinds
        else:
            assert {
                ("Cluster", "cpc-postgres"),
                ("ServiceMonitor", "cpc-live"),
                ("PrometheusRule", "cpc-live"),
            } <= kinds


def test_a_drain_keeps_the_nats_quorum_and_a_failover_keeps_every_commit(rendered: dict[str, Path]) -> None:
    """Every overlay: a PodDisruptionBudget lets only one of the three NATS nodes go at a time (R3 streams
    keep their quorum). Production: CloudNativePG commits on one synchronous replica before it returns,
    keeps its own PodDisruptionBudgets, and ends the sessions of clients on a lost node within a minute;
    dev runs one PostgreSQL pod, with no replica to fail over to."""
    for overlay, path in rendered.items():
        objects = _objects(path)
        nats = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats")
        budgets = [
            o
            for o in objects
            if o["kind"] == "PodDisruptionBudget"
            and o["spec"]["selector"]["matchLabels"].items()
            <= nats["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [b["spec"] for b in budgets] == [
            {"maxUnavailable": 1, "selector": nats["spec"]["selector"]}
        ], f"{overlay}: the NATS pods need exactly one PodDisruptionBudget with maxUnavailable 1"
        clusters = [o for o in objects if o["kind"] == "Cluster"]
        if overlay == "dev":
            assert clusters == []
            continue
        (cluster,) = clusters
        spec = cluster["spec"]
        where = f"{overlay}: Cluster/{cluster['metadata']['name']}"
        assert spec["minSyncReplicas"] >= 1, f"{where}: a commit must reach a replica before it returns"
        assert spec["minSyncReplicas"] <= spec["maxSyncReplicas"] < spec["instances"], where
        assert spec.get("enablePDB", True) is True, f"{where}: the operator's PodDisruptionBudgets are needed"
        # A session of a client on a lost node (holding the outbox relay's lock) must end within a minute.
        params = {k: int(v) for k, v in spec["postgresql"]["parameters"].items() if k.startswith("tcp_")}
        idle_end = (
            params["tcp_keepalives_idle"] + params["tcp_keepalives_interval"] * params["tcp_keepalives_count"]
        )
        assert idle_end <= 60, f"{where}: a dead client's idle session lives {idle_end} s"
        assert 0 < params["tcp_user_timeout"] <= 60_000, (
            f"{where}: a dead client's busy session lives too long"
        )


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy/grafana/alerts").glob("*.yml"))
    result = run_tool("promtool", "check", "rules", *rules)
    assert result.returncode == 0, result.stdout + result.stderr
    # The PrometheusRule for the Prometheus Operator carries the same groups.
    rule = _objects(ROOT / "k8s/components/monitoring/prometheus-rules.yaml")[0]
    (tmp_path / "operator.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run_tool("promtool", "check", "rules", str(tmp_path / "operator.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(x[5m]\n"
    )
    assert run_tool("promtool", "check", "rules", str(tmp_path / "bad.yml")).returncode != 0


def test_dockerfile_passes_hadolint() -> None:
    result = run_tool("hadolint", "--failure-threshold", "info", "deploy/Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_and_dockerfile_pass_checkov(rendered: dict[str, Path], tmp_path: Path) -> None:
    """Skipped checks are listed, each with its reason, in deploy/checkov.yaml (or annotated in place)."""
    for path in rendered.values():
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(ROOT / "deploy/Dockerfile", tmp_path / "Dockerfile")
    result = run_tool(
        "checkov", "--config-file", str(ROOT / "deploy/checkov.yaml"), "-d", str(tmp_path), "-o", "json"
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    failed = [
        f"{r['check_type']}: {c['check_id']} {c['resource']}"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert result.returncode == 0, result.stderr[-2000:]
