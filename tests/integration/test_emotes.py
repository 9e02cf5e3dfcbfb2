"""Emotes: upload through the gateway to the channel service (Pillow), images served from the object
store, the global set, and gating in chat by subscription tier."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import httpx
from PIL import Image

from libs.bus import connect, publish, utcnow
from libs.devstack.stack import Stack
from proto import social
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.chat_client import ChatClient


def _png(color: tuple[int, int, int, int] = (200, 30, 30, 255), size: tuple[int, int] = (300, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, color).save(buf, "PNG")
    return buf.getvalue()


def _gif(frames: int = 4) -> bytes:
    images = [Image.new("RGB", (64, 64), (i * 60, 100, 200 - i * 40)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buf.getvalue()


def _channel(api: httpx.Client, owner: Member) -> str:
    name = unique_name("em")
    r = api.post(
        "/api/v1/channels", json={"name": name, "title": "emotes", "category": "Art"}, headers=owner.headers
    )
    assert r.status_code == 201, r.text
    return name


def _upload(
    api: httpx.Client, owner: Member, name: str, code: str, data: bytes, **params: object
) -> httpx.Response:
    return api.post(
        f"/api/v1/channels/{name}/emotes",
        params={"code": code, **params},
        content=data,
        headers={**owner.headers, "Content-Type": "image/png" if data[:4] == b"\x89PNG" else "image/gif"},
    )


def test_upload_resizes_keeps_animation_and_lists(api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    owner = make_member()
    name = _channel(api, owner)
    r = _upload(api, owner, name, "wideRed", _png())
    assert r.status_code == 201, r.text
    emote = r.json()
    assert emote["animated"] is False
    assert set(emote["urls"]) == {"1x", "2x", "4x"}
    for size, side in (("1x", 28), ("2x", 56), ("4x", 112)):
        img = api.get(emote["urls"][size])
        assert img.status_code == 200
        assert "immutable" in img.headers["cache-control"]
        assert Image.open(io.BytesIO(img.content)).size == (side, side)
    animated = _upload(api, owner, name, "spinny", _gif())
    assert animated.status_code == 201, animated.text
    body = api.get(animated.json()["urls"]["2x"]).content
    assert getattr(Image.open(io.BytesIO(body)), "n_frames", 1) == 4
    codes = [e["code"] for e in api.get(f"/api/v1/channels/{name}/emotes").json()["items"]]
    assert codes == ["wideRed", "spinny"]
    assert api.delete(f"/api/v1/channels/{name}/emotes/spinny", headers=owner.headers).status_code == 204
    assert [e["code"] for e in api.get(f"/api/v1/channels/{name}/emotes").json()["items"]] == ["wideRed"]
    assert_problem(api.get(animated.json()["urls"]["1x"]), 404, "no emote")


def test_upload_refusals(api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = make_member(), make_member()
    name = _channel(api, owner)
    assert_problem(_upload(api, owner, name, "no", _png()), 400, "3 to 25")
    assert_problem(_upload(api, owner, name, "bad-code", _png()), 400, "letters and digits")
    assert_problem(_upload(api, owner, name, "tiered", _png(), tier=5), 400, "tier")
    assert_problem(_upload(api, stranger, name, "notMine", _png()), 403, "owner")
    assert_problem(_upload(api, owner, name, "cpcSmile", _png()), 409, "taken")  # a global code
    junk = api.post(
        f"/api/v1/channels/{name}/emotes",
        params={"code": "junk"},
        content=b"GIF89a not really",
        headers={**owner.headers, "Content-Type": "image/gif"},
    )
    assert_problem(junk, 400, "image")
    jpeg = api.post(
        f"/api/v1/channels/{name}/emotes",
        params={"code": "jpeg"},
        content=b"\xff\xd8\xff",
        headers={**owner.headers, "Content-Type": "image/jpeg"},
    )
    assert_problem(jpeg, 415, "image/jpeg")
    assert_problem(
        api.delete(f"/api/v1/channels/{name}/emotes/nothing", headers=owner.headers), 404, "nothing"
    )
    assert_problem(api.get("/api/v1/emotes/../x/1x"), 404)


def test_global_set_is_shipped(api: httpx.Client) -> None:
    items = api.get("/api/v1/emotes/global").json()["items"]
    assert {"cpcSmile", "cpcHeart", "cpcSpin"} <= {e["code"] for e in items}
    spin = next(e for e in items if e["code"] == "cpcSpin")
    assert spin["animated"] is True
    img = Image.open(io.BytesIO(api.get(spin["urls"]["4x"]).content))
    assert img.size == (112, 112)
    assert getattr(img, "n_frames", 1) > 1


async def test_emote_gating_in_chat(stack: Stack, api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    owner, fan, other = make_member(), make_member(), make_member()
    name = _channel(api, owner)
    assert _upload(api, owner, name, "subHype", _png(), tier=2).status_code == 201
    assert _upload(api, owner, name, "freeWave", _png((0, 0, 255, 255))).status_code == 201
    fan_socket = await ChatClient.open(stack.url, name, fan.tokens["access_token"])
    other_socket = await ChatClient.open(stack.url, name, other.tokens["access_token"])
    nc = await connect(stack.nats_url, name="test-social")
    await publish(
        nc.jetstream(),
        social.Subscribed(
            subscription_id=unique_name("sub"),
            user_id=fan.id,
            username=fan.username,
            channel_id=fan_socket.welcome["room_id"],
            channel_name=name,
            tier=2,
            cumulative_months=1,
            streak_months=1,
            period_end=utcnow() + timedelta(days=30),
        ),
    )
    await nc.drain()

    async def kinds(client: ChatClient) -> list[str]:
        ack = await client.say("subHype freeWave cpcSmile")
        return [f["type"] for f in (await client.message(ack["id"]))["fragments"]]

    for _ in range(15):  # the emotes and the subscription reach chat from events
        if await kinds(fan_socket) == ["emote", "text", "emote", "text", "emote"]:
            break
        await asyncio.sleep(0.2)
    assert await kinds(fan_socket) == ["emote", "text", "emote", "text", "emote"]
    # Not a tier-2 subscriber: the gated emote stays text (merged with the space after it).
    assert await kinds(other_socket) == ["text", "emote", "text", "emote"]
    ack = await other_socket.say("cpcSpin")
    frag = (await other_socket.message(ack["id"]))["fragments"][0]
    assert frag["emote"]["animated"] is True
    assert frag["emote"]["urls"]["1x"].startswith("/api/v1/emotes/")
    for c in (fan_socket, other_socket):
        await c.close()
