"""Ordering against real NATS JetStream and PostgreSQL: one outbox relay per schema at a time, sending in
order, with another taking over when the leader's connection dies; and projections that carry each
aggregate's version and ignore an older event delivered after a newer one."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import msgspec
import pytest
from nats.js import JetStreamContext

from libs.bus import Event, StreamSpec, connect, decode, ensure_streams, new_id, publish, utcnow
from libs.db import OutboxRelay, add_event, apply_migrations, create_pool
from libs.db.outbox import relay_lock_key
from libs.devstack.stack import Stack
from libs.worker import Worker
from proto import channel as pc
from proto import social as ps
from tests.conftest import Member, unique_name

# --- (a) one relay at a time, in order -------------------------------------------------------------------


class Numbered(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "ordertest.row.added"
    n: int


class Relay(OutboxRelay):
    """The real relay, counting what it sent and how many batches of all relays were in flight at once."""

    in_flight = 0
    most_in_flight = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = 0

    async def relay_once(self) -> int:
        Relay.in_flight += 1
        Relay.most_in_flight = max(Relay.most_in_flight, Relay.in_flight)
        try:
            n = await super().relay_once()
        finally:
            Relay.in_flight -= 1
        self.sent += n
        return n


async def _until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Retry an async check until it returns something truthy (or the time is up: then its last result)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def _lock_holder(conn: asyncpg.Connection, schema: str) -> int | None:
    """The backend pid holding the schema's relay lock (a bigint advisory key: classid high, objid low)."""
    key = relay_lock_key(schema)
    pid: int | None = await conn.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        key >> 32,
        key & 0xFFFFFFFF,
    )
    return pid


async def _stream_numbers(js: JetStreamContext, count: int) -> list[int]:
    """The `n` of the first `count` events on the test subject, in stream order."""
    sub = await js.subscribe(Numbered.subject, ordered_consumer=True)
    try:
        return [decode((await sub.next_msg(timeout=5.0)).data, Numbered).n for _ in range(count)]
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def outbox(
    nats_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Any, Any, Any, str]]:
    """A fresh schema with an outbox, two pools on it (two replicas), NATS and a stream for Numbered."""
    schema = f"ord_{secrets.token_hex(4)}"
    (tmp_path / "m").mkdir()
    conn = await asyncpg.connect(database_url)
    await apply_migrations(conn, schema, tmp_path / "m")
    await conn.close()
    nc = await connect(nats_url, name="test-ordering")
    js = nc.jetstream()
    for info in await js.streams_info():
        if Numbered.subject in (info.config.subjects or []):
            await js.delete_stream(info.config.name)
    await ensure_streams(
        js, [StreamSpec(name=f"ORDTEST_{secrets.token_hex(3).upper()}", subjects=(Numbered.subject,))]
    )
    pool_a = await create_pool(database_url, schema=schema, max_size=3)
    pool_b = await create_pool(database_url, schema=schema, max_size=3)
    try:
        yield nc, pool_a, pool_b, schema
    finally:
        await pool_a.close()
        await pool_b.close()
        await nc.drain()


async def _add(pool: Any, numbers: range) -> None:
    for n in numbers:
        async with pool.acquire() as conn, conn.transaction():
            await add_event(conn, Numbered(n=n))


async def _pending(pool: Any) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox")
    return count


