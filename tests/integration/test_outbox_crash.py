"""A service killed between commit and publish still delivers its event exactly once after restart."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from libs.bus import ServiceError, connect, decode, request
from libs.faults import EXIT_CODE
from proto.identity import REGISTER, RegisterRequest, UserRegistered
from tests.conftest import Isolated


async def _events_for(nats_url: str, username: str) -> list[UserRegistered]:
    nc = await connect(nats_url, name="test-reader")
    try:
        sub = await nc.jetstream().subscribe(UserRegistered.subject, ordered_consumer=True)
        found: list[UserRegistered] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            event = decode(msg.data, UserRegistered)
            if event.username == username:
                found.append(event)
        await sub.unsubscribe()
        return found
    finally:
        await nc.drain()


async def _register(nats_url: str, username: str) -> None:
    nc = await connect(nats_url, name="test-client")
    try:
        req = RegisterRequest(username=username, password="a long passphrase", email="c@example.test")
        # The reply races the relay's failpoint; either way the registration was committed.
        await request(nc, REGISTER, req, timeout=3)
    except ServiceError:
        pass
    finally:
        await nc.drain()


@pytest.mark.parametrize("failpoint", ["outbox.before_publish", "outbox.after_publish"])
async def test_kill_between_commit_and_publish_delivers_exactly_once(
    isolated: Isolated, failpoint: str
) -> None:
    username = f"crash_{secrets.token_hex(4)}"
    doomed = isolated.start("identity", {"CPC_FAULTS": failpoint})
    await isolated.wait_answering(doomed)
    await _register(isolated.nats_url, username)
    log = isolated.folder / "identity.log"
    assert await asyncio.to_thread(doomed.wait, 15) == EXIT_CODE, log.read_text()[-2000:]
    before = await _events_for(isolated.nats_url, username)
    assert len(before) == (0 if failpoint == "outbox.before_publish" else 1)

    survivor = isolated.start("identity")
    await isolated.wait_answering(survivor)
    for _ in range(50):
        if await _events_for(isolated.nats_url, username):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.2)  # one more relay poll: nothing else may arrive
    after = await _events_for(isolated.nats_url, username)
    assert len(after) == 1, after
