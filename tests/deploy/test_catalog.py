"""The services list, the files rendered from it, and docker-compose.yml agree with the code."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.catalog import ROOT, CatalogError, Entry, load_catalog, services_in_code
from deploy.kube import manifests
from deploy.render import render, stale


def test_every_service_in_the_code_has_an_entry_in_deploy_services_toml() -> None:
    """A new services/<name>/__main__.py fails here until deploy/services.toml lists it."""
    listed = {e.name for e in load_catalog()}
    missing = services_in_code() - listed
    assert not missing, f"add [services.<name>] tables to deploy/services.toml for: {sorted(missing)}"


def test_every_entry_in_deploy_services_toml_is_a_service_in_the_code() -> None:
    listed = {e.name for e in load_catalog()}
    unknown = listed - services_in_code()
    assert not unknown, f"deploy/services.toml lists services with no services/<name>/__main__.py: {unknown}"


def test_committed_files_match_a_fresh_render() -> None:
    """k8s/base/services, docker-compose.yml, prometheus.yml, dashboards and rules are what render.py writes."""
    assert stale() == [], "run `python -m deploy.render` and commit the result"


def test_a_bad_entry_is_refused_naming_its_table(tmp_path: Path) -> None:
    path = tmp_path / "services.toml"
    path.write_text('[services.ingest]\nkind = "media"\n')
    with pytest.raises(CatalogError, match=r"services\.ingest.*udp_ports"):
        load_catalog(path)
    path.write_text('[services.chat]\nkind = "worker"\n')
    with pytest.raises(CatalogError, match=r"services\.chat"):
        load_catalog(path)
    path.write_text('[services.chat]\nkind = "service"\nsecret_env = { CPC_X = "no-key" }\n')
    with pytest.raises(CatalogError, match="CPC_X"):
        load_catalog(path)


def test_a_media_entry_renders_host_network_pods_with_the_node_address_and_udp_range() -> None:
    """ingest and edge (merged later) get valid manifests: the node's IP and the UDP range in their env."""
    entry = Entry(name="ingest", kind="media", udp_ports=(40000, 40099), metrics_port=9310)
    objects = manifests(entry, ["ingest"])
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    pod = objects[0]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["CPC_ICE_ADVERTISED_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert (env["CPC_ICE_PORT_MIN"]["value"], env["CPC_ICE_PORT_MAX"]["value"]) == ("40000", "40099")
    assert env["CPC_METRICS_PORT"]["value"] == "9310"
    compose = render(ROOT, [*load_catalog(), entry])["docker-compose.yml"]
    ingest = yaml.safe_load(compose)["services"]["ingest"]
    assert ingest["ports"] == ["40000-40099:40000-40099/udp"]
    assert "ingest" in yaml.safe_load(compose)["services"]["gateway"]["depends_on"]


def test_compose_file_parses_and_every_service_it_runs_exists_in_the_code() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    ours = {name: svc for name, svc in services.items() if "command" in svc and "build" in svc}
    assert set(ours) == services_in_code()
    for name, svc in ours.items():
        assert svc["command"] == [f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").exists()
        assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        assert svc["depends_on"]["nats"] == {"condition": "service_healthy"}
        assert svc["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        if name not in ("jaeger", "otel-collector"):
            assert "healthcheck" in svc, f"{name} has no health check"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
    assert set(services["gateway"]["depends_on"]) >= set(ours) - {"gateway"}
    # nats-server reads deploy/nats/nats.conf (JetStream, fsync of every write): tests/deploy/test_compose_nats.py
    assert services["nats"]["command"] == ["--config", "/etc/nats/nats.conf"]
    assert services["nats"]["volumes"] == [
        "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro",
        "nats-data:/data",
    ]
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{n}:{s['environment']['CPC_METRICS_PORT']}" for n, s in ours.items()}
