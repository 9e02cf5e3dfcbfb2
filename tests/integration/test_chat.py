"""Chat through the gateway's WebSocket with real clients, against real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from libs.bus import NotFound, connect, publish, utcnow
from libs.devstack.stack import Stack
from libs.replica import Replica
from proto import channel, identity, social
from proto import chat as pc
from services.chat.app import MIGRATIONS
from services.chat.moderation import Moderation
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.chat_client import ChatClient, text_of
from tests.integration.upgrades import upgraded


@pytest.fixture
def room(api: httpx.Client, make_member):  # type: ignore[no-untyped-def]
    """A new channel, chatted in at once: its room opens with it; returns (owner, channel name)."""
    owner: Member = make_member()
    name = unique_name("ch")
    r = api.post(
        "/api/v1/channels",
        json={"name": name, "title": "chat", "category": "Just Chatting"},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    return owner, name


async def _open(stack: Stack, name: str, member: Member | None = None) -> ChatClient:
    return await ChatClient.open(stack.url, name, member.tokens["access_token"] if member else "")


async def _publish(stack: Stack, *events: social.Followed | social.SubscriptionState) -> None:
    nc = await connect(stack.nats_url, name="test-social")
    try:
        for event in events:
            await publish(nc.jetstream(), event)
    finally:
        await nc.drain()


async def _until(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Retry an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_message_reaches_readers_as_fragments(stack: Stack, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    chatter = make_member()
    reader = await _open(stack, name)
    sender = await _open(stack, name, chatter)
    assert reader.welcome["type"] == "welcome"
    assert reader.welcome["me"] is None
    assert sender.welcome["me"]["limits"]["rate_messages"] == 20
    ack = await sender.say(f"hi @{owner.username} see https://example.com/x?a=1 <b>x</b>")
    assert ack["type"] == "ack", ack
    assert ack["kind"] == "message", ack
    got = await reader.message(ack["id"])
    kinds = [f["type"] for f in got["fragments"]]
    assert kinds == ["text", "mention", "text", "link", "text"], got
    assert got["fragments"][1]["username"] == owner.username.lower()
    assert got["fragments"][3]["url"] == "https://example.com/x?a=1"
    assert got["fragments"][4]["text"] == " <b>x</b>"  # stays text: clients never render HTML
    assert got["sender"] == {"id": chatter.id, "username": chatter.username, "badges": []}
    refused = await reader.say("anonymous hello")
    assert refused["type"] == "error"
    assert refused["code"] == "sign_in_required"
    me = await sender.say("/me waves")
    assert (await reader.message(me["id"]))["action"] is True
    for c in (reader, sender):
        await c.close()


async def test_text_rules_refuse_and_clean(stack: Stack, room, make_member) -> None:  # type: ignore[no-untyped-def]
    _, name = room
    chatter = await _open(stack, name, make_member())
    empty = await chatter.say(" \u202e\t ")
    assert empty["code"] == "empty_message"
    assert "empty" in empty["detail"]
    long = await chatter.say("x" * 501)
    assert long["code"] == "message_too_long"
    assert "501" in long["detail"]
    ok = await chatter.say("e\u0301" * 250)  # 500 after NFC (each pair becomes one character)
    assert ok["type"] == "ack", ok
    clean = await chatter.say("abc\u202edef\u0007g")
    assert text_of(await chatter.message(clean["id"])) == "abcdefg"
    await chatter.send_raw("{not json")
    bad = await chatter.wait_for(lambda f: f["type"] == "error" and f["code"] == "invalid_frame")
    assert "unreadable" in bad["detail"]
    unknown = await chatter.say("/frobnicate now")
    assert unknown["code"] == "unknown_command"
    assert "/frobnicate" in unknown["detail"]
    await chatter.close()


async def test_rate_limit_20th_accepted_21st_refused(stack: Stack, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    chatter = await _open(stack, name, make_member())
    for i in range(20):
        ack = await chatter.say(f"message {i}")
        assert ack["type"] == "ack", (i, ack)
    refused = await chatter.say("one too many")
    assert refused["code"] == "rate_limited"
    assert refused["status"] == 429
    assert "20 messages per 30 s" in refused["detail"]
    assert refused["retry_at"]
    assert refused["retry_after"] > 0
    broadcaster = await _open(stack, name, owner)
    for i in range(21):  # 100 for the broadcaster
        assert (await broadcaster.say(f"b{i}"))["type"] == "ack"
    for c in (chatter, broadcaster):
        await c.close()


async def test_ban_timeout_and_protections(stack: Stack, api: httpx.Client, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    mod, other_mod, viewer = make_member(), make_member(), make_member()
    boss = await _open(stack, name, owner)
    for m in (mod, other_mod):
        done = await boss.say(f"/mod {m.username}")
        assert done["type"] == "ack", done
        assert "now a moderator" in done["detail"], done
    r = api.get(f"/api/v1/channels/{name}/moderators")
    assert {i["username"] for i in r.json()["items"]} == {mod.username, other_mod.username}
    viewer_socket = await _open(stack, name, viewer)
    said = await viewer_socket.say("before the ban")
    moderator = await _open(stack, name, mod)

    # The moderator role reaches chat from the channel service's event.
    async def is_mod() -> bool:
        return (await moderator.say(f"/ban {other_mod.username}"))["code"] != "not_moderator"

    assert await _until(is_mod)
    protected = await moderator.say(f"/ban {other_mod.username}")
    assert protected["code"] == "protected_user"
    assert "moderator" in protected["detail"]
    on_owner = await moderator.say(f"/timeout {owner.username} 60")
    assert on_owner["code"] == "protected_user"
    assert "broadcaster" in on_owner["detail"]
    not_owner = await moderator.say(f"/vip {viewer.username}")
    assert not_owner["code"] == "not_owner"
    timed = await moderator.say(f"/timeout {viewer.username} 120 calm down")
    assert timed["type"] == "ack", timed
    assert "timed out until" in timed["detail"], timed
    purged = await viewer_socket.wait_for(lambda f: f["type"] == "purged")
    assert purged["user_id"] == viewer.id
    assert purged["until"]
    refused = await viewer_socket.say("let me talk")
    assert refused["code"] == "timed_out"
    assert "calm down" in refused["detail"]
    assert "until" in refused["detail"]
    assert 100 < refused["retry_after"] <= 120
    assert (await moderator.say(f"/untimeout {viewer.username}"))["type"] == "ack"
    assert (await viewer_socket.say("back"))["type"] == "ack"
    banned = await moderator.say(f"/ban {viewer.username} spam links")
    assert banned["type"] == "ack"
    refused = await viewer_socket.say("still here")
    assert refused["code"] == "banned"
    assert "spam links" in refused["detail"]
    late = await _open(stack, name, viewer)
    assert late.welcome["me"]["blocked"].startswith("you are banned")
    assert said["id"] not in {m["id"] for m in late.welcome["history"]}  # purged with the ban
    assert (await moderator.say(f"/unban {viewer.username}"))["type"] == "ack"
    again = await moderator.say(f"/unban {viewer.username}")
    assert again["code"] == "not_banned"
    log = api.get(f"/api/v1/channels/{name}/chat/moderation", headers=owner.headers)
    actions = [(i["action"], i["target"]) for i in log.json()["items"]]
    assert ("ban", viewer.username) in actions
    assert ("timeout", viewer.username) in actions
    assert ("mod", mod.username) in actions
    assert all(i["at"] for i in log.json()["items"])
    assert_problem(
        api.get(f"/api/v1/channels/{name}/chat/moderation", headers=viewer.headers), 403, "broadcaster"
    )
    for c in (boss, viewer_socket, moderator, late):
        await c.close()


async def test_delete_and_clear_stay_deleted_in_history(stack: Stack, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    boss = await _open(stack, name, owner)
    chatter = await _open(stack, name, make_member())
    keep = await chatter.say("keep me")
    gone = await chatter.say("delete me")
    await boss.message(gone["id"])
    done = await boss.say(f"/delete {gone['id']}")
    assert done["type"] == "ack", done
    assert (await chatter.wait_for(lambda f: f["type"] == "deleted"))["id"] == gone["id"]
    fresh = await _open(stack, name)
    ids = [m["id"] for m in fresh.welcome["history"]]
    assert keep["id"] in ids
    assert gone["id"] not in ids
    missing = await boss.say("/delete 00000000-0000-0000-0000-000000000000")
    assert missing["code"] == "message_not_found"
    assert (await boss.say("/clear"))["type"] == "ack"
    await chatter.wait_for(lambda f: f["type"] == "cleared")
    after = await _open(stack, name)
    assert after.welcome["history"] == []
    for c in (boss, chatter, fresh, after):
        await c.close()


async def test_room_modes(stack: Stack, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    fan, stranger = make_member(), make_member()
    boss = await _open(stack, name, owner)
    fan_socket, stranger_socket = await _open(stack, name, fan), await _open(stack, name, stranger)
    channel_id = fan_socket.welcome["room_id"]
    await _publish(
        stack,
        social.Followed(
            user_id=fan.id,
            username=fan.username,
            channel_id=channel_id,
            channel_name=name,
            followed_at=utcnow() - timedelta(minutes=30),
        ),
    )
    assert (await boss.say("/followers 10"))["type"] == "ack"
    modes = await stranger_socket.wait_for(lambda f: f["type"] == "modes")
    assert modes["modes"]["followers_only_minutes"] == 10
    refused = await stranger_socket.say("hello")
    assert refused["code"] == "followers_only"
    assert "follow" in refused["detail"]

    async def fan_may_send() -> bool:
        return (await fan_socket.say("I follow"))["type"] == "ack"

    assert await _until(fan_may_send)
    assert (await boss.say("/followersoff"))["type"] == "ack"
    assert (await boss.say("/slow 30"))["type"] == "ack"
    assert (await stranger_socket.say("first"))["type"] == "ack"
    slow = await stranger_socket.say("second")
    assert slow["code"] == "slow_mode"
    assert "30 s" in slow["detail"]
    assert 25 < slow["retry_after"] <= 30
    assert (await boss.say("/slowoff"))["type"] == "ack"
    assert (await boss.say("/subscribers"))["type"] == "ack"
    subs = await stranger_socket.say("no sub")
    assert subs["code"] == "subscribers_only"
    assert (await boss.say("/subscribersoff"))["type"] == "ack"
    assert (await boss.say("/emoteonly"))["type"] == "ack"
    words = await stranger_socket.say("words")
    assert words["code"] == "emote_only"
    assert (await boss.say("the broadcaster is exempt"))["type"] == "ack"
    assert (await boss.say("/emoteonlyoff"))["type"] == "ack"
    assert (await stranger_socket.say("words again"))["type"] == "ack"
    late = await _open(stack, name)
    assert late.welcome["modes"] == {
        "slow_seconds": 0,
        "followers_only_minutes": None,
        "subscribers_only": False,
        "emote_only": False,
    }
    for c in (boss, fan_socket, stranger_socket, late):
        await c.close()


async def test_blocked_terms(stack: Stack, api: httpx.Client, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    boss = await _open(stack, name, owner)
    chatter = await _open(stack, name, make_member())
    assert (await boss.say("/block Forbidden Word"))["type"] == "ack"
    refused = await chatter.say("this has a FORBIDDEN word in it")
    assert refused["code"] == "blocked_term"
    terms = api.get(f"/api/v1/channels/{name}/chat/blocked-terms", headers=owner.headers).json()["items"]
    assert [t["term"] for t in terms] == ["forbidden word"]
    r = api.post(
        f"/api/v1/channels/{name}/chat/moderation",
        json={"action": "unblock", "target": "forbidden word"},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    assert "unblocked" in r.json()["detail"], r.text
    assert (await chatter.say("this has a forbidden word in it"))["type"] == "ack"
    bad = api.post(
        f"/api/v1/channels/{name}/chat/moderation", json={"action": "explode"}, headers=owner.headers
    )
    assert_problem(bad, 400, "action")
    for c in (boss, chatter):
        await c.close()


async def test_subscriber_badge_after_subscription_event(stack: Stack, room, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    fan = make_member()
    fan_socket = await _open(stack, name, fan)
    channel_id = fan_socket.welcome["room_id"]
    await _publish(
        stack,
        social.Subscribed(
            subscription_id=unique_name("sub"),
            user_id=fan.id,
            username=fan.username,
            channel_id=channel_id,
            channel_name=name,
            tier=2,
            cumulative_months=7,
            streak_months=3,
            period_end=utcnow() + timedelta(days=30),
        ),
    )

    async def badged() -> list[dict[str, object]]:
        ack = await fan_socket.say("am I subscribed?")
        return [
            b for b in (await fan_socket.message(ack["id"]))["sender"]["badges"] if b["kind"] == "subscriber"
        ]

    badges = await _until(badged)
    assert badges == [{"kind": "subscriber", "tier": 2, "months": 7}]
    boss = await _open(stack, name, owner)
    assert boss.welcome["me"]["badges"] == [{"kind": "broadcaster", "tier": 0, "months": 0}]
    for c in (fan_socket, boss):
        await c.close()


async def test_room_of_a_channel_whose_event_is_late_opens_from_the_channel_service(
    stack: Stack, room, make_member, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    # The service's rooms come from its copy of channels; emptying the copy stands in for the event arriving
    # late. Joining and chatting still work: the room is asked of the channel service.
    conn = await asyncpg.connect(database_url)
    try:
        room_id = await _until(
            lambda: conn.fetchval("SELECT channel_id FROM chat.copied_channels WHERE name = $1", name)
        )
        assert room_id
        await conn.execute("DELETE FROM chat.copied_channels WHERE channel_id = $1", room_id)
        chatter = make_member()
        sender = await _open(stack, name.upper(), chatter)
        assert sender.welcome["type"] == "welcome", sender.welcome
        boss = await _open(stack, name, owner)
        assert boss.welcome["me"]["badges"] == [{"kind": "broadcaster", "tier": 0, "months": 0}]
        ack = await sender.say("first!")
        assert ack["type"] == "ack", ack
        assert text_of(await boss.message(ack["id"])) == "first!"
        relearned = await conn.fetchrow(
            "SELECT channel_id, owner_id FROM chat.copied_channels WHERE name = $1", name
        )
        assert dict(relearned) == {"channel_id": room_id, "owner_id": owner.id}
        # Likewise a user registered a moment ago can be timed out before the chat has their event.
        newcomer = make_member()
        await _until(lambda: conn.fetchval("SELECT 1 FROM chat.copied_users WHERE user_id = $1", newcomer.id))
        await conn.execute("DELETE FROM chat.copied_users WHERE user_id = $1", newcomer.id)
        timed_out = await boss.say(f"/timeout {newcomer.username} 60")
        assert timed_out["type"] == "ack", timed_out
        assert (
            await conn.fetchval("SELECT username FROM chat.copied_users WHERE user_id = $1", newcomer.id)
            == newcomer.username
        )
        for c in (sender, boss):
            await c.close()
    finally:
        await conn.close()


async def test_unknown_room_and_bad_hello(stack: Stack) -> None:
    missing = await ChatClient.open(stack.url, "no_such_channel_here")
    assert missing.welcome["code"] == "room_not_found"
    bad = await ChatClient.open(stack.url, "no_such_channel_here", token="not-a-token")
    assert bad.welcome["code"] == "invalid_token"
    assert bad.welcome["status"] == 401
    for c in (missing, bad):
        await c.close()


async def test_vip_and_roles_go_through_the_channel_service(
    stack: Stack, api: httpx.Client, room, make_member
) -> None:  # type: ignore[no-untyped-def]
    owner, name = room
    fan = make_member()
    boss = await _open(stack, name, owner)
    fan_socket = await _open(stack, name, fan)
    granted = await boss.say(f"/vip @{fan.username}")
    assert granted["type"] == "ack", granted
    assert granted["detail"] == f"{fan.username} is now a vip"
    assert [v["username"] for v in api.get(f"/api/v1/channels/{name}/vips").json()["items"]] == [fan.username]

    async def vip_badge() -> bool:
        ack = await fan_socket.say("am I a VIP?")
        badges = (await fan_socket.message(ack["id"]))["sender"]["badges"]
        return {"kind": "vip", "tier": 0, "months": 0} in badges

    assert await _until(vip_badge)
    assert (await boss.say(f"/unvip {fan.username}"))["detail"] == f"{fan.username} is no longer a vip"
    assert (await boss.say(f"/unvip {fan.username}"))["detail"] == f"{fan.username} was not a vip"
    assert (await boss.say(f"/mod {fan.username}"))["type"] == "ack"
    unmod = await boss.say(f"/unmod {fan.username}")
    assert unmod["detail"] == f"{fan.username} is no longer a moderator"
    assert api.get(f"/api/v1/channels/{name}/moderators").json()["items"] == []
    nobody = await boss.say("/mod no_such_user_anywhere")
    assert nobody["code"] == "user_not_found"
    assert "no_such_user_anywhere" in nobody["detail"]
    for c in (boss, fan_socket):
        await c.close()


# --- the move to copies -------------------------------------------------------------------------------

_OLD_ROWS = """
INSERT INTO users (id, username) VALUES ('o1', 'painter');
INSERT INTO rooms (room_id, name, owner_id, slow_seconds, emote_only)
VALUES ('c1', 'painter', 'o1', 30, true), ('c2', 'quiet', 'o1', 0, false);
"""


async def test_a_database_from_before_the_copies_keeps_its_room_modes(
    database_url: str, tmp_path: Path
) -> None:
    """002_copies drops users and rooms; a room's modes stay (in room_modes), and the room itself is read
    from the channels copy once it has the channel."""
    async with upgraded(database_url, MIGRATIONS, tmp_path, upto=1, old_rows=_OLD_ROWS) as up:
        pool, conn, tables = up.pool, up.conn, up.tables
        assert up.applied == [2]
        assert {"users", "rooms"}.isdisjoint(tables)
        users, channels = Replica(identity.USER), Replica(channel.CHANNEL)
        await users.install(conn)
        await channels.install(conn)
        # No NATS: a room missing from the copy is simply not found.
        moderation = Moderation(pool=pool, nc=None, js=None, users=users, channels=channels)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            await moderation.room(conn, "painter")
        for channel_id, name in (("c1", "painter"), ("c2", "quiet")):
            created = channel.ChannelCreated(
                channel_id=channel_id, name=name, owner_id="o1", title="", category="Art", tags=[],
                language="en", created_at=utcnow(),
            )  # fmt: skip
            await channels.apply(conn, created)
        painter = await moderation.room(conn, "PAINTER")
        assert (painter.room_id, painter.name, painter.owner_id) == ("c1", "painter", "o1")
        assert painter.modes == pc.Modes(slow_seconds=30, emote_only=True)
        assert (await moderation.room(conn, "quiet")).modes == pc.Modes()
