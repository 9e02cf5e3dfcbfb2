"""Channels through the gateway against the real channel service: create, search, edit, stream keys,
moderators and VIPs, avatar and banner images, and live status from stream session events."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.bus import NotFound, Unauthorized, connect, decode, publish, request, utcnow
from libs.devstack.stack import Stack
from libs.replica import Replica
from proto import identity, ingest
from proto.base import Lookup
from proto.channel import (
    CHECK_KEY,
    LOOKUP_CHANNEL,
    ChannelCopy,
    CheckKey,
    ImageUpdated,
    KeyOwner,
    KeyRotated,
    RoleGranted,
)
from proto.identity import LOOKUP_USER, UserCopy
from proto.ingest import SessionEnded, SessionStarted
from services.channel import store as channel_store
from services.channel.app import MIGRATIONS
from services.channel.events import follow_live_state
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.upgrades import upgraded
from tests.unit.test_channel_domain import image_bytes, png_bomb

MakeMember = Callable[..., Member]


def new_channel(api: httpx.Client, owner: Member, **fields: Any) -> dict[str, Any]:
    """Create `owner`'s channel (named after them unless told) and return its JSON."""
    body = {"name": owner.username, "title": "Painting birds, live", "category": "Art", "tags": ["painting"]}
    body.update(fields)
    r = api.post("/api/v1/channels", json=body, headers=owner.headers)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


@pytest.fixture
def owner(make_member: MakeMember) -> Member:
    """A signed-in user."""
    return make_member()


@pytest.fixture
def channel(api: httpx.Client, owner: Member) -> dict[str, Any]:
    """`owner`'s channel."""
    return new_channel(api, owner)


# --- create -------------------------------------------------------------------------------------------


def test_create_answers_201_with_the_channel(api: httpx.Client, owner: Member) -> None:
    r = api.post(
        "/api/v1/channels",
        json={
            "name": owner.username.upper(),
            "title": "  Birds  ",
            "category": "art",
            "tags": ["Painting", "painting", "chill"],
            "description": "Watercolours",
            "language": "FR",
        },
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/channels/{owner.username}"
    assert body["name"] == owner.username
    assert (body["owner_id"], body["owner_username"]) == (owner.id, owner.username)
    assert (body["title"], body["category"], body["language"]) == ("Birds", "Art", "fr")
    assert body["tags"] == ["Painting", "chill"]
    assert body["live"] is False
    assert body["avatar"] is None
    assert datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)


def test_one_channel_per_user(api: httpx.Client, owner: Member, channel: dict[str, Any]) -> None:
    r = api.post(
        "/api/v1/channels",
        json={"name": unique_name("c"), "title": "Second", "category": "Art"},
        headers=owner.headers,
    )
    assert_problem(r, 409, channel["name"], "one channel per user")


