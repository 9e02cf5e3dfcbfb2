"""Two gateway processes share one room: each fans out to its own sockets from its own subscription."""

from __future__ import annotations

import time

import httpx

from libs.devstack.ports import free_port
from libs.devstack.processes import ServiceProcess
from libs.devstack.stack import Stack
from tests.conftest import unique_name
from tests.integration.chat_client import ChatClient, text_of


def _second_gateway(stack: Stack) -> tuple[ServiceProcess, str]:
    port = free_port()
    env = stack.env_for("gateway", {"CPC_HTTP_PORT": str(port), "CPC_METRICS_PORT": str(free_port())})
    proc = ServiceProcess("gateway", env, log_path=stack.root / "gateway-2.log").start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise AssertionError("second gateway never became ready")


async def test_two_gateways_share_a_room(stack: Stack, api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, chatter = make_member(), make_member()
    name = unique_name("gw")
    r = api.post(
        "/api/v1/channels", json={"name": name, "title": "two", "category": "Gaming"}, headers=owner.headers
    )
    assert r.status_code == 201, r.text
    proc, other_url = _second_gateway(stack)
    try:
        on_a = await ChatClient.open(stack.url, name, owner.tokens["access_token"])
        on_b = await ChatClient.open(other_url, name, chatter.tokens["access_token"])
        reader_b = await ChatClient.open(other_url, name)
        from_a = await on_a.say("hello from gateway A")
        from_b = await on_b.say("hello from gateway B")
        for client in (on_a, on_b, reader_b):
            assert text_of(await client.message(from_a["id"])) == "hello from gateway A"
            assert text_of(await client.message(from_b["id"])) == "hello from gateway B"
        deleted = await on_a.say(f"/delete {from_b['id']}")
        assert deleted["type"] == "ack", deleted
        await reader_b.wait_for(lambda f: f["type"] == "deleted" and f["id"] == from_b["id"])
        for client in (on_a, on_b, reader_b):
            ids = [f["id"] for f in client.of_type("message")]
            assert len(ids) == len(set(ids)), ids
            await client.close()
        # Room frames left gateway A framed once and written straight to its sockets' transports.
        metrics = httpx.get(f"http://127.0.0.1:{stack.metrics_ports['gateway']}/metrics").text
        assert _sample(metrics, 'cpc_chat_frames_sent_total{path="direct"}') > 0, metrics
    finally:
        proc.stop()


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")
