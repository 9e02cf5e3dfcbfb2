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
import psutil
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
    # What Ctrl-C does: SIGINT to the terminal's whole foreground process group (make, the supervisor
    # and whatever it did not start in a session of its own).
    os.killpg(proc.pid, signal.SIGINT)
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


# What a Ctrl-C on `make run` must not print: a failed lifespan, a traceback, NATS going away under a
# service that still runs, a service or worker failing on its way out.
SHUTDOWN_NOISE = (
    "Application shutdown failed",
    "Traceback",
    "nats_disconnected",
    "nats_error",
    "nats_reconnected",
    "worker_step_failed",
    "task_crashed",
    "exited with",
)


@pytest.mark.slow
def test_ctrl_c_on_make_run_stops_every_process_quietly(tmp_path: Path) -> None:
    """Services stop before NATS and PostgreSQL, each says so, and nothing complains on the way out."""
    port, metrics = free_port(), free_port_block(len(discover_services()))
    log = tmp_path / "devstack.log"
    proc = _start(tmp_path / "data", port, metrics, log)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        # Ctrl-C reaches the supervisor alone, which then stops the rest in order: were NATS in its
        # group, NATS would quit at once, under services still running.
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        in_group = [c.name() for c in children if os.getpgid(c.pid) == proc.pid]
        assert not in_group, f"{in_group} would get Ctrl-C at once with the supervisor"
    finally:
        code = _stop(proc)
    text = log.read_text()
    assert code == 0, text[-3000:]
    for noise in SHUTDOWN_NOISE:
        assert noise not in text, text[-3000:]
    stopping = text[text.index("devstack    | stopping") :]
    for name in discover_services():
        said = "Application shutdown complete" if name == "gateway" else "service_stopped"
        assert re.search(rf"^{name}\s*\| .*{said}", stopping, re.M), (
            f"{name} did not stop cleanly:\n{stopping}"
        )
    assert "devstack    | stopped; data kept in " in stopping.splitlines()[-1]


SYSTEM_PACKAGES = ROOT / "libs" / "devstack" / "system_packages.sh"


def test_system_packages_not_root_stops_at_once_with_the_exact_command(tmp_path: Path) -> None:
    """Without root, missing packages stop `make` within seconds, printing the sudo line to run."""
    # An empty PATH hides promtool, node and npm; /usr/bin/chromium is looked for by its path.
    argv = ["/bin/bash", str(SYSTEM_PACKAGES), "prometheus", "nodejs", "npm"]
    if os.geteuid() == 0:
        argv = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    started = time.monotonic()
    result = subprocess.run(argv, env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=10)
    assert time.monotonic() - started < 5
    assert result.returncode == 1
    assert "    sudo apt-get install -y prometheus nodejs npm\n" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="installing packages is what root does")
def test_system_packages_as_root_update_once_and_install_only_what_is_missing(tmp_path: Path) -> None:
    """As root, one apt-get update, then one apt-get install -y of just the missing packages."""
    calls = tmp_path / "calls"
    fake = tmp_path / "apt-get"
    # A stand-in apt-get that notes its arguments and "installs" node and npm into this PATH.
    fake.write_text(
        '#!/bin/sh\necho "$*" >> "$CALLS"\n'
        'case "$1" in install) for t in node npm; do echo "#!/bin/sh" > "$BIN/$t";'
        ' /bin/chmod +x "$BIN/$t"; done;; esac\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["/bin/bash", str(SYSTEM_PACKAGES), "chromium", "nodejs", "npm"],
        env={"PATH": str(tmp_path), "BIN": str(tmp_path), "CALLS": str(calls)},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq nodejs npm"]
    # Nothing missing: apt-get is not called at all.
    again = subprocess.run(
        ["/bin/bash", str(SYSTEM_PACKAGES), "nodejs", "npm"],
        env={"PATH": str(tmp_path), "BIN": str(tmp_path), "CALLS": str(calls)},
        capture_output=True,
        timeout=10,
    )
    assert again.returncode == 0
    assert len(calls.read_text().splitlines()) == 2