async def test_only_the_lock_holder_relays_in_order_and_another_takes_over_when_its_connection_dies(
    outbox: tuple[Any, Any, Any, str], database_url: str
) -> None:
    nc, pool_a, pool_b, schema = outbox
    js = nc.jetstream()
    Relay.in_flight = Relay.most_in_flight = 0
    a, b = Relay(pool_a, js, schema, batch=7), Relay(pool_b, js, schema, batch=7)
    await _add(pool_a, range(0, 5))
    assert await a.step() is True  # it took the lead and sent a batch
    assert a.leading
    assert a.sent == 5
    assert await b.step() is False
    assert not b.leading
    await _add(pool_b, range(5, 10))
    assert await b.step() is False  # a follower never sends, however many rows wait
    assert await _pending(pool_a) == 5

    # Both running as in the services (a worker each, woken by NOTIFY, polling every second) while rows
    # keep coming from both replicas: the leader sends them all, one batch at a time.
    workers = [Worker("relay-a", a.step, every=1.0), Worker("relay-b", b.step, every=1.0)]
    a.on_notify, b.on_notify = workers[0].wake, workers[1].wake
    tasks = [asyncio.create_task(w.run()) for w in workers]
    admin = await asyncpg.connect(database_url)
    try:
        for start in range(10, 60, 10):
            await _add(pool_a if start % 20 else pool_b, range(start, start + 10))
        assert await _until(lambda: _zero(pool_a))
        assert (a.sent, b.sent) == (60, 0)
        assert Relay.most_in_flight == 1  # one batch at a time: a follower never even starts one
        assert await _lock_holder(admin, schema) is not None

        # The leader's lock connection dies (as when its PostgreSQL session is killed or its node lost).
        holder = await _lock_holder(admin, schema)
        await admin.execute("SELECT pg_terminate_backend($1)", holder)
        killed = time.monotonic()
        await _add(pool_a, range(60, 70))
        assert await _until(lambda: _zero(pool_a))
        took_over = time.monotonic() - killed
        assert b.leading

        async def a_stepped_down() -> bool:
            return not a.leading

        assert await _until(a_stepped_down, timeout=5.0)  # at its next step, finding its connection gone
        assert b.sent == 10
        assert a.sent == 60
        new_holder = await _lock_holder(admin, schema)
        assert new_holder is not None
        assert new_holder != holder
        assert await _stream_numbers(js, 70) == list(range(70))
        stream = await js.find_stream_name_by_subject(Numbered.subject)
        assert (await js.stream_info(stream)).state.messages == 70  # none twice
        print(f"relay take-over after the leader's connection died: {took_over:.2f} s")
        assert took_over < 8.0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a.close()
        await b.close()
        await admin.close()


async def _zero(pool: Any) -> bool:
    return await _pending(pool) == 0


async def test_a_leader_that_stops_stepping_loses_the_lead_to_another_relay(
    outbox: tuple[Any, Any, Any, str], database_url: str
) -> None:
    """A frozen or cut-off leader (its socket still open) must not hold the lock until TCP gives up:
    PostgreSQL ends its idle session and the other relay takes over."""
    nc, pool_a, pool_b, schema = outbox
    js = nc.jetstream()
    a = Relay(pool_a, js, schema, lead_idle_seconds=1.0)
    b = Relay(pool_b, js, schema, lead_idle_seconds=1.0)
    try:
        await _add(pool_a, range(0, 3))
        assert await a.step() is True
        assert await b.step() is False
        await _add(pool_a, range(3, 6))
        # a is frozen from here on (never steps again); b keeps stepping as its worker would.
        started = time.monotonic()

        async def b_leads() -> bool:
            await b.step()
            return b.leading

        assert await _until(b_leads, timeout=10.0)
        took_over = time.monotonic() - started
        assert await _until(lambda: _zero(pool_b))
        assert await _stream_numbers(js, 6) == list(range(6))
        print(f"relay take-over from a frozen leader (idle limit 1 s): {took_over:.2f} s")
        assert 0.9 < took_over < 5.0
    finally:
        await a.close()
        await b.close()


# --- (b), (c) projections keep the newest version ------------------------------------------------------


class Projections:
    """The stack's NATS and database, to publish late events and read chat's and notification's rows."""

    def __init__(self, stack: Stack, js: JetStreamContext, db: asyncpg.Connection) -> None:
        self.stack = stack
        self.js = js
        self.db = db

    async def publish_late(self, event: Event, *, stream: str, durables: tuple[str, ...]) -> None:
        """Publish `event` as a late redelivery would bring it (a new message id, so JetStream keeps it)
        and wait until every consumer in `durables` has acknowledged it (handled or ignored)."""
        ack = await publish(self.js, event)

        async def handled() -> bool:
            for durable in durables:
                info = await self.js.consumer_info(stream, durable)
                if info.ack_floor is None or (info.ack_floor.stream_seq or 0) < ack.seq:
                    return False
            return True

        assert await _until(handled), f"{durables} never acknowledged {type(event).subject}"

    async def role(self, channel_id: str, user_id: str) -> str | None:
        role: str | None = await self.db.fetchval(
            "SELECT role FROM chat.roles WHERE room_id = $1 AND user_id = $2", channel_id, user_id
        )
        return role

    async def follows(self, channel_id: str, user_id: str) -> tuple[bool, bool]:
        """Whether chat's and notification's projections hold the follow."""
        chat = await self.db.fetchval(
            "SELECT 1 FROM chat.follows WHERE room_id = $1 AND user_id = $2", channel_id, user_id
        )
        notification = await self.db.fetchval(
            "SELECT 1 FROM notification.follows WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
        )
        return chat is not None, notification is not None


