"""The payment-provider webhook through the gateway against the real social service: signatures computed
here (good, bad, replayed, expired), idempotence by event id, subscription events, renewal and expiry."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from libs.devstack.stack import PAYMENT_WEBHOOK_SECRET, Stack
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.social_events import channel_events, subjects
from tests.integration.test_channels import new_channel

MakeMember = Callable[..., Member]
WEBHOOK = "/api/v1/payments/webhook"


def signed(body: bytes, *, secret: str = PAYMENT_WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
    """The CPC-Signature header for `body`, computed as docs/payments.md tells a provider to."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"CPC-Signature": f"t={timestamp},v1={mac}", "Content-Type": "application/json"}


def event(kind: str, **data: Any) -> bytes:
    """A provider event body with a fresh id."""
    payload = {"id": f"evt_{unique_name('x')}", "type": kind, "created": int(time.time()), "data": data}
    return json.dumps(payload, default=str).encode()


def send(api: httpx.Client, body: bytes, **sign: Any) -> httpx.Response:
    """POST a webhook signed over exactly these bytes."""
    return api.post(WEBHOOK, content=body, headers=signed(body, **sign))


@pytest.fixture
def owner(make_member: MakeMember) -> Member:
    """A signed-in user who owns `channel`."""
    return make_member()


@pytest.fixture
def channel(api: httpx.Client, owner: Member) -> dict[str, Any]:
    """`owner`'s channel."""
    return new_channel(api, owner)


