"""Follows through the gateway against the real social service: races, idempotence, lists by cursor,
counts, relationship, and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from libs.devstack.stack import Stack
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.social_events import channel_events, subjects
from tests.integration.test_channels import new_channel

MakeMember = Callable[..., Member]


@pytest.fixture
def owner(make_member: MakeMember) -> Member:
    """A signed-in user who owns `channel`."""
    return make_member()


@pytest.fixture
def channel(api: httpx.Client, owner: Member) -> dict[str, Any]:
    """`owner`'s channel."""
    return new_channel(api, owner)


async def _at_once(stack: Stack, method: str, path: str, who: Member, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        return await asyncio.gather(*(client.request(method, path, headers=who.headers) for _ in range(n)))


async def test_same_user_following_twice_at_once_makes_one_follow_and_one_event(
    stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    path = f"/api/v1/channels/{channel['name']}/follow"
    follows = await _at_once(stack, "POST", path, fan, 6)
    assert [r.status_code for r in follows] == [200] * 6, [r.text for r in follows]
    assert sum(r.json()["changed"] for r in follows) == 1
    assert len({r.json()["followed_at"] for r in follows}) == 1
    unfollows = await _at_once(stack, "DELETE", path, fan, 6)
    assert [r.status_code for r in unfollows] == [200] * 6
    assert sum(r.json()["changed"] for r in unfollows) == 1
    assert all(r.json()["following"] is False for r in unfollows)
    events = await channel_events(stack.nats_url, channel["id"], expect=2)
    assert subjects(events) == ["social.channel.followed", "social.channel.unfollowed"]
    followed = events[0][1]
    assert (followed["user_id"], followed["username"], followed["channel_name"]) == (
        fan.id,
        fan.username,
        channel["name"],
    )
    assert datetime.fromisoformat(followed["followed_at"]) == datetime.fromisoformat(
        follows[0].json()["followed_at"]
    )


def test_a_repeated_follow_keeps_the_first_follow_time(
    api: httpx.Client, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    path = f"/api/v1/channels/{channel['name'].upper()}/follow"
    first = api.post(path, headers=fan.headers).json()
    again = api.post(path, headers=fan.headers).json()
    assert (first["changed"], again["changed"]) == (True, False)
    assert first["followed_at"] == again["followed_at"]
    rel = api.get(f"/api/v1/channels/{channel['name']}/relationship", headers=fan.headers).json()
    assert (rel["following"], rel["followed_at"], rel["is_owner"]) == (True, first["followed_at"], False)
    assert rel["subscription"] is None
    counts = api.get(f"/api/v1/channels/{channel['name']}/counts").json()
    assert (counts["followers"], counts["subscribers"]) == (1, 0)
    assert api.delete(path, headers=fan.headers).json()["changed"] is True
    assert api.get(f"/api/v1/channels/{channel['name']}/counts").json()["followers"] == 0


def test_followers_and_follows_page_by_cursor(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    fans = [make_member() for _ in range(5)]
    for fan in fans:
        assert api.post(f"/api/v1/channels/{channel['name']}/follow", headers=fan.headers).status_code == 200
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        r = api.get(f"/api/v1/channels/{channel['name']}/followers", params={"limit": 2, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [item["username"] for item in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert pages == 3
    assert seen == [f.username for f in reversed(fans)]  # newest first, none twice
    # The other way round: what one user follows.
    other_owner = make_member()
    other = new_channel(api, other_owner)
    assert api.post(f"/api/v1/channels/{other['name']}/follow", headers=fans[0].headers).status_code == 200
    page = api.get("/api/v1/me/follows", params={"limit": 1}, headers=fans[0].headers).json()
    assert [i["channel_name"] for i in page["items"]] == [other["name"]]
    rest = api.get(
        "/api/v1/me/follows", params={"cursor": page["next_cursor"]}, headers=fans[0].headers
    ).json()
    assert [i["channel_name"] for i in rest["items"]] == [channel["name"]]
    assert rest["next_cursor"] is None


def test_following_your_own_channel_is_refused(
    api: httpx.Client, owner: Member, channel: dict[str, Any]
) -> None:
    r = api.post(f"/api/v1/channels/{channel['name']}/follow", headers=owner.headers)
    assert assert_problem(r, 400, "own", channel["name"])["code"] == "own_channel"
    rel = api.get(f"/api/v1/channels/{channel['name']}/relationship", headers=owner.headers).json()
    assert (rel["is_owner"], rel["following"]) == (True, False)


def test_bad_follow_requests_are_problems(
    api: httpx.Client, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    missing = unique_name("nochan")
    assert_problem(api.post(f"/api/v1/channels/{missing}/follow", headers=fan.headers), 404, missing)
    assert_problem(api.get(f"/api/v1/channels/{missing}/followers"), 404, missing)
    assert_problem(api.get(f"/api/v1/channels/{missing}/counts"), 404, missing)
    assert_problem(api.post(f"/api/v1/channels/{channel['name']}/follow"), 401, "sign in")
    assert_problem(api.get("/api/v1/me/follows"), 401, "sign in")
    followers = f"/api/v1/channels/{channel['name']}/followers"
    assert_problem(api.get(followers, params={"cursor": "garbage!"}), 400, "cursor")
    assert_problem(api.get(followers, params={"limit": 0}), 400, "limit")
    assert_problem(api.get(followers, params={"limit": 101}), 400, "limit")
    assert_problem(api.get("/api/v1/me/follows", params={"limit": "x"}, headers=fan.headers), 400, "limit")