@pytest.fixture
async def projections(stack: Stack) -> AsyncIterator[Projections]:
    nc = await connect(stack.nats_url, name="test-ordering-projections")
    db = await asyncpg.connect(stack.database_url)
    try:
        yield Projections(stack, nc.jetstream(), db)
    finally:
        await db.close()
        await nc.drain()


async def _sent(nats_url: str, cls: type[Event], match: Callable[[Any], bool], count: int) -> list[Any]:
    """The first `count` events of type `cls` on their stream for which `match` holds (as the owner sent
    them, with the versions it counted)."""
    nc = await connect(nats_url, name="test-ordering-events")
    found: list[Any] = []
    try:
        sub = await nc.jetstream().subscribe(cls.subject, ordered_consumer=True)
        deadline = time.monotonic() + 15.0
        while len(found) < count and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:  # nothing yet: the relay may still be on its way
                continue
            event = decode(msg.data, cls)
            if match(event):
                found.append(event)
    finally:
        await nc.drain()
    assert len(found) == count, f"{count} {cls.subject} events expected, {len(found)} seen"
    return found


def _channel(api: httpx.Client, owner: Member) -> tuple[str, str]:
    name = unique_name("ord")
    r = api.post(
        "/api/v1/channels",
        json={"name": name, "title": "ordering", "category": "Just Chatting"},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], name


def _late(event: Event) -> Event:
    """`event` again under a new message id: what a relay replaying an old row (or a redelivery from
    another stream) brings after the newer events."""
    return msgspec.structs.replace(event, event_id=new_id())


async def test_a_stale_role_grant_after_its_revoke_keeps_the_role_revoked_and_a_regrant_applies(
    api: httpx.Client, make_member: Any, projections: Projections
) -> None:
    owner, mod = make_member(), make_member()
    channel_id, name = _channel(api, owner)
    path = f"/api/v1/channels/{name}/moderators/{mod.username}"
    assert api.put(path, headers=owner.headers).status_code == 200
    assert await _until(lambda: projections.role(channel_id, mod.id)) == "moderator"
    assert api.delete(path, headers=owner.headers).status_code == 204

    async def revoked() -> bool:
        return await projections.role(channel_id, mod.id) is None

    assert await _until(revoked)
    (grant,) = await _sent(
        projections.stack.nats_url, pc.RoleGranted, lambda e: e.channel_id == channel_id, 1
    )
    (revoke,) = await _sent(
        projections.stack.nats_url, pc.RoleRevoked, lambda e: e.channel_id == channel_id, 1
    )
    assert (grant.version, revoke.version) == (1, 2)  # counted by the channel service, per channel and user

    await projections.publish_late(_late(grant), stream=pc.STREAM.name, durables=("chat-channels",))
    assert await projections.role(channel_id, mod.id) is None  # the removed moderator stays removed

    assert api.put(path, headers=owner.headers).status_code == 200  # a re-grant: version 3
    assert await _until(lambda: projections.role(channel_id, mod.id)) == "moderator"
    grants = await _sent(projections.stack.nats_url, pc.RoleGranted, lambda e: e.channel_id == channel_id, 3)
    assert [g.version for g in grants] == [1, 1, 3]  # the grant, our late copy of it, the re-grant


async def test_a_stale_follow_after_its_unfollow_keeps_it_unfollowed_and_a_refollow_applies(
    api: httpx.Client, make_member: Any, projections: Projections
) -> None:
    owner, fan = make_member(), make_member()
    channel_id, name = _channel(api, owner)
    path = f"/api/v1/channels/{name}/follow"
    assert api.post(path, headers=fan.headers).status_code == 200

    async def both_follow() -> bool:
        return await projections.follows(channel_id, fan.id) == (True, True)

    async def neither_follows() -> bool:
        return await projections.follows(channel_id, fan.id) == (False, False)

    assert await _until(both_follow)
    assert api.delete(path, headers=fan.headers).status_code == 200
    assert await _until(neither_follows)
    (follow,) = await _sent(projections.stack.nats_url, ps.Followed, lambda e: e.channel_id == channel_id, 1)
    (unfollow,) = await _sent(
        projections.stack.nats_url, ps.Unfollowed, lambda e: e.channel_id == channel_id, 1
    )
    assert (follow.version, unfollow.version) == (1, 2)

    def owner_told() -> int:
        r = api.get("/api/v1/notifications", headers=owner.headers)
        assert r.status_code == 200, r.text
        return sum(1 for item in r.json()["items"] if item["kind"] == "follow")

    durables = ("chat-social", "notification-follows")
    await projections.publish_late(_late(follow), stream=ps.STREAM.name, durables=durables)
    assert await neither_follows()
    assert owner_told() == 1  # the late follow was not told to the owner again

    assert api.post(path, headers=fan.headers).status_code == 200  # a re-follow: version 3
    assert await _until(both_follow)

    async def told_twice() -> bool:
        return owner_told() == 2

    assert await _until(told_twice)
    # ...and the late unfollow of version 2 arriving after it changes nothing either.
    await projections.publish_late(_late(unfollow), stream=ps.STREAM.name, durables=durables)
    assert await both_follow()


