"""A service killed between commit and publish still delivers its event exactly once after restart."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from libs.bus import ServiceError, connect, decode, request
from libs.devstack.nats_server import NatsServer
from libs.devstack.postgres import create_database
from libs.devstack.processes import ServiceProcess
from libs.devstack.stack import Stack
from libs.faults import EXIT_CODE
from proto.identity import REGISTER, STREAM, RegisterRequest, UserRegistered


async def _events_for(nats_url: str, username: str) -> list[UserRegistered]:
    nc = await connect(nats_url, name="test-reader")
    try:
        js = nc.jetstream()
        sub = await js.subscribe(UserRegistered.subject, ordered_consumer=True)
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


async def _wait_for_ping(nats_url: str, name: str, proc: ServiceProcess) -> None:
    nc = await connect(nats_url, name="test-ping")
    try:
        for _ in range(200):
            if not proc.running:
                raise RuntimeError(f"{name} exited during start")
            try:
                await nc.request(f"$SRV.PING.{name}", b"", timeout=0.2)
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{name} never answered its ping")
    finally:
        await nc.drain()


@pytest.mark.parametrize("failpoint", ["outbox.before_publish", "outbox.after_publish"])
async def test_kill_between_commit_and_publish_delivers_exactly_once(
    infra: Stack, tmp_path: Path, failpoint: str
) -> None:
    # Its own NATS and database: no other identity replica may relay the row for the one we kill.
    nats = NatsServer(tmp_path / "nats").start()
    database = f"crash_{secrets.token_hex(4)}"
    await create_database(infra.postgres.url(), database)
    env = {
        "CPC_NATS_URL": nats.url,
        "CPC_DATABASE_URL": infra.postgres.url(database),
        "CPC_METRICS_PORT": "0",
        "CPC_LOG_JSON": "true",
    }
    log = tmp_path / "identity.log"
    username = f"crash_{secrets.token_hex(4)}"
    try:
        doomed = ServiceProcess("identity", {**env, "CPC_FAULTS": failpoint}, log_path=log).start()
        await _wait_for_ping(nats.url, "identity", doomed)
        nc = await connect(nats.url, name="test-client")
        try:
            # The reply races the relay's failpoint; either way the registration was committed.
            await request(
                nc,
                REGISTER,
                RegisterRequest(username=username, password="a long passphrase", email="c@example.test"),
                timeout=3,
            )
        except ServiceError:
            pass
        finally:
            await nc.drain()
        assert await asyncio.to_thread(doomed.wait, 15) == EXIT_CODE, log.read_text()[-2000:]
        before = await _events_for(nats.url, username)
        assert len(before) == (0 if failpoint == "outbox.before_publish" else 1)

        survivor = ServiceProcess("identity", env, log_path=log).start()
        try:
            await _wait_for_ping(nats.url, "identity", survivor)
            for _ in range(50):
                after = await _events_for(nats.url, username)
                if after:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.2)  # one more relay poll: nothing else may arrive
            after = await _events_for(nats.url, username)
        finally:
            survivor.stop()
        assert len(after) == 1, after
        assert STREAM.name == "IDENTITY"
    finally:
        nats.stop()