def test_names_are_unique_ignoring_case(
    api: httpx.Client, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    other = make_member()
    r = api.post(
        "/api/v1/channels",
        json={"name": channel["name"].upper(), "title": "Mine now", "category": "Art"},
        headers=other.headers,
    )
    assert_problem(r, 409, channel["name"], "taken")


def test_create_needs_a_valid_token(api: httpx.Client) -> None:
    body = {"name": unique_name("c"), "title": "t", "category": "Art"}
    assert_problem(api.post("/api/v1/channels", json=body), 401, "sign in")
    r = api.post("/api/v1/channels", json=body, headers={"Authorization": "Bearer not.a.jwt"})
    assert_problem(r, 401, "access token")
    r = api.post("/api/v1/channels", json=body, headers={"Authorization": "Basic abc"})
    assert_problem(r, 401, "Bearer")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "ab", "title": "t", "category": "Art"}, ['"ab"', "3 to 25"]),
        ({"name": "has space", "title": "t", "category": "Art"}, ['"has space"']),
        ({"name": "NAME", "title": "", "category": "Art"}, ["title"]),
        ({"name": "NAME", "title": "t", "category": "Knitting Contests"}, ["Knitting Contests"]),
        ({"name": "NAME", "title": "t", "category": "Art", "tags": ["no spaces"]}, ['"no spaces"']),
        (
            {"name": "NAME", "title": "t", "category": "Art", "tags": [f"t{i}" for i in range(11)]},
            ["11 tags"],
        ),
        ({"name": "NAME", "title": "t", "category": "Art", "language": "english"}, ['"english"']),
        ({"name": "NAME", "title": "x" * 141, "category": "Art"}, ["title", "140"]),
        ({"name": "NAME", "title": "t", "category": "Art", "owner_id": "me"}, ["owner_id"]),
        ({"name": "NAME", "title": 5, "category": "Art"}, ["title", "str"]),
        ({"name": "NAME", "title": "t", "category": "Art", "tags": "a,b"}, ["tags", "array"]),
        ({"title": "t", "category": "Art"}, ["name"]),
    ],
)
def test_create_refuses_bad_input_naming_it(
    api: httpx.Client, owner: Member, body: dict[str, Any], words: list[str]
) -> None:
    if body.get("name") == "NAME":
        body = {**body, "name": owner.username}
    r = api.post("/api/v1/channels", json=body, headers=owner.headers)
    assert_problem(r, 400, *words)
    assert api.get(f"/api/v1/channels/{owner.username}").status_code == 404  # nothing half-written


def test_create_refuses_malformed_and_oversize_json(api: httpx.Client, owner: Member) -> None:
    headers = {**owner.headers, "Content-Type": "application/json"}
    r = api.post("/api/v1/channels", content=b'{"name": "abc", ', headers=headers)
    body = assert_problem(r, 400)
    assert "json" in body["detail"].lower() or "malformed" in body["detail"].lower(), body
    big = {"name": owner.username, "title": "t", "category": "Art", "description": "d" * 70_000}
    assert_problem(api.post("/api/v1/channels", json=big, headers=owner.headers), 413, "too large")


# --- read, search -------------------------------------------------------------------------------------


