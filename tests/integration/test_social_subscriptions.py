"""Subscriptions through the gateway against the real social service: the operator API, tier changes,
gifts (stacking on an existing subscription, random followers), renewals, expiry, and the events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from libs.devstack.stack import OPERATOR_TOKEN, Stack
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.social_events import channel_events, subjects
from tests.integration.test_channels import new_channel

MakeMember = Callable[..., Member]
OP = {"X-Operator-Token": OPERATOR_TOKEN}


@pytest.fixture
def owner(make_member: MakeMember) -> Member:
    """A signed-in user who owns `channel`."""
    return make_member()


@pytest.fixture
def channel(api: httpx.Client, owner: Member) -> dict[str, Any]:
    """`owner`'s channel."""
    return new_channel(api, owner)


def grant(api: httpx.Client, channel: str, username: str, tier: int = 1, months: int = 1) -> dict[str, Any]:
    """The operator grants (or extends) a subscription."""
    r = api.post(
        f"/api/v1/channels/{channel}/subscriptions",
        json={"username": username, "tier": tier, "months": months},
        headers=OP,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def when(value: str) -> datetime:
    """An API timestamp."""
    return datetime.fromisoformat(value)


def test_operator_routes_need_the_right_token(
    api: httpx.Client, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    base = f"/api/v1/channels/{channel['name']}/subscriptions"
    body = {"username": fan.username, "tier": 1}
    assert_problem(api.post(base, json=body, headers={"X-Operator-Token": "wrong"}), 401, "X-Operator-Token")
    # Without the header the route is the signed-in gift, which needs a user and refuses operator fields.
    assert_problem(api.post(base, json=body), 401, "sign in")
    assert_problem(api.post(base, json=body, headers=fan.headers), 400, "operator")
    assert_problem(api.patch(f"{base}/{fan.username}", json={"tier": 2}), 401, "X-Operator-Token")
    assert_problem(api.delete(f"{base}/{fan.username}", headers={"X-Operator-Token": ""}), 401)
    assert api.get(f"/api/v1/channels/{channel['name']}/counts").json()["subscribers"] == 0


async def test_operator_grant_tier_changes_cancel_and_end_emit_one_event_each(
    api: httpx.Client, stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    name = channel["name"]
    sub = grant(api, name, fan.username, tier=1, months=2)
    assert (sub["tier"], sub["cumulative_months"], sub["streak_months"], sub["active"]) == (1, 2, 2, True)
    assert when(sub["period_end"]) - when(sub["started_at"]) == timedelta(days=60)
    path = f"/api/v1/channels/{name}/subscriptions/{fan.username}"
    up = api.patch(path, json={"tier": 3}, headers=OP)
    assert up.status_code == 200, up.text
    assert (up.json()["tier"], up.json()["period_end"]) == (3, sub["period_end"])
    same = api.patch(path, json={"tier": 3}, headers=OP)  # nothing moves: no event
    assert same.status_code == 200
    cancel = api.patch(path, json={"cancel_at_period_end": True}, headers=OP).json()
    assert (cancel["cancel_at_period_end"], cancel["active"]) == (True, True)
    mine = api.get("/api/v1/me/subscriptions", headers=fan.headers).json()["items"]
    assert [(s["channel_name"], s["tier"]) for s in mine] == [(name, 3)]
    ended = api.delete(path, params={"reason": "refunded"}, headers=OP).json()
    assert (ended["active"], ended["end_reason"]) == (False, "refunded")
    assert api.get("/api/v1/me/subscriptions", headers=fan.headers).json()["items"] == []
    everything = api.get("/api/v1/me/subscriptions", params={"include_ended": "true"}, headers=fan.headers)
    assert [s["active"] for s in everything.json()["items"]] == [False]
    assert_problem(api.delete(path, headers=OP), 404, "no active subscription")
    events = await channel_events(stack.nats_url, channel["id"], expect=4)
    assert subjects(events) == [
        "social.subscription.started",
        "social.subscription.changed",
        "social.subscription.changed",
        "social.subscription.ended",
    ]
    assert (events[1][1]["previous_tier"], events[1][1]["tier"]) == (1, 3)
    assert events[2][1]["cancel_at_period_end"] is True
    assert (events[3][1]["reason"], events[3][1]["cumulative_months"]) == ("refunded", 2)
    # Started again: a new subscription id and a new streak, the cumulative months kept.
    again = grant(api, name, fan.username)
    assert (again["cumulative_months"], again["streak_months"]) == (3, 1)
    assert again["id"] != sub["id"]


def test_bad_grants_are_problems(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    fan = make_member()
    base = f"/api/v1/channels/{channel['name']}/subscriptions"
    assert_problem(api.post(base, json={"username": fan.username, "tier": 4}, headers=OP), 400, "tier 4")
    assert_problem(api.post(base, json={"username": fan.username, "months": 0}, headers=OP), 400, "months")
    assert_problem(api.post(base, json={"username": owner.username}, headers=OP), 400, "own")
    ghost = unique_name("ghost")
    assert_problem(api.post(base, json={"username": ghost}, headers=OP), 404, ghost)
    nochan = unique_name("nochan")
    assert_problem(
        api.post(f"/api/v1/channels/{nochan}/subscriptions", json={"username": fan.username}, headers=OP),
        404,
        nochan,
    )
    assert_problem(api.post(base, json={"tier": 1}, headers=OP), 400, "username")
    assert_problem(api.post(base, json={"username": fan.username, "bogus": 1}, headers=OP), 400, "bogus")
    path = f"{base}/{fan.username}"
    assert_problem(api.patch(path, json={"tier": 2}, headers=OP), 404, "no active subscription")
    assert_problem(api.patch(path, json={}, headers=OP), 400, "nothing to change")
    assert_problem(api.delete(path, params={"reason": "whim"}, headers=OP), 400, "reason")


async def test_a_gift_to_a_subscriber_stacks_one_period_at_their_tier(
    api: httpx.Client, stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan, gifter = make_member(), make_member()
    before = grant(api, channel["name"], fan.username, tier=2)
    r = api.post(
        f"/api/v1/channels/{channel['name']}/subscriptions",
        json={"gift_to": fan.username.upper(), "tier": 1},
        headers=gifter.headers,
    )
    assert r.status_code == 201, r.text
    gift = r.json()
    assert (gift["count"], gift["tier"]) == (1, 1)
    after = gift["recipients"][0]
    assert after["id"] == before["id"]
    assert after["tier"] == 2  # the subscriber keeps their tier; the gift adds time
    assert when(after["period_end"]) - when(before["period_end"]) == timedelta(days=30)
    assert (after["cumulative_months"], after["streak_months"]) == (2, 2)
    assert after["gifted_by_username"] == ""  # the subscription was not started by this gift
    events = await channel_events(stack.nats_url, channel["id"], expect=3)
    assert subjects(events) == [
        "social.subscription.started",
        "social.subscription.renewed",
        "social.gift.sent",
    ]
    assert (events[1][1]["gifted_by_id"], events[1][1]["gifted_by_username"]) == (gifter.id, gifter.username)
    assert (events[2][1]["recipient_ids"], events[2][1]["count"]) == ([fan.id], 1)


async def test_gifts_to_random_followers_skip_subscribers_and_the_gifter(
    api: httpx.Client, stack: Stack, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    name = channel["name"]
    gifter, subscriber, *others = [make_member() for _ in range(4)]
    for m in (gifter, subscriber, *others):
        assert api.post(f"/api/v1/channels/{name}/follow", headers=m.headers).status_code == 200
    grant(api, name, subscriber.username)
    base = f"/api/v1/channels/{name}/subscriptions"
    too_many = api.post(base, json={"gift_count": 3, "tier": 2}, headers=gifter.headers)
    assert assert_problem(too_many, 409, "only 2")["code"] == "not_enough_recipients"
    r = api.post(base, json={"gift_count": 2, "tier": 2}, headers=gifter.headers)
    assert r.status_code == 201, r.text
    recipients = r.json()["recipients"]
    assert sorted(s["user_id"] for s in recipients) == sorted(m.id for m in others)
    assert all((s["tier"], s["gifted_by_username"]) == (2, gifter.username) for s in recipients)
    assert api.get(f"/api/v1/channels/{name}/counts").json()["subscribers"] == 3
    rel = api.get(f"/api/v1/channels/{name}/relationship", headers=others[0].headers).json()
    assert rel["subscription"]["gifted_by_username"] == gifter.username
    events = await channel_events(stack.nats_url, channel["id"], expect=4 + 1 + 2 + 1)
    subs = [b for s, b in events if s == "social.subscription.started"]
    assert len(subs) == 3
    gifts = [b for s, b in events if s == "social.gift.sent"]
    assert len(gifts) == 1
    assert sorted(gifts[0]["recipient_ids"]) == sorted(m.id for m in others)


def test_bad_gifts_are_problems(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    gifter, fan = make_member(), make_member()
    base = f"/api/v1/channels/{channel['name']}/subscriptions"
    h = gifter.headers
    assert_problem(api.post(base, json={"gift_to": gifter.username}, headers=h), 400, "yourself")
    assert_problem(api.post(base, json={"gift_to": owner.username}, headers=h), 400, "owns")
    assert_problem(api.post(base, json={"gift_to": fan.username, "gift_count": 2}, headers=h), 400, "either")
    assert_problem(api.post(base, json={}, headers=h), 400, "either")
    assert_problem(api.post(base, json={"gift_count": 101}, headers=h), 400, "gift_count")
    assert_problem(api.post(base, json={"gift_to": fan.username, "tier": 0}, headers=h), 400, "tier")
    ghost = unique_name("ghost")
    assert_problem(api.post(base, json={"gift_to": ghost}, headers=h), 404, ghost)
    assert_problem(api.post(base, content=b"{not json", headers=h), 400, "JSON")


async def test_grants_at_once_start_one_subscription_and_stack_the_rest(
    stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    path = f"/api/v1/channels/{channel['name']}/subscriptions"
    body = {"username": fan.username, "tier": 1, "months": 1}
    async with httpx.AsyncClient(base_url=stack.url, timeout=15, headers=OP) as client:
        answers = await asyncio.gather(*(client.post(path, json=body) for _ in range(4)))
    assert [r.status_code for r in answers] == [201] * 4, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sorted(r.json()["cumulative_months"] for r in answers) == [1, 2, 3, 4]
    events = await channel_events(stack.nats_url, channel["id"], expect=4)
    assert subjects(events) == ["social.subscription.started"] + ["social.subscription.renewed"] * 3
