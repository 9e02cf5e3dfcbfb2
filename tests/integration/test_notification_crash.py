"""The notification service killed mid fan-out, and a webhook callback that keeps failing: each against a
private NATS and database, with settings the shared stack does not use."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from libs.bus import connect, new_id, request
from libs.faults import EXIT_CODE
from proto import notification as pn
from proto.channel import ChannelCreated
from tests.conftest import Isolated
from tests.integration.notify_helpers import (
    Received,
    Receiver,
    followed,
    publish_events,
    session,
    signature_ok,
)

FOLLOWERS = 300
BATCH = 50


async def _count(db: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(db)
    try:
        value: int = await conn.fetchval(sql, *args)
        return value
    finally:
        await conn.close()


async def _wait_count(db: str, sql: str, want: int, timeout: float = 20.0) -> int:
    got = -1
    for _ in range(int(timeout / 0.1)):
        got = await _count(db, sql)
        if got >= want:
            return got
        await asyncio.sleep(0.1)
    return got


def _channel(owner_id: str = "") -> ChannelCreated:
    name = f"c_{new_id()[:8]}"
    return ChannelCreated(
        channel_id=new_id(),
        name=name,
        owner_id=owner_id or new_id(),
        title="t",
        category="Art",
        tags=[],
        language="en",
        created_at=datetime.now(UTC),
    )


async def test_killed_mid_fanout_and_restarted_every_follower_has_exactly_one(isolated: Isolated) -> None:
    env = {"CPC_FANOUT_BATCH": str(BATCH)}
    doomed = isolated.start("notification", {**env, "CPC_FAULTS": "notification.fanout_after_batch"})
    await isolated.wait_answering(doomed)
    ch = _channel()
    fans = [followed(new_id(), f"fan{i}", ch.channel_id, ch.name) for i in range(FOLLOWERS)]
    await publish_events(isolated.nats_url, ch, *fans)
    db = isolated.database_url
    follows = "SELECT count(*) FROM notification.follows"
    assert await _wait_count(db, follows, FOLLOWERS) == FOLLOWERS

    await publish_events(isolated.nats_url, *session(ch.channel_id, ch.name, datetime.now(UTC)))
    log = isolated.folder / "notification.log"
    assert await asyncio.to_thread(doomed.wait, 15) == EXIT_CODE, log.read_text()[-2000:]
    live = "SELECT count(*) FROM notification.notifications WHERE kind = 'live'"
    assert await _count(db, live) == BATCH  # died after the first batch committed

    nc = await connect(isolated.nats_url, name="test-pushes")
    pushed: list[str] = []

    async def on_push(msg: object) -> None:
        pushed.append(msg.subject)  # type: ignore[attr-defined]

    await nc.subscribe("notify.user.*", cb=on_push)
    survivor = isolated.start("notification", env)
    await isolated.wait_answering(survivor)
    assert await _wait_count(db, live, FOLLOWERS) == FOLLOWERS
    await asyncio.sleep(0.5)
    await nc.drain()
    per_user = "SELECT count(DISTINCT user_id) FROM notification.notifications WHERE kind = 'live'"
    assert await _count(db, live) == FOLLOWERS
    assert await _count(db, per_user) == FOLLOWERS
    assert await _count(db, "SELECT count(*) FROM notification.fanout_jobs") == 0
    # The restart pushed live only what it wrote: no follower heard twice.
    assert len(pushed) == FOLLOWERS - BATCH
    assert len(set(pushed)) == len(pushed)


async def test_failing_callback_is_retried_with_backoff_then_dead_lettered(isolated: Isolated) -> None:
    env = {
        "CPC_ALLOW_PRIVATE_CALLBACKS": "true",
        "CPC_WEBHOOK_MAX_ATTEMPTS": "4",
        "CPC_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    }
    proc = isolated.start("notification", env)
    await isolated.wait_answering(proc)
    secret = "a-long-enough-secret"

    async def callback(item: Received) -> web.Response:
        assert signature_ok(secret, item)
        if item.headers["CPC-Message-Type"] == "webhook_callback_verification":
            return web.Response(text=json.loads(item.body)["challenge"])
        return web.Response(status=503)

    receiver = await Receiver(callback).start()
    owner = new_id()
    ch = _channel(owner)
    await publish_events(isolated.nats_url, ch)
    db = isolated.database_url
    await _wait_count(db, "SELECT count(*) FROM notification.copied_channels", 1)
    nc = await connect(isolated.nats_url, name="test-client")
    try:
        hook = await request(
            nc,
            pn.CREATE_WEBHOOK,
            pn.CreateWebhook(
                actor_id=owner,
                channel_name=ch.name,
                type="stream.online",
                callback_url=receiver.url,
                secret=secret,
            ),
        )
        enabled = "SELECT count(*) FROM notification.webhooks WHERE status = 'enabled'"
        assert await _wait_count(db, enabled, 1) == 1
        await publish_events(isolated.nats_url, *session(ch.channel_id, ch.name, datetime.now(UTC)))
        received = await receiver.wait_for(1 + 4)
        dead = "SELECT count(*) FROM notification.webhook_dead_letters"
        assert await _wait_count(db, dead, 1) == 1
    finally:
        await nc.drain()
        await receiver.stop()
    tries = received[1:]
    assert {t.headers["CPC-Message-Id"] for t in tries} == {tries[0].headers["CPC-Message-Id"]}
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    assert gaps[0] >= 0.15
    assert gaps[1] >= 0.35
    assert gaps[2] >= 0.75
    assert await _count(db, "SELECT count(*) FROM notification.webhook_deliveries") == 0
    assert (
        await _count(
            db, "SELECT attempts FROM notification.webhook_dead_letters WHERE webhook_id = $1", hook.id
        )
        == 4
    )