async def test_signatures_good_bad_replayed_and_expired(
    api: httpx.Client, stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    body = event("subscription.created", username=fan.username, channel=channel["name"], tier=2)
    headers = signed(body)
    ok = api.post(WEBHOOK, content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert (ok.json()["duplicate"], ok.json()["type"]) == (False, "subscription.created")
    # The very same request again (same signature): a replay, refused.
    replay = api.post(WEBHOOK, content=body, headers=headers)
    assert assert_problem(replay, 401, "replay")["code"] == "replayed_signature"
    # The provider retrying the same event, freshly signed: acknowledged, handled once.
    retry = api.post(WEBHOOK, content=body, headers=signed(body, at=int(time.time()) + 1))
    assert (retry.status_code, retry.json()["duplicate"]) == (200, True)
    wrong = assert_problem(send(api, body, secret="not-the-secret"), 401, "does not match")
    assert wrong["code"] == "bad_signature"
    tampered = api.post(WEBHOOK, content=body.replace(b'"tier": 2', b'"tier": 3'), headers=signed(body))
    assert_problem(tampered, 401, "does not match")
    other = event("subscription.updated", username=fan.username, channel=channel["name"], tier=3)
    stale = assert_problem(send(api, other, at=int(time.time()) - 301), 401, "300 s")
    assert stale["code"] == "signature_expired"
    assert_problem(send(api, other, at=int(time.time()) + 400), 401, "away from now")
    assert_problem(api.post(WEBHOOK, content=other), 400, "CPC-Signature")
    assert_problem(api.post(WEBHOOK, content=other, headers={"CPC-Signature": "v1=abc"}), 400, "t=")
    assert_problem(send(api, b"{not json"), 400, "not a valid event")
    assert_problem(send(api, b'{"type": "subscription.created"}'), 400, "id")
    ignored = send(api, event("invoice.paid", amount=500))
    assert (ignored.status_code, ignored.json()["ignored"]) == (200, True)
    rel = api.get(f"/api/v1/channels/{channel['name']}/relationship", headers=fan.headers).json()
    assert rel["subscription"]["tier"] == 2  # neither the tampered nor the stale update took effect
    events = await channel_events(stack.nats_url, channel["id"], expect=1)
    assert subjects(events) == ["social.subscription.started"]


def test_bad_event_data_is_a_problem_and_changes_nothing(
    api: httpx.Client, make_member: MakeMember, owner: Member, channel: dict[str, Any]
) -> None:
    fan = make_member()
    name = channel["name"]
    assert_problem(send(api, event("subscription.created", channel=name)), 400, "username")
    assert_problem(
        send(api, event("subscription.created", username=fan.username, channel=name, tier=5)), 400, "tier 5"
    )
    past = datetime.now(UTC) - timedelta(days=1)
    assert_problem(
        send(
            api,
            event("subscription.renewed", username=fan.username, channel=name, period_end=past.isoformat()),
        ),
        400,
        "not in the future",
    )
    assert_problem(
        send(api, event("subscription.created", username=owner.username, channel=name)), 400, "own"
    )
    ghost = unique_name("ghost")
    assert_problem(send(api, event("subscription.created", username=ghost, channel=name)), 404, ghost)
    assert_problem(
        send(api, event("subscription.deleted", username=fan.username, channel=name)), 404, "no active"
    )
    assert api.get(f"/api/v1/channels/{name}/counts").json()["subscribers"] == 0


async def test_renewal_then_expiry_when_the_period_passes(
    api: httpx.Client, stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan = make_member()
    name = channel["name"]
    soon = datetime.now(UTC) + timedelta(seconds=1)
    created = send(
        api, event("subscription.created", username=fan.username, channel=name, period_end=soon.isoformat())
    )
    assert created.status_code == 200, created.text
    later = soon + timedelta(seconds=1)
    renewed = send(
        api, event("subscription.renewed", username=fan.username, channel=name, period_end=later.isoformat())
    )
    assert renewed.status_code == 200, renewed.text
    sub = api.get(f"/api/v1/channels/{name}/relationship", headers=fan.headers).json()["subscription"]
    assert (sub["active"], sub["cumulative_months"], sub["streak_months"]) == (True, 2, 2)
    assert datetime.fromisoformat(sub["period_end"]) == later
    ended = await wait_ended(api, fan, name)
    assert (ended["end_reason"], ended["cumulative_months"]) == ("expired", 2)
    events = await channel_events(stack.nats_url, channel["id"], expect=3)
    assert subjects(events) == [
        "social.subscription.started",
        "social.subscription.renewed",
        "social.subscription.ended",
    ]
    assert events[2][1]["reason"] == "expired"


async def test_cancel_at_period_end_ends_as_cancelled_and_gifts_arrive_by_webhook(
    api: httpx.Client, stack: Stack, make_member: MakeMember, channel: dict[str, Any]
) -> None:
    fan, gifter = make_member(), make_member()
    name = channel["name"]
    soon = datetime.now(UTC) + timedelta(seconds=1)
    assert (
        send(
            api,
            event("subscription.created", username=fan.username, channel=name, period_end=soon.isoformat()),
        ).status_code
        == 200
    )
    assert (
        send(
            api, event("subscription.updated", username=fan.username, channel=name, cancel_at_period_end=True)
        ).status_code
        == 200
    )
    ended = await wait_ended(api, fan, name)
    assert ended["end_reason"] == "cancelled"
    gift = send(
        api, event("gift.purchased", gifter=gifter.username, channel=name, tier=3, recipient=fan.username)
    )
    assert gift.status_code == 200, gift.text
    sub = api.get(f"/api/v1/channels/{name}/relationship", headers=fan.headers).json()["subscription"]
    assert (sub["active"], sub["tier"], sub["gifted_by_username"], sub["streak_months"]) == (
        True,
        3,
        gifter.username,
        1,
    )
    events = await channel_events(stack.nats_url, channel["id"], expect=5)
    assert subjects(events) == [
        "social.subscription.started",
        "social.subscription.changed",
        "social.subscription.ended",
        "social.subscription.started",
        "social.gift.sent",
    ]


async def wait_ended(api: httpx.Client, who: Member, channel: str, timeout: float = 15.0) -> dict[str, Any]:
    """The subscription once the expiry sweep has ended it."""
    for _ in range(int(timeout / 0.2)):
        sub = api.get(f"/api/v1/channels/{channel}/relationship", headers=who.headers).json()["subscription"]
        if sub and not sub["active"]:
            result: dict[str, Any] = sub
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("the subscription never ended")