def test_get_is_public_and_case_insensitive(api: httpx.Client, channel: dict[str, Any]) -> None:
    r = api.get(f"/api/v1/channels/{channel['name'].upper()}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == channel["id"]
    assert_problem(api.get("/api/v1/channels/nobody_here_42"), 404, '"nobody_here_42"')


def test_list_searches_name_title_and_tags_with_wildcards_taken_literally(
    api: httpx.Client, make_member: MakeMember
) -> None:
    word = secrets.token_hex(4)
    a = new_channel(api, make_member(), title=f"Cats {word} 100% fun", tags=["cats"])
    b = new_channel(api, make_member(), title="Dogs", tags=[f"tag{word}"], category="Music")
    c = new_channel(api, make_member(), title=f"Cats {word} 100x fun")

    def names(**params: Any) -> list[str]:
        r = api.get("/api/v1/channels", params=params)
        assert r.status_code == 200, r.text
        return [item["name"] for item in r.json()["items"]]

    assert set(names(q=word)) == {a["name"], b["name"], c["name"]}
    assert names(q=f"{word} 100%") == [a["name"]]  # % is a character here, not a wildcard
    assert names(q=f"{word}_100") == []  # _ too
    assert names(q=a["name"].upper()) == [a["name"]]
    assert names(q=word, category="music") == [b["name"]]
    assert names(tag=f"TAG{word}") == [b["name"]]
    assert names(q=word, live="false")[0] == c["name"]  # newest first


def test_list_pages_with_a_cursor(api: httpx.Client, make_member: MakeMember) -> None:
    word = secrets.token_hex(4)
    made = [new_channel(api, make_member(), title=f"Paged {word}")["name"] for _ in range(5)]
    seen: list[str] = []
    cursor = ""
    while True:
        r = api.get("/api/v1/channels", params={"q": word, "limit": 2, "cursor": cursor})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [item["name"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": 0}, ["limit", "0"]),
        ({"limit": 1000}, ["1000"]),
        ({"limit": "many"}, ["limit"]),
        ({"live": "maybe"}, ["live"]),
        ({"cursor": "not-a-cursor"}, ["cursor"]),
        ({"category": "Nope"}, ['"Nope"']),
        ({"q": "q" * 101}, ["101"]),
    ],
)
def test_list_refuses_bad_parameters(api: httpx.Client, params: dict[str, Any], words: list[str]) -> None:
    assert_problem(api.get("/api/v1/channels", params=params), 400, *words)


# --- edit ---------------------------------------------------------------------------------------------


def test_owner_patches_only_the_fields_sent(
    api: httpx.Client, owner: Member, channel: dict[str, Any]
) -> None:
    url = f"/api/v1/channels/{channel['name']}"
    r = api.patch(url, json={"title": "New title", "tags": ["a", "B"]}, headers=owner.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["title"], body["tags"], body["category"]) == ("New title", ["a", "B"], "Art")
    assert api.get(url).json()["title"] == "New title"
    r = api.patch(url, json={"description": "", "language": "de"}, headers=owner.headers)
    assert (r.json()["title"], r.json()["language"]) == ("New title", "de")


def test_patch_refusals(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    url = f"/api/v1/channels/{channel['name']}"
    assert_problem(api.patch(url, json={"title": "x"}), 401)
    other = make_member()
    assert_problem(
        api.patch(url, json={"title": "mine"}, headers=other.headers), 403, "owner", channel["name"]
    )
    assert_problem(api.patch(url, json={"name": "renamed"}, headers=owner.headers), 400, "name")
    assert_problem(api.patch(url, json={"category": "Nope"}, headers=owner.headers), 400, '"Nope"')
    assert_problem(api.patch(url, json={"title": None}, headers=owner.headers), 400, "title")
    assert_problem(api.patch(url, json=["title"], headers=owner.headers), 400)
    assert_problem(api.patch("/api/v1/channels/nobody_here_42", json={}, headers=owner.headers), 404)
    assert api.get(url).json()["title"] == channel["title"]


# --- stream keys --------------------------------------------------------------------------------------


async def check_key(stack: Stack, name: str, key: str) -> KeyOwner:
    nc = await connect(stack.nats_url, name="test-check-key")
    try:
        return await request(nc, CHECK_KEY, CheckKey(name=name, stream_key=key))
    finally:
        await nc.drain()


async def test_stream_key_rotation(
    api: httpx.Client, stack: Stack, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    url = f"/api/v1/channels/{channel['name']}/stream-key"
    r = api.post(url, headers=owner.headers)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    first = r.json()["stream_key"]
    assert first.startswith("live_")
    found = await check_key(stack, channel["name"].upper(), first)
    assert (found.channel_id, found.owner_id, found.name) == (channel["id"], owner.id, channel["name"])

    event = await first_event(stack.nats_url, KeyRotated, lambda e: e.channel_id == channel["id"])
    assert first.startswith(event.prefix)
    assert first not in msgspec.json.encode(event).decode()  # the key itself never leaves the service

    second = api.post(url, headers=owner.headers).json()["stream_key"]
    with pytest.raises(Unauthorized, match="not valid"):
        await check_key(stack, channel["name"], first)  # the old key stopped working at once
    assert (await check_key(stack, channel["name"], second)).channel_id == channel["id"]

    shown = api.get(f"/api/v1/channels/{channel['name']}", headers=owner.headers).json()
    assert second.startswith(shown["stream_key_prefix"])
    assert api.get(f"/api/v1/channels/{channel['name']}").json()["stream_key_prefix"] is None
    assert_problem(api.post(url, headers=make_member().headers), 403, "owner")
    assert_problem(api.post(url), 401)


# --- moderators and VIPs ------------------------------------------------------------------------------


def put_role(api: httpx.Client, owner: Member, channel: str, segment: str, username: str) -> httpx.Response:
    """PUT a role at once, even for a user registered a moment ago (the channel service asks identity
    when its own copy has not caught up with the registration event yet)."""
    return api.put(f"/api/v1/channels/{channel}/{segment}/{username}", headers=owner.headers)


def test_owner_grants_and_revokes_moderators(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    mod = make_member()
    r = put_role(api, owner, name, "moderators", mod.username.upper())
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": mod.id,
        "username": mod.username,
        "role": "moderator",
        "granted": True,
        "changed": True,
    }
    assert put_role(api, owner, name, "moderators", mod.username).json()["changed"] is False
    listed = api.get(f"/api/v1/channels/{name}/moderators").json()["items"]
    assert [(m["user_id"], m["username"], m["role"]) for m in listed] == [(mod.id, mod.username, "moderator")]

    r = api.delete(f"/api/v1/channels/{name}/moderators/{mod.username}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert api.get(f"/api/v1/channels/{name}/moderators").json()["items"] == []
    r = api.delete(f"/api/v1/channels/{name}/moderators/{mod.username}", headers=owner.headers)
    assert r.status_code == 204  # already gone: nothing to do


def test_role_refusals(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    vip = make_member()
    assert put_role(api, owner, name, "vips", vip.username).status_code == 200
    assert_problem(put_role(api, owner, name, "moderators", vip.username), 409, "already a vip")
    assert_problem(put_role(api, owner, name, "moderators", owner.username), 400, owner.username, "owns")
    assert_problem(
        api.put(f"/api/v1/channels/{name}/moderators/ghost_x_1", headers=owner.headers), 404, '"ghost_x_1"'
    )
    assert_problem(
        api.put(f"/api/v1/channels/{name}/moderators/{vip.username}", headers=vip.headers), 403, "owner"
    )
    assert_problem(api.delete(f"/api/v1/channels/{name}/vips/{vip.username}", headers=vip.headers), 403)
    assert_problem(api.put(f"/api/v1/channels/{name}/moderators/{vip.username}"), 401)
    assert_problem(api.get("/api/v1/channels/nobody_here_42/moderators"), 404)
    assert [v["username"] for v in api.get(f"/api/v1/channels/{name}/vips").json()["items"]] == [vip.username]


async def test_role_changes_are_published(
    api: httpx.Client, nats_url: str, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    mod = make_member()
    assert put_role(api, owner, channel["name"], "moderators", mod.username).status_code == 200
    event = await first_event(nats_url, RoleGranted, lambda e: e.channel_id == channel["id"])
    assert (event.user_id, event.username, event.role) == (mod.id, mod.username, "moderator")


async def first_event(nats_url: str, cls: Any, match: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """The first event of type `cls` on its stream for which `match` holds."""
    nc = await connect(nats_url, name="test-channel-events")
    try:
        sub = await nc.jetstream().subscribe(cls.subject, ordered_consumer=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except Exception:
                continue
            event = decode(msg.data, cls)
            if match(event):
                return event
        raise AssertionError(f"no matching {cls.subject} event")
    finally:
        await nc.drain()


# --- branding images ----------------------------------------------------------------------------------


def upload(
    api: httpx.Client, who: Member | None, channel: str, kind: str, data: Any, ctype: str
) -> httpx.Response:
    headers = {"Content-Type": ctype, **(who.headers if who else {})}
    return api.put(f"/api/v1/channels/{channel}/{kind}", content=data, headers=headers)


async def test_avatar_upload_and_download_with_etag(
    api: httpx.Client, nats_url: str, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    r = upload(api, owner, name, "avatar", image_bytes("PNG", (800, 600)), "image/png")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert (meta["width"], meta["height"], meta["content_type"]) == (256, 256, "image/webp")
    assert api.get(f"/api/v1/channels/{name}").json()["avatar"]["etag"] == meta["etag"]

    r = api.get(f"/api/v1/channels/{name}/avatar")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp"
    assert r.headers["etag"] == f'"{meta["etag"]}"'
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.content[:4] == b"RIFF"
    r = api.get(f"/api/v1/channels/{name}/avatar", headers={"If-None-Match": f'W/"x", "{meta["etag"]}"'})
    assert r.status_code == 304
    assert r.content == b""
    r = api.get(f"/api/v1/channels/{name}/avatar", params={"v": meta["etag"]})
    assert "immutable" in r.headers["cache-control"]
    event = await first_event(nats_url, ImageUpdated, lambda e: e.channel_id == channel["id"])
    assert (event.kind, event.etag) == ("avatar", meta["etag"])


def test_banner_is_fit_and_missing_images_are_404(
    api: httpx.Client, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    assert_problem(api.get(f"/api/v1/channels/{name}/banner"), 404, "no banner")
    assert_problem(api.get("/api/v1/channels/nobody_here_42/avatar"), 404, '"nobody_here_42"')
    r = upload(api, owner, name, "banner", image_bytes("JPEG", (2400, 600)), "image/jpeg")
    assert r.status_code == 200, r.text
    assert (r.json()["width"], r.json()["height"]) == (1200, 300)
    assert api.get(f"/api/v1/channels/{name}/banner").status_code == 200


def test_bad_uploads_are_refused_and_the_old_avatar_stays(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    r = upload(api, owner, name, "avatar", image_bytes("WEBP", (300, 300)), "image/webp")
    assert r.status_code == 200, r.text
    before = api.get(f"/api/v1/channels/{name}/avatar")
    png = image_bytes("PNG", (640, 480))
    refusals: list[tuple[httpx.Response, int, tuple[str, ...]]] = [
        (upload(api, owner, name, "avatar", b"hello, I am text\n" * 50, "image/png"), 400, ("not a PNG",)),
        (upload(api, owner, name, "avatar", png[: len(png) // 2], "image/png"), 400, ("truncated",)),
        (upload(api, owner, name, "avatar", png_bomb(), "image/png"), 400, ("30000x30000",)),
        (upload(api, owner, name, "avatar", b"", "image/png"), 400, ("empty",)),
        (upload(api, owner, name, "avatar", png, "text/plain"), 415, ("text/plain",)),
        (upload(api, owner, name, "avatar", b"\0" * (4 * 1024 * 1024 + 1), "image/png"), 413, ("4194304",)),
        (upload(api, owner, name, "avatar", chunks(5 * 1024 * 1024), "image/png"), 413, ("4194304",)),
        (upload(api, make_member(), name, "avatar", png, "image/png"), 403, ("owner",)),
        (upload(api, None, name, "avatar", png, "image/png"), 401, ()),
        (upload(api, owner, "nobody_here_42", "avatar", png, "image/png"), 404, ('"nobody_here_42"',)),
    ]
    for response, status, words in refusals:
        assert_problem(response, status, *words)
    after = api.get(f"/api/v1/channels/{name}/avatar")
    assert (after.headers["etag"], after.content) == (before.headers["etag"], before.content)


def chunks(total: int) -> Iterator[bytes]:
    """A body without Content-Length (sent chunked)."""
    for _ in range(total // 65536):
        yield b"\0" * 65536


def test_replacing_an_avatar_serves_the_new_one(
    api: httpx.Client, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    first = upload(api, owner, name, "avatar", image_bytes("PNG", (300, 300)), "image/png").json()
    second = upload(api, owner, name, "avatar", image_bytes("JPEG", (500, 300)), "image/jpeg").json()
    assert first["etag"] != second["etag"]
    r = api.get(f"/api/v1/channels/{name}/avatar", headers={"If-None-Match": f'"{first["etag"]}"'})
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{second["etag"]}"'


# --- live status from stream session events -----------------------------------------------------------


async def test_session_events_make_a_channel_live_and_offline(
    api: httpx.Client, nats_url: str, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    name, cid = channel["name"], channel["id"]
    quiet = new_channel(api, make_member(), title="Offline but newest")
    nc = await connect(nats_url, name="test")
    js = nc.jetstream()
    started_at = datetime.now(UTC).replace(microsecond=0)
    start = SessionStarted(session_id="s1-" + cid, channel_id=cid, channel_name=name, started_at=started_at)
    stray = SessionStarted(
        session_id="s0", channel_id="no-such-channel", channel_name="x", started_at=started_at
    )
    try:
        await publish(js, stray)  # ignored, and it does not hold up the events behind it
        await publish(js, start)
        await publish(js, start)  # a redelivery changes nothing
        await wait_live(api, name, True)
        body = api.get(f"/api/v1/channels/{name}").json()
        assert datetime.fromisoformat(body["live_since"]) == started_at
        live_names = [c["name"] for c in api.get("/api/v1/channels", params={"live": "true"}).json()["items"]]
        assert name in live_names
        assert quiet["name"] not in live_names
        everyone = [c for c in api.get("/api/v1/channels", params={"limit": 100}).json()["items"]]
        flags = [c["live"] for c in everyone]
        assert flags == sorted(flags, reverse=True)  # live channels first
        assert name in [c["name"] for c in everyone if c["live"]]

        # A second session starts before the first one's end arrives: still live, then offline.
        second = SessionStarted(
            session_id="s2-" + cid, channel_id=cid, channel_name=name, started_at=started_at
        )
        await publish(js, second)
        await publish(js, end_of(start))
        await asyncio.sleep(0.5)
        await wait_live(api, name, True)
        await publish(js, end_of(second))
        await wait_live(api, name, False)
        assert api.get(f"/api/v1/channels/{name}").json()["live_since"] is None
    finally:
        await nc.drain()


async def test_a_start_arriving_after_its_end_leaves_the_channel_offline(
    api: httpx.Client, nats_url: str, channel: dict[str, Any]
) -> None:
    """The live state follows the copy of live sessions, where an end (version 2) outranks its start."""
    name, cid = channel["name"], channel["id"]
    nc = await connect(nats_url, name="test")
    js = nc.jetstream()
    start = SessionStarted(
        session_id="late-" + cid, channel_id=cid, channel_name=name, started_at=datetime.now(UTC)
    )
    marker = SessionStarted(
        session_id="marker-" + cid, channel_id=cid, channel_name=name, started_at=datetime.now(UTC)
    )
    try:
        await publish(js, end_of(start))
        await publish(js, start)  # late: the copy keeps the end, so nothing changes
        await publish(js, marker)  # the events are taken in order: once this one shows, both were seen
        await wait_live(api, name, True)
        assert api.get(f"/api/v1/channels/{name}").json()["live"] is True
        await publish(js, end_of(marker))
        await wait_live(api, name, False)
        await asyncio.sleep(0.3)
        assert api.get(f"/api/v1/channels/{name}").json()["live"] is False
    finally:
        await nc.drain()


def end_of(start: SessionStarted) -> SessionEnded:
    return SessionEnded(
        session_id=start.session_id,
        channel_id=start.channel_id,
        channel_name=start.channel_name,
        started_at=start.started_at,
        ended_at=datetime.now(UTC),
    )


async def wait_live(api: httpx.Client, name: str, live: bool) -> None:
    deadline = time.monotonic() + 10
    while api.get(f"/api/v1/channels/{name}").json()["live"] is not live:
        assert time.monotonic() < deadline, f"{name} never became live={live}"
        await asyncio.sleep(0.05)


# --- lookups others' copies ask on a miss -------------------------------------------------------------


async def test_lookup_channel_and_user_answer_by_either_field_and_name_a_missing_value(
    api: httpx.Client, nats_url: str, owner: Member, channel: dict[str, Any]
) -> None:
    copy = ChannelCopy(channel_id=channel["id"], name=channel["name"], owner_id=owner.id, version=1)
    user = UserCopy(user_id=owner.id, username=owner.username, version=1)
    nc = await connect(nats_url, name="test")
    try:
        for by, value in [
            ("channel_id", channel["id"]),
            ("name", channel["name"].upper()),
            ("Name", copy.name),
        ]:
            assert await request(nc, LOOKUP_CHANNEL, Lookup(by=by, value=value)) == copy
        for by, value in [("user_id", owner.id), ("username", owner.username.upper())]:
            assert await request(nc, LOOKUP_USER, Lookup(by=by, value=value)) == user
        missing = [
            (LOOKUP_CHANNEL, "channel_id", "no-such-channel", "channel_not_found"),
            (LOOKUP_CHANNEL, "name", "nosuchchannel", "channel_not_found"),
            (LOOKUP_USER, "user_id", "00000000-0000-0000-0000-000000000000", "user_not_found"),
            (LOOKUP_USER, "user_id", "not-a-uuid", "user_not_found"),
            (LOOKUP_USER, "username", "nosuchuser", "user_not_found"),
        ]
        for rpc, by, value, code in missing:
            with pytest.raises(NotFound) as caught:
                await request(nc, rpc, Lookup(by=by, value=value))  # type: ignore[arg-type]
            assert caught.value.code == code
            assert value in caught.value.detail
            assert by in caught.value.detail

        # An edit moves the version, and the lookup says so.
        r = api.patch(f"/api/v1/channels/{channel['name']}", json={"title": "New"}, headers=owner.headers)
        assert r.status_code == 200, r.text
        after = await request(nc, LOOKUP_CHANNEL, Lookup(by="channel_id", value=channel["id"]))
        assert after.version == 2
    finally:
        await nc.drain()


# --- the move to copies -------------------------------------------------------------------------------

_OLD_ROWS = """
INSERT INTO users (id, username) VALUES ('o1', 'painter'), ('m1', 'helper');
INSERT INTO channels (id, owner_id, name, title, category, live_session_id, live_since)
VALUES ('c1', 'o1', 'painter', 'Birds', 'Art', 's1', now());
INSERT INTO live_sessions (session_id, channel_id, started_at) VALUES ('s1', 'c1', now());
INSERT INTO channel_roles (channel_id, user_id, role) VALUES ('c1', 'm1', 'moderator');
"""


async def test_a_database_from_before_the_copies_keeps_its_channels_and_follows_the_copies(
    database_url: str, tmp_path: Path
) -> None:
    """004_copies drops users and live_sessions; channels, roles and the live state stay, names come from
    the users copy once it has them, and a session's end in the copy takes the channel offline."""
    async with upgraded(database_url, MIGRATIONS, tmp_path, upto=3, old_rows=_OLD_ROWS) as up:
        conn, tables = up.conn, up.tables
        assert up.applied[0] == 4  # then any newer ones (005_aggregate_versions, ...)
        assert {"users", "live_sessions"}.isdisjoint(tables)
        users, sessions = Replica(identity.USER), Replica(ingest.LIVE_SESSION)
        await users.install(conn)
        await sessions.install(conn)

        before = await channel_store.fetch_channel(conn, name="painter")
        assert before is not None
        assert (before.version, before.live_session_id, before.owner_username) == (1, "s1", "")
        await users.apply(conn, identity.UserRegistered(user_id="o1", username="painter"))
        await users.apply(conn, identity.UserRegistered(user_id="m1", username="helper"))
        after = await channel_store.fetch_channel(conn, name="painter")
        assert after is not None
        assert after.owner_username == "painter"
        roles = await channel_store.list_roles(conn, channel_id="c1", role="moderator")
        assert [(r.user_id, r.username) for r in roles] == [("m1", "helper")]

        started = utcnow()
        ended = SessionEnded(
            session_id="s1",
            channel_id="c1",
            channel_name="painter",
            started_at=started,
            ended_at=utcnow(),
        )
        async with conn.transaction():
            session = await sessions.apply(conn, ended)
            assert session is not None
            await follow_live_state(conn, session, ended)
        offline = await channel_store.fetch_channel(conn, name="painter")
        assert offline is not None
        assert offline.live_session_id is None
