"""PostgreSQL away for 10 s (`pg_ctl stop -m fast`, then start) while the whole platform runs: no service
process ends or restarts, requests meanwhile get 503 dependency_unavailable with Retry-After, /readyz names
PostgreSQL, and once PostgreSQL is back, requests through the gateway succeed again."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from libs.devstack.stack import Stack
from tests.conftest import assert_problem, unique_name

OUTAGE_SECONDS = 10.0
# Generous on a loaded machine; the target (the issue's) is 5 s, and the measured time is printed.
RECOVERY_PATIENCE = 60.0


class NotYet(Exception):
    """A request of the flow did not succeed (yet)."""


def _expect(r: httpx.Response, status: int) -> httpx.Response:
    if r.status_code != status:
        raise NotYet(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
    return r


def _serve_a_newcomer(api: httpx.Client) -> dict[str, str]:
    """One pass through services that each need their database: identity (register, sign in), channel
    (create, read), social (follow, which asks channel on a miss), notification (list) and /readyz.
    Returns the channel owner's headers."""
    owner, fan = unique_name(), unique_name()
    tokens = {}
    for name in (owner, fan):
        password = "correct horse battery"
        body = {"username": name, "password": password, "email": f"{name}@example.test"}
        _expect(api.post("/api/v1/auth/register", json=body), 201)
        login = {"username": name, "password": password}
        tokens[name] = _expect(api.post("/api/v1/auth/login", json=login), 200).json()["access_token"]
    as_owner = {"Authorization": f"Bearer {tokens[owner]}"}
    as_fan = {"Authorization": f"Bearer {tokens[fan]}"}
    channel = {"name": owner, "title": "After the outage", "category": "Art", "tags": []}
    _expect(api.post("/api/v1/channels", json=channel, headers=as_owner), 201)
    _expect(api.get(f"/api/v1/channels/{owner}"), 200)
    _expect(api.post(f"/api/v1/channels/{owner}/follow", headers=as_fan), 200)
    _expect(api.get("/api/v1/notifications", headers=as_fan), 200)
    _expect(api.get("/readyz"), 200)
    return as_owner


def _told_of_a_follow(api: httpx.Client, owner: dict[str, str]) -> bool:
    """The owner was notified of the follow: the event went out through social's outbox relay and
    notification's consumer wrote it, so background work runs again too."""
    r = _expect(api.get("/api/v1/notifications", headers=owner), 200)
    return any(item["kind"] == "follow" for item in r.json()["items"])


def _wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RECOVERY_PATIENCE
    while not done():
        assert time.monotonic() < deadline, f"waited {RECOVERY_PATIENCE:g} s for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_postgres_outage_of_ten_seconds_ends_no_process_and_service_resumes(
    stack: Stack, api: httpx.Client
) -> None:
    before = _serve_a_newcomer(api)  # everything works before
    _wait_for(lambda: _told_of_a_follow(api, before), "the follow before the outage to be notified")
    pids = {name: proc.process.pid for name, proc in stack.procs.items() if proc.process is not None}
    assert set(pids) == set(stack.services)
    try:
        stack.postgres.halt()
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        # Meanwhile a request that needs the database gets a clean 503 naming PostgreSQL, to be retried in
        # a second (never a 500 with a traceback), and /readyz says PostgreSQL is what is down.
        name = unique_name()
        body = {"username": name, "password": "correct horse battery", "email": f"{name}@example.test"}
        refused = assert_problem(api.post("/api/v1/auth/register", json=body), 503, "PostgreSQL")
        assert refused["code"] == "dependency_unavailable", refused
        assert refused["retry_after"] == 1, refused
        r = api.get(f"/api/v1/channels/{unique_name()}")
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1", r.headers
        _wait_for(lambda: "postgres" in api.get("/readyz").json().get("down", []), "/readyz to name postgres")
        not_ready = api.get("/readyz")
        assert not_ready.status_code == 503, not_ready.text
        assert "PostgreSQL" in not_ready.json()["detail"], not_ready.text
        assert api.get("/healthz").status_code == 200
        while time.monotonic() < outage_ends:
            gone = [name for name, proc in stack.procs.items() if not proc.running]
            assert not gone, f"{gone} exited while PostgreSQL was away"
            time.sleep(0.5)
        stack.postgres.resume()
        back = time.monotonic()
        deadline = back + RECOVERY_PATIENCE
        attempts, last = 0, ""
        while True:
            attempts += 1
            try:
                owner = _serve_a_newcomer(api)
                break
            except (NotYet, httpx.HTTPError) as exc:
                last = str(exc)
            assert time.monotonic() < deadline, (
                f"still failing {RECOVERY_PATIENCE:g} s after PostgreSQL came back: {last}"
            )
            time.sleep(0.1)
        recovered = time.monotonic() - back
        _wait_for(lambda: _told_of_a_follow(api, owner), "the follow after the outage to be notified")
        relayed = time.monotonic() - back
        print(
            f"\nrequests succeed again {recovered:.2f} s after PostgreSQL came back ({attempts} attempts);"
            f" events flow again (a follow notified) after {relayed:.2f} s"
        )
        assert {name: proc.process.pid for name, proc in stack.procs.items() if proc.process} == pids
        assert all(proc.running for proc in stack.procs.values())
    finally:
        # The stack is shared with the tests after this one: leave PostgreSQL up and every service running.
        stack.postgres.resume()  # a no-op when it runs
        stack.start_services()