async def test_a_stale_emote_add_after_its_removal_keeps_it_removed(
    api: httpx.Client, make_member: Any, projections: Projections
) -> None:
    owner = make_member()
    channel_id, name = _channel(api, owner)
    emote_id = new_id()
    common = {"emote_id": emote_id, "channel_id": channel_id, "channel_name": name, "code": "ordKappa"}
    added = pc.EmoteAdded(**common, tier=0, animated=False, content_type="image/webp", version=1)
    removed = pc.EmoteRemoved(**common, version=2)

    async def chat_has_it() -> bool:
        return await projections.db.fetchval("SELECT 1 FROM chat.emotes WHERE emote_id = $1", emote_id) == 1

    durables = ("chat-channels",)
    await projections.publish_late(added, stream=pc.STREAM.name, durables=durables)
    assert await chat_has_it()
    await projections.publish_late(removed, stream=pc.STREAM.name, durables=durables)
    assert not await chat_has_it()
    await projections.publish_late(_late(added), stream=pc.STREAM.name, durables=durables)
    assert not await chat_has_it()  # the removed emote does not come back
    again = msgspec.structs.replace(added, event_id=new_id(), version=3)
    await projections.publish_late(again, stream=pc.STREAM.name, durables=durables)
    assert await chat_has_it()


async def test_a_stale_subscription_start_after_its_end_keeps_it_ended(
    api: httpx.Client, make_member: Any, projections: Projections
) -> None:
    owner, fan = make_member(), make_member()
    channel_id, name = _channel(api, owner)
    state = {
        "subscription_id": new_id(),
        "user_id": fan.id,
        "username": fan.username,
        "channel_id": channel_id,
        "channel_name": name,
        "tier": 1,
        "cumulative_months": 1,
        "streak_months": 1,
        "period_end": utcnow() + timedelta(days=30),
    }
    started = ps.Subscribed(**state, version=1)
    ended = ps.SubscriptionEnded(**state, reason="refunded", version=2)

    async def active() -> bool | None:
        value: bool | None = await projections.db.fetchval(
            "SELECT active FROM chat.subscriptions WHERE room_id = $1 AND user_id = $2", channel_id, fan.id
        )
        return value

    durables = ("chat-social",)
    await projections.publish_late(started, stream=ps.STREAM.name, durables=durables)
    assert await active() is True
    await projections.publish_late(ended, stream=ps.STREAM.name, durables=durables)
    assert await active() is False
    await projections.publish_late(_late(started), stream=ps.STREAM.name, durables=durables)
    assert await active() is False  # no subscriber badge back from a late start
    renewed = ps.Subscribed(**state, version=3)
    await projections.publish_late(renewed, stream=ps.STREAM.name, durables=durables)
    assert await active() is True


async def test_events_stored_before_versions_are_still_applied_in_order(
    api: httpx.Client, make_member: Any, projections: Projections
) -> None:
    """An event without a version (0, as every event stored before this change decodes) still works."""
    owner, mod = make_member(), make_member()
    channel_id, name = _channel(api, owner)
    old = {"channel_id": channel_id, "channel_name": name, "user_id": mod.id, "username": mod.username}
    durables = ("chat-channels",)
    await projections.publish_late(
        pc.RoleGranted(**old, role="vip"), stream=pc.STREAM.name, durables=durables
    )
    assert await projections.role(channel_id, mod.id) == "vip"
    await projections.publish_late(
        pc.RoleRevoked(**old, role="vip"), stream=pc.STREAM.name, durables=durables
    )
    assert await projections.role(channel_id, mod.id) is None
