"""Notifications through the gateway against the real notification service: go-live into the inbox and
the live stream, the grace period, muting, Web Push decrypted at a local push endpoint, signed webhooks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import http_ece
import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from libs.devstack.stack import Stack
from tests.conftest import Member, assert_problem
from tests.integration.notify_helpers import (
    Received,
    Receiver,
    end_open_sessions,
    followed,
    minutes,
    publish_events,
    session,
    signature_ok,
)

MakeMember = Callable[..., Member]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def new_channel(api: httpx.Client, owner: Member) -> dict[str, Any]:
    r = api.post(
        "/api/v1/channels",
        json={"name": owner.username, "title": "Live birds", "category": "Art"},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def inbox(api: httpx.Client, member: Member, **params: Any) -> dict[str, Any]:
    r = api.get("/api/v1/notifications", params=params, headers=member.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_inbox(
    api: httpx.Client, member: Member, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Poll the member's inbox until it holds `count` notifications (and not more)."""
    deadline = time.monotonic() + timeout
    while True:
        items: list[dict[str, Any]] = inbox(api, member, limit=100)["items"]
        if len(items) >= count or time.monotonic() > deadline:
            assert len(items) == count, items
            return items
        await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
async def _end_sessions(stack: Stack) -> AsyncIterator[None]:
    """The sessions a test starts end with it, so they hold no transcoder slot from the tests after."""
    yield
    await end_open_sessions(stack.nats_url)


@pytest.fixture
def owner(make_member: MakeMember) -> Member:
    return make_member()


@pytest.fixture
def channel(api: httpx.Client, owner: Member) -> dict[str, Any]:
    return new_channel(api, owner)


async def follow(stack: Stack, member: Member, channel: dict[str, Any]) -> None:
    await publish_events(stack.nats_url, followed(member.id, member.username, channel["id"], channel["name"]))


async def read_sse(lines: AsyncIterator[str], wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    """The data of the next SSE event named `wanted` (`lines` is one response's aiter_lines())."""
    event = ""

    async def scan() -> dict[str, Any]:
        nonlocal event
        async for line in lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == wanted:
                result: dict[str, Any] = json.loads(line.split(":", 1)[1])
                return result
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), timeout)


