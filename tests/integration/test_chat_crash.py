"""The chat service killed under load: no acked message is lost or delivered twice after it restarts."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

from libs.devstack.ports import free_port
from libs.faults import EXIT_CODE
from tests.conftest import Isolated
from tests.integration.chat_client import ChatClient

SENDERS = 6
PER_SENDER = 15  # 90 in all: every message stays in the room's last-100 history


async def _gateway_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("gateway never became ready")


async def _member(client: httpx.AsyncClient) -> tuple[str, str]:
    name = f"k_{secrets.token_hex(5)}"
    body = {"username": name, "password": "correct horse battery", "email": f"{name}@example.test"}
    r = await client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/login", json={"username": name, "password": body["password"]})
    return name, r.json()["access_token"]


async def _sender(base: str, channel: str, token: str, acked: list[str], refused: list[str]) -> None:
    """Send PER_SENDER lines; a line without an ack is retried with the same nonce until it gets one."""
    client = await ChatClient.open(base, channel, token)
    for i in range(PER_SENDER):
        nonce = secrets.token_hex(8)
        for _attempt in range(200):
            reply = await client.say(f"line {i}", nonce=nonce)
            if reply["type"] == "ack":
                acked.append(reply["id"])
                break
            assert reply["status"] == 503, reply  # only "chat is down" may refuse these lines
            refused.append(nonce)
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"line {i} never acked")
    await client.close()


async def _platform(isolated: Isolated, chat_env: dict[str, str]) -> str:
    """identity, channel, chat and a gateway on the isolated NATS and database; the gateway's URL."""
    port = free_port()
    for name in ("identity", "channel"):
        await isolated.wait_answering(isolated.start(name))
    await isolated.wait_answering(isolated.start("chat", chat_env))
    gateway_env = {
        "CPC_HTTP_PORT": str(port),
        "CPC_REQUEST_TIMEOUT_SECONDS": "2",
        "CPC_REQUIRED_SERVICES": "identity,channel,chat",
    }
    isolated.start("gateway", gateway_env)
    base = f"http://127.0.0.1:{port}"
    await _gateway_ready(base)
    return base


async def _channel(base: str, senders: int) -> tuple[str, list[str]]:
    """A channel whose chat room exists, and the tokens of `senders` new users."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        _, owner_token = await _member(http)
        channel = f"kc_{secrets.token_hex(4)}"
        r = await http.post(
            "/api/v1/channels",
            json={"name": channel, "title": "crash", "category": "Other"},
            headers={"Authorization": f"Bearer {owner_token}"},
        )
        assert r.status_code == 201, r.text
        tokens = [(await _member(http))[1] for _ in range(senders)]
    for _ in range(100):
        probe = await ChatClient.open(base, channel)
        await probe.close()
        if probe.welcome["type"] == "welcome":
            return channel, tokens
        await asyncio.sleep(0.1)
    raise AssertionError("the chat room never appeared")


@pytest.mark.slow
async def test_kill_under_load_loses_and_doubles_nothing(isolated: Isolated) -> None:
    chat_env = {"CPC_CHAT_RATE_MESSAGES": "1000"}
    base = await _platform(isolated, chat_env)
    channel, tokens = await _channel(base, SENDERS)
    reader = await ChatClient.open(base, channel)
    acked: list[str] = []
    refused: list[str] = []
    senders = [asyncio.create_task(_sender(base, channel, t, acked, refused)) for t in tokens]
    while len(acked) < 20:
        await asyncio.sleep(0.01)
    chat = next(p for p in isolated.procs if p.name == "chat")
    chat.kill()  # SIGKILL mid-load: sends in flight die with it
    await asyncio.sleep(0.5)
    await isolated.wait_answering(isolated.start("chat", chat_env))
    await asyncio.wait_for(asyncio.gather(*senders), timeout=120)
    assert len(acked) == SENDERS * PER_SENDER
    assert refused, "the kill never refused a line: it did not happen under load"
    live = [f["id"] for f in reader.of_type("message")]
    await reader.wait_for(lambda f: set(acked) <= {m["id"] for m in reader.of_type("message")})
    live = [f["id"] for f in reader.of_type("message")]
    assert len(live) == len(set(live)), "a message reached a socket twice"
    assert set(acked) <= set(live)
    late = await ChatClient.open(base, channel)
    history = [m["id"] for m in late.welcome["history"]]
    assert len(history) == len(set(history)), "a message is stored twice"
    assert set(acked) <= set(history), "an acked message was lost"
    for c in (reader, late):
        await c.close()


async def test_crash_between_store_and_ack_then_retry_stores_once(isolated: Isolated) -> None:
    """The service dies after the stream took the message but before the ack: the retry with the same
    nonce is acked as a duplicate, and the message exists and is delivered once."""
    base = await _platform(isolated, {"CPC_FAULTS": "chat.after_publish"})
    channel, (token,) = await _channel(base, 1)
    reader = await ChatClient.open(base, channel)
    sender = await ChatClient.open(base, channel, token)
    first = await sender.say("only once", nonce="n-1")
    assert first["type"] == "error"
    assert first["status"] == 503
    doomed = next(p for p in isolated.procs if p.name == "chat")
    assert await asyncio.to_thread(doomed.wait, 10) == EXIT_CODE
    await isolated.wait_answering(isolated.start("chat"))
    retry = await sender.say("only once", nonce="n-1")
    assert retry["type"] == "ack", retry
    assert retry["duplicate"] is True
    await reader.message(retry["id"])
    late = await ChatClient.open(base, channel)
    assert [m["id"] for m in late.welcome["history"]] == [retry["id"]]
    await asyncio.sleep(0.3)
    assert [f["id"] for f in reader.of_type("message")] == [retry["id"]]
    for c in (reader, sender, late):
        await c.close()
