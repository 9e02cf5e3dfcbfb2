"""A supervised stack (`Stack.supervise()`, what `make run` runs) on its own: kill -9 of the PostgreSQL
postmaster, of nats-server and of a service process each heals by itself. The supervisor restarts the dead
one with its data, /readyz says 503 naming it and then 200 again, no other process restarts, and a request
flow (register, sign in, create a channel, follow) works again. The recovery times are printed."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from libs.devstack.stack import Stack
from tests.conftest import unique_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Patience, not speed goals: a loaded 2-core machine may take this long for each step.
PATIENCE = 90.0
# A fault and the /readyz name it must show up under.
FAULTS = [("postgres", "postgres"), ("nats-server", "nats"), ("channel", "channel")]


@pytest.fixture(scope="module")
def supervised() -> Iterator[Stack]:
    """A whole platform of its own under the supervisor (the shared session stack is never killed)."""
    root = Path(tempfile.mkdtemp(prefix="cpc-supervised-"))
    s = Stack(root)
    try:
        s.start()
        s.supervise()
    except BaseException:
        s.stop()
        raise
    yield s
    s.stop()


class Readiness:
    """Polls /readyz in a thread, keeping every answer: a short 503 is seen even while the test waits."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, int, list[str]]] = []
        self.unhealthy: list[
            str
        ] = []  # /healthz answers other than 200: liveness must not follow a dependency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/readyz")
                    down = r.json().get("down", []) if r.status_code == 503 else []
                    self.seen.append((time.monotonic(), r.status_code, down))
                except (httpx.HTTPError, ValueError):
                    self.seen.append((time.monotonic(), 0, ["gateway"]))
                try:
                    health = client.get("/healthz")
                    if health.status_code != 200:
                        self.unhealthy.append(f"{health.status_code} {health.text[:100]}")
                except httpx.HTTPError as exc:
                    self.unhealthy.append(repr(exc))
                time.sleep(0.02)

    def healed(self, since: float, naming: str) -> bool:
        """Since `since`, /readyz answered 503 naming `naming`, and 200 after that."""
        not_ready = self.first(since, 503, naming)
        return not_ready is not None and self.first(not_ready, 200) is not None

    def first(self, since: float, status: int, naming: str | None = None) -> float | None:
        """When /readyz first answered `status` (naming `naming` in `down`) after `since`."""
        for at, code, down in list(self.seen):
            if at >= since and code == status and (naming is None or naming in down):
                return at
        return None


def _flow(api: httpx.Client) -> None:
    """Register two users, sign both in, create a channel, follow it; raises AssertionError on a failure."""
    owner, fan = unique_name(), unique_name()
    tokens = {}
    for name in (owner, fan):
        body = {"username": name, "password": "correct horse battery", "email": f"{name}@example.test"}
        r = api.post("/api/v1/auth/register", json=body)
        assert r.status_code == 201, f"register: {r.status_code} {r.text[:200]}"
        r = api.post("/api/v1/auth/login", json={"username": name, "password": body["password"]})
        assert r.status_code == 200, f"login: {r.status_code} {r.text[:200]}"
        tokens[name] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    channel = {"name": owner, "title": "Supervised", "category": "Art", "tags": []}
    r = api.post("/api/v1/channels", json=channel, headers=tokens[owner])
    assert r.status_code == 201, f"create channel: {r.status_code} {r.text[:200]}"
    r = api.post(f"/api/v1/channels/{owner}/follow", headers=tokens[fan])
    assert r.status_code == 200, f"follow: {r.status_code} {r.text[:200]}"


def _flow_works_again(api: httpx.Client, since: float) -> float:
    """Retry the flow until it passes; returns when it did."""
    last = ""
    while time.monotonic() - since < PATIENCE:
        try:
            _flow(api)
            return time.monotonic()
        except (AssertionError, httpx.HTTPError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise AssertionError(f"the request flow still fails {PATIENCE:g} s after the kill: {last}")


def _kill(stack: Stack, fault: str) -> int:
    """SIGKILL the fault's process; returns its pid."""
    if fault == "postgres":
        pid = stack.postgres.postmaster_pid()
    elif fault == "nats-server":
        assert stack.nats.process is not None
        pid = stack.nats.process.pid
    else:
        process = stack.procs[fault].process
        assert process is not None
        pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def _pid_of(stack: Stack, fault: str) -> int | None:
    if fault == "postgres":
        return stack.postgres.postmaster_pid() if stack.postgres.running() else None
    if fault == "nats-server":
        return stack.nats.process.pid if stack.nats.running and stack.nats.process else None
    proc = stack.procs[fault]
    return proc.process.pid if proc.running and proc.process else None


def _service_pids(stack: Stack) -> dict[str, int]:
    return {name: p.process.pid for name, p in stack.procs.items() if p.process is not None and p.running}


def _wait(done: Callable[[], bool], what: str, since: float) -> None:
    while not done():
        assert time.monotonic() - since < PATIENCE, f"waited {PATIENCE:g} s for {what}"
        time.sleep(0.05)


def _heal(stack: Stack, api: httpx.Client, fault: str, name: str) -> str:
    """Kill `fault`, wait until it runs again, /readyz named it and is ready, and the flow works; no other
    service process may have restarted. Returns the measured times."""
    assert stack.supervisor is not None
    stack.wait_ready(timeout=PATIENCE)
    others = {n: pid for n, pid in _service_pids(stack).items() if n != fault}
    restarts_before = len(stack.supervisor.restarts_of(fault))
    with Readiness(stack.url) as ready:
        time.sleep(0.2)
        killed_at = time.monotonic()
        old_pid = _kill(stack, fault)
        _wait(lambda: _pid_of(stack, fault) not in (None, old_pid), f"{fault} to run again", killed_at)
        back_at = time.monotonic()
        _wait(lambda: ready.healed(killed_at, name), f"/readyz to name {name}, then be ready", killed_at)
        not_ready_at = ready.first(killed_at, 503, name)
        assert not_ready_at is not None
        ready_at = ready.first(not_ready_at, 200)
        assert ready_at is not None
        assert not ready.unhealthy, f"/healthz failed while {fault} was down: {ready.unhealthy[:5]}"
    flow_at = _flow_works_again(api, killed_at)
    restarts = stack.supervisor.restarts_of(fault)[restarts_before:]
    assert len(restarts) == 1, f"{fault} was restarted {len(restarts)} times: {restarts}"
    now = {n: pid for n, pid in _service_pids(stack).items() if n != fault}
    assert now == others, f"other processes restarted after killing {fault}: {others} -> {now}"
    return (
        f"{fault:<12} running again {back_at - killed_at:5.2f} s (its start took"
        f" {restarts[0].start_seconds:.2f} s), /readyz 503 naming {name} after"
        f" {not_ready_at - killed_at:5.2f} s, ready again {ready_at - killed_at:5.2f} s,"
        f" flow works {flow_at - killed_at:5.2f} s after the kill"
    )


def test_each_killed_process_comes_back_by_itself_and_readyz_says_so(supervised: Stack) -> None:
    with httpx.Client(base_url=supervised.url, timeout=15) as api:
        _flow(api)
        report = [_heal(supervised, api, fault, name) for fault, name in FAULTS]
    print("\n" + "\n".join(report))