async def test_go_live_reaches_live_stream_and_inbox_and_owner_hears_of_follow(
    stack: Stack, api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    fan = make_member()
    await follow(stack, fan, channel)
    owner_items = await wait_inbox(api, owner, 1)
    assert owner_items[0]["kind"] == "follow"
    assert owner_items[0]["actor_username"] == fan.username

    async with (
        httpx.AsyncClient(base_url=stack.url, timeout=15) as client,
        client.stream("GET", "/api/v1/notifications/stream", headers=fan.headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        await read_sse(lines, "ready")
        await publish_events(stack.nats_url, *session(channel["id"], channel["name"], datetime.now(UTC)))
        pushed = await read_sse(lines, "notification")
    assert pushed["kind"] == "live"
    assert pushed["channel_name"] == channel["name"]

    page = inbox(api, fan)
    assert [n["id"] for n in page["items"]] == [pushed["id"]]
    assert page["unread_count"] == 1
    r = api.post("/api/v1/notifications/read", json={"ids": [pushed["id"]]}, headers=fan.headers)
    assert r.status_code == 200
    assert r.json() == {"marked": 1, "unread_count": 0}
    # Another user's ids change nothing.
    r = api.post("/api/v1/notifications/read", json={"ids": [pushed["id"]]}, headers=owner.headers)
    assert r.json()["marked"] == 0


async def test_stream_ticket_is_single_use(stack: Stack, api: httpx.Client, owner: Member) -> None:
    r = api.post("/api/v1/notifications/stream-ticket", headers=owner.headers)
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"
    ticket = r.json()["ticket"]
    async with (
        httpx.AsyncClient(base_url=stack.url, timeout=15) as client,
        client.stream("GET", "/api/v1/notifications/stream", params={"ticket": ticket}) as response,
    ):
        assert response.status_code == 200
        await read_sse(response.aiter_lines(), "ready")
    assert_problem(api.get("/api/v1/notifications/stream", params={"ticket": ticket}), 401, "ticket")
    assert_problem(api.get("/api/v1/notifications/stream"), 401, "ticket")


async def test_reconnect_within_grace_does_not_notify_again_but_a_new_session_does(
    stack: Stack, api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    fan = make_member()
    await follow(stack, fan, channel)
    # Follows and sessions come through different consumers: the follow must be in before going live.
    await wait_until_following(api, owner, fan)
    t0 = datetime.now(UTC) - minutes(60)
    cid, name = channel["id"], channel["name"]
    first = session(cid, name, t0, t0 + minutes(10))
    await publish_events(stack.nats_url, *first)
    await wait_inbox(api, fan, 1)
    # The encoder dropped out for 3 minutes: a new session, within the 10-minute grace.
    await publish_events(stack.nats_url, *session(cid, name, t0 + minutes(13), t0 + minutes(20)))
    # The same start delivered again (a new event id): still nothing new.
    await publish_events(stack.nats_url, type(first[0])(**{**_fields(first[0]), "event_id": "again-" + name}))
    # A real new session 30 minutes after the last end.
    await publish_events(stack.nats_url, *session(cid, name, t0 + minutes(50)))
    items = await wait_inbox(api, fan, 2)
    await asyncio.sleep(0.5)
    assert len(inbox(api, fan)["items"]) == 2, items


def _fields(event: Any) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


async def test_muted_channel_and_silenced_user_are_not_notified(
    stack: Stack, api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    loud, muted, silent = make_member(), make_member(), make_member()
    for m in (loud, muted, silent):
        await follow(stack, m, channel)
    r = api.put(
        "/api/v1/me/notification-preferences",
        json={"muted_channels": [channel["name"]]},
        headers=muted.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["muted_channels"] == [channel["name"]]
    r = api.put("/api/v1/me/notification-preferences", json={"enabled": False}, headers=silent.headers)
    assert r.json()["enabled"] is False
    for m in (loud, muted, silent):
        await wait_until_following(api, owner, m)
    await publish_events(stack.nats_url, *session(channel["id"], channel["name"], datetime.now(UTC)))
    await wait_inbox(api, loud, 1)
    assert inbox(api, muted)["items"] == []
    assert inbox(api, silent)["items"] == []


async def test_web_push_is_encrypted_for_the_subscription_and_signed_with_vapid(
    stack: Stack, api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    fan = make_member()
    browser_key = ec.generate_private_key(ec.SECP256R1())
    auth_secret = os.urandom(16)
    public = browser_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    async def accept(_: Received) -> web.Response:
        return web.Response(status=201)

    endpoint = await Receiver(accept).start()
    try:
        r = api.post(
            "/api/v1/push/subscriptions",
            json={"endpoint": endpoint.url, "keys": {"p256dh": b64url(public), "auth": b64url(auth_secret)}},
            headers=fan.headers,
        )
        assert r.status_code == 201, r.text
        await follow(stack, fan, channel)
        await wait_until_following(api, owner, fan)
        await publish_events(stack.nats_url, *session(channel["id"], channel["name"], datetime.now(UTC)))
        [push] = await endpoint.wait_for(1)
    finally:
        await endpoint.stop()
    assert push.headers["Content-Encoding"] == "aes128gcm"
    plain = http_ece.decrypt(push.body, private_key=browser_key, auth_secret=auth_secret, version="aes128gcm")
    message = json.loads(plain)
    assert message["notification"]["channel_name"] == channel["name"]
    assert message["title"] == f"{channel['name']} is live"
    # RFC 8292: "vapid t=<JWT>, k=<our public key>", the JWT signed by that key for the endpoint's origin.
    scheme, _, params = push.headers["Authorization"].partition(" ")
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert scheme == "vapid"
    assert fields["k"] == api.get("/api/v1/push/vapid-public-key").json()["public_key"]
    point = base64.urlsafe_b64decode(fields["k"] + "=" * (-len(fields["k"]) % 4))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    claims = jwt.decode(fields["t"], key, algorithms=["ES256"], audience=endpoint.url.rsplit("/", 1)[0])
    assert claims["sub"].startswith("mailto:")


async def wait_until_following(api: httpx.Client, owner: Member, fan: Member) -> None:
    """The follow is in the projection once the owner was told of it (same handler, after the write)."""
    for _ in range(100):
        if any(n["actor_username"] == fan.username for n in inbox(api, owner, limit=100)["items"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{fan.username}'s follow never arrived")


async def test_webhook_is_verified_then_delivers_signed_stream_online(
    stack: Stack, api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    secret = "s3cret-for-the-test"

    async def callback(item: Received) -> web.Response:
        if not signature_ok(secret, item):
            return web.Response(status=403)
        body = json.loads(item.body)
        if item.headers["CPC-Message-Type"] == "webhook_callback_verification":
            return web.Response(text=body["challenge"])
        return web.Response(status=204)

    receiver = await Receiver(callback).start()
    base = f"/api/v1/channels/{channel['name']}/webhooks"
    try:
        stranger = make_member()
        body = {"type": "stream.online", "callback_url": receiver.url, "secret": secret}
        assert_problem(api.post(base, json=body, headers=stranger.headers), 403, "owner")
        assert_problem(
            api.post(base, json={**body, "type": "stream.party"}, headers=owner.headers), 400, "stream.party"
        )
        assert_problem(api.post(base, json={**body, "secret": "short"}, headers=owner.headers), 400, "secret")
        assert_problem(
            api.post(base, json={**body, "callback_url": "ftp://x"}, headers=owner.headers), 400, "url"
        )
        r = api.post(base, json=body, headers=owner.headers)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "verification_pending"
        hook_id = r.json()["id"]
        assert_problem(api.post(base, json=body, headers=owner.headers), 409, "exists")
        for _ in range(100):
            [hook] = api.get(base, headers=owner.headers).json()["items"]
            if hook["status"] == "enabled":
                break
            await asyncio.sleep(0.1)
        assert hook["status"] == "enabled"
        started = session(channel["id"], channel["name"], datetime.now(UTC))
        await publish_events(stack.nats_url, *started)
        received = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    delivery = received[1]
    assert signature_ok(secret, delivery)
    assert delivery.headers["CPC-Message-Type"] == "notification"
    assert delivery.headers["CPC-Subscription-Type"] == "stream.online"
    event = json.loads(delivery.body)["event"]
    assert event["id"] == started[0].session_id
    assert event["broadcaster_user_login"] == channel["name"]
    # A tampered body fails the receiver's check.
    tampered = Received(delivery.headers, delivery.body.replace(b"live", b"dead"), delivery.at)
    assert not signature_ok(secret, tampered)
    assert api.delete(f"{base}/{hook_id}", headers=owner.headers).status_code == 204
    assert_problem(api.delete(f"{base}/{hook_id}", headers=owner.headers), 404, hook_id)


async def test_channel_created_a_moment_ago_is_learned_from_the_channel_service(
    api: httpx.Client, owner: Member, channel: dict[str, Any], database_url: str
) -> None:
    # The service's copy of channels comes from channel events; a channel whose event it has not handled
    # yet is asked of the channel service. Emptying the copy stands in for the event arriving late.
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            if await conn.fetchval(
                "SELECT count(*) FROM notification.copied_channels WHERE channel_id = $1", channel["id"]
            ):
                break
            await asyncio.sleep(0.1)
        await conn.execute("DELETE FROM notification.copied_channels WHERE channel_id = $1", channel["id"])
        base = f"/api/v1/channels/{channel['name'].upper()}/webhooks"
        body = {
            "type": "stream.online",
            "callback_url": "http://127.0.0.1:9/hook",
            "secret": "s3cret-learned",
        }
        r = api.post(base, json=body, headers=owner.headers)
        assert r.status_code == 202, r.text
        assert r.json()["channel_name"] == channel["name"]
        learned = await conn.fetchrow(
            "SELECT name, owner_id FROM notification.copied_channels WHERE channel_id = $1", channel["id"]
        )
        assert dict(learned) == {"name": channel["name"], "owner_id": owner.id}
        # Preferences naming a channel the copy lacks learn it too; a channel that does not exist is refused.
        await conn.execute("DELETE FROM notification.copied_channels WHERE channel_id = $1", channel["id"])
        prefs = {"muted_channels": [channel["name"]]}
        r = api.put("/api/v1/me/notification-preferences", json=prefs, headers=owner.headers)
        assert r.status_code == 200, r.text
        assert r.json()["muted_channels"] == [channel["name"]]
        prefs = {"muted_channels": [channel["name"], "never_created_zz"]}
        assert_problem(
            api.put("/api/v1/me/notification-preferences", json=prefs, headers=owner.headers),
            400,
            "never_created_zz",
        )
    finally:
        await conn.close()


def test_bad_input_is_a_clear_problem(api: httpx.Client, owner: Member) -> None:
    h = owner.headers
    assert_problem(api.get("/api/v1/notifications", params={"limit": 0}, headers=h), 400, "limit")
    assert_problem(api.get("/api/v1/notifications", params={"cursor": "x'"}, headers=h), 400, "cursor")
    assert_problem(api.post("/api/v1/notifications/read", json={}, headers=h), 400, "ids")
    assert_problem(api.post("/api/v1/notifications/read", json={"ids": [-1]}, headers=h), 400, "ids")
    assert_problem(api.get("/api/v1/notifications"), 401)
    bad_key = {"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}
    assert_problem(api.post("/api/v1/push/subscriptions", json=bad_key, headers=h), 400, "p256dh")
    prefs = {"muted_channels": ["no_such_channel_zz"]}
    assert_problem(
        api.put("/api/v1/me/notification-preferences", json=prefs, headers=h), 400, "no_such_channel_zz"
    )
    assert_problem(
        api.get("/api/v1/channels/no_such_channel_zz/webhooks", headers=h), 404, "no_such_channel_zz"
    )
