"""`make run`'s entry point starts the whole platform, the README's curl flow works, and data survives a restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from libs.devstack.ports import free_port, free_port_block
from libs.devstack.processes import ROOT, discover_services


def _readme_flow() -> str:
    """The shell block under 'Try it with curl' in README.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Try it with curl.*?```sh\n(.*?)```", text, re.S)
    assert match, "README.md has no '## Try it with curl' shell block"
    return match.group(1)


def _start(data_dir: Path, port: int, metrics: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CPC_DEV_DATA_DIR": str(data_dir),
        "CPC_DEV_HTTP_PORT": str(port),
        "CPC_DEV_METRICS_BASE_PORT": str(metrics),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "libs.devstack", "run"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(log.read_text()[-3000:])


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    return proc.wait(timeout=60)


@pytest.mark.slow
def test_make_run_serves_the_readme_flow_and_keeps_data(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port_block(len(discover_services()))
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "devstack.log"
    proc = _start(tmp_path / "data", port, metrics, log)
    try:
        _wait_ready(base, proc, log)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/" in text  # the URL is printed
        assert re.search(r"^identity\s*\| ", text, re.M)  # lines carry their process's name
        flow = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _readme_flow()],
            env={**os.environ, "CPC": base},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert flow.returncode == 0, flow.stdout + flow.stderr
        assert "live_" in flow.stdout  # the rotated stream key was shown
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "stopped; data kept" in log.read_text()

    # Run it again on the same folder: the user from the README flow can still sign in.
    proc = _start(tmp_path / "data", port, metrics, log)
    try:
        _wait_ready(base, proc, log)
        r = httpx.post(
            base + "/api/v1/auth/login",
            json={"username": "alice", "password": "maple syrup on fresh snow"},
        )
        assert r.status_code == 200, r.text
        assert httpx.get(base + "/api/v1/channels/alice").status_code == 200
    finally:
        assert _stop(proc) == 0
