"""Fixtures: a real NATS JetStream and a real PostgreSQL on free ports, and the services as processes."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.bus import connect
from libs.devstack.nats_server import NatsServer
from libs.devstack.postgres import create_database
from libs.devstack.processes import ServiceProcess
from libs.devstack.stack import Stack


@pytest.fixture(scope="session")
def infra() -> Iterator[Stack]:
    """NATS JetStream and PostgreSQL on free ports in a scratch folder, once per test run."""
    root = Path(tempfile.mkdtemp(prefix="cpc-test-"))
    s = Stack(root)
    try:
        s.start_infra()
    except BaseException:
        s.stop()
        raise
    yield s
    s.stop()


@pytest.fixture(scope="session")
def stack(infra: Stack) -> Stack:
    """The whole platform: `infra` plus every service process and the gateway."""
    return infra.start_services()


@pytest.fixture(scope="session")
def nats_url(infra: Stack) -> str:
    """The test NATS server."""
    return infra.nats_url


@pytest.fixture(scope="session")
def database_url(infra: Stack) -> str:
    """The test database."""
    return infra.database_url


class Isolated:
    """Its own NATS server and database: service processes started here never answer, or relay for,
    the shared stack (needed by tests that kill or reconfigure a service)."""

    def __init__(self, nats: NatsServer, database_url: str, folder: Path) -> None:
        self.nats = nats
        self.nats_url = nats.url
        self.database_url = database_url
        self.folder = folder
        self.procs: list[ServiceProcess] = []

    def start(self, name: str, env: dict[str, str] | None = None) -> ServiceProcess:
        """Start service `name` against this NATS and database; output goes to `<folder>/<name>.log`."""
        base = {"CPC_NATS_URL": self.nats_url, "CPC_DATABASE_URL": self.database_url, "CPC_METRICS_PORT": "0"}
        proc = ServiceProcess(name, {**base, **(env or {})}, log_path=self.folder / f"{name}.log").start()
        self.procs.append(proc)
        return proc

    async def wait_answering(self, proc: ServiceProcess, timeout: float = 20.0) -> None:
        """Wait until `proc` answers its NATS service ping."""
        nc = await connect(self.nats_url, name="test-ping")
        try:
            for _ in range(int(timeout / 0.05)):
                if not proc.running:
                    raise RuntimeError(f"{proc.name} exited during start")
                try:
                    await nc.request(f"$SRV.PING.{proc.name}", b"", timeout=0.2)
                    return
                except Exception:
                    await asyncio.sleep(0.05)
            raise TimeoutError(f"{proc.name} never answered its ping")
        finally:
            await nc.drain()


@pytest.fixture
async def isolated(infra: Stack, tmp_path: Path) -> AsyncIterator[Isolated]:
    """A private NATS server and database on the shared PostgreSQL server; stopped after the test."""
    nats = NatsServer(tmp_path / "nats").start()
    database = f"iso_{secrets.token_hex(4)}"
    await create_database(infra.postgres.url(), database)
    env = Isolated(nats, infra.postgres.url(database), tmp_path)
    try:
        yield env
    finally:
        for proc in env.procs:
            proc.stop()
        nats.stop()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client for the gateway."""
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        yield client


def unique_name(prefix: str = "u") -> str:
    """A fresh valid username or channel name."""
    return f"{prefix}_{secrets.token_hex(5)}"


class Member:
    """A registered, signed-in user."""

    def __init__(self, api: httpx.Client, username: str, password: str, tokens: dict[str, Any], id: str):
        self.api = api
        self.username = username
        self.password = password
        self.tokens = tokens
        self.id = id

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the access token."""
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


@pytest.fixture
def make_member(api: httpx.Client):  # type: ignore[no-untyped-def]
    """Factory: register and sign in a new user."""

    def make(username: str | None = None, password: str = "correct horse battery") -> Member:
        name = username or unique_name()
        r = api.post(
            "/api/v1/auth/register",
            json={"username": name, "password": password, "email": f"{name}@example.test"},
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        r = api.post("/api/v1/auth/login", json={"username": name, "password": password})
        assert r.status_code == 200, r.text
        return Member(api, name, password, r.json(), user_id)

    return make


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status` whose detail mentions each of `words`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    return body


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """When a test that used the stack fails, attach the tail of each service's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "stack" in getattr(item, "fixturenames", ()):
        s: Stack = item._request.getfixturevalue("stack")  # type: ignore[attr-defined]
        for name in s.procs:
            path = s.log_path(name)
            if path.exists():
                report.sections.append((f"{name} log (tail)", path.read_text()[-4000:]))


class CorsGateway:
    """A second gateway on the shared stack that allows CORS from one loopback page origin."""

    def __init__(self, url: str, page_port: int) -> None:
        self.url = url
        self.page_port = page_port
        self.origin = f"http://127.0.0.1:{page_port}"


@pytest.fixture(scope="session")
def cors_gateway(stack: Stack) -> Iterator[CorsGateway]:
    """A gateway process with CPC_CORS_ORIGINS set to `origin` (browser tests serve their pages there)."""
    from libs.devstack.ports import free_port

    http_port, page_port = free_port(), free_port()
    gateway = CorsGateway(f"http://127.0.0.1:{http_port}", page_port)
    env = stack.env_for(
        "gateway",
        {"CPC_HTTP_PORT": str(http_port), "CPC_METRICS_PORT": "0", "CPC_CORS_ORIGINS": gateway.origin},
    )
    proc = ServiceProcess("gateway", env, log_path=stack.root / "gateway-cors.log").start()
    try:
        for _ in range(400):
            if not proc.running:
                raise RuntimeError("the CORS gateway exited during start")
            try:
                if httpx.get(gateway.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise TimeoutError("the CORS gateway never became ready")
        yield gateway
    finally:
        proc.stop()
