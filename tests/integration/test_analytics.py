"""Creator analytics through the gateway: viewer curves of the current and past sessions from real WHEP
viewers, the daily audience from real follows and grants, owner only, parameters checked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from libs.devstack.stack import OPERATOR_TOKEN, Stack
from tests.conftest import Member, assert_problem
from tests.integration.test_channels import new_channel
from tests.integration.test_webrtc import broadcast, wait_live, watch

MakeMember = Callable[..., Member]


def viewers_path(name: str) -> str:
    return f"/api/v1/channels/{name}/analytics/viewers"


async def viewer_history(
    client: httpx.AsyncClient, owner: Member, name: str, **params: Any
) -> dict[str, Any]:
    r = await client.get(viewers_path(name), params=params, headers=owner.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_viewer_curve_of_the_live_and_the_ended_session(
    stack: Stack, api: httpx.Client, make_member: MakeMember
) -> None:
    """Two WHEP viewers, one leaving before the other: the live curve rises to 2, falls to 1 then 0, peak
    2; after the broadcast ends the session is listed as ended and its curve can still be asked for."""
    owner = make_member()
    name = new_channel(api, owner)["name"]
    key = api.post(f"/api/v1/channels/{name}/stream-key", headers=owner.headers).json()["stream_key"]
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        source, _pattern, whip_location = await broadcast(client, name, key)
        await wait_live(client, name, True)
        first, second = [await watch(client, name) for _ in range(2)]
        await asyncio.sleep(2.5)
        assert (await client.delete(first[2])).status_code == 200
        await asyncio.sleep(2.5)
        assert (await client.delete(second[2])).status_code == 200
        await asyncio.sleep(1.5)
        live = await viewer_history(client, owner, name, bucket=1)
        assert len(live["sessions"]) == 1, live
        assert live["sessions"][0]["ended_at"] is None, live
        curve = live["curve"]
        counts = [p["viewers"] for p in curve["points"]]
        assert curve["bucket_seconds"] == 1, curve
        assert curve["peak"] == 2, curve
        assert 2 in counts, counts
        assert 1 in counts, counts
        assert counts[-1] == 0, counts
        assert counts.index(2) < len(counts) - 1 - counts[::-1].index(1), counts
        assert 0.5 < curve["average"] < 2, curve
        for pc in (first[0], second[0]):
            await pc.close()
        assert (await client.delete(whip_location)).status_code == 200
        await source.close()
        await wait_live(client, name, False)
        session_id = curve["session_id"]
        for _ in range(50):
            ended = await viewer_history(client, owner, name, session=session_id, bucket=2)
            if ended["sessions"][0]["ended_at"] is not None:
                break
            await asyncio.sleep(0.1)
        assert ended["sessions"][0]["ended_at"] is not None, ended
        assert ended["curve"]["session_id"] == session_id, ended
        assert ended["curve"]["peak"] == 2, ended
        assert ended["curve"]["bucket_seconds"] == 2
        assert max(p["viewers"] for p in ended["curve"]["points"]) >= 1
        r = await client.get(viewers_path(name), params={"session": "nope"}, headers=owner.headers)
        assert_problem(r, 404, "nope")


def test_a_channel_that_never_went_live_has_no_sessions(api: httpx.Client, make_member: MakeMember) -> None:
    owner = make_member()
    name = new_channel(api, owner)["name"]
    r = api.get(viewers_path(name), headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["sessions"] == []
    assert r.json()["curve"] is None


def test_audience_history_counts_todays_follows_and_subscriptions(
    api: httpx.Client, make_member: MakeMember
) -> None:
    """Three follows and one operator grant today show in today's point; earlier days count none of them;
    an unfollow removes its follower from every day."""
    owner = make_member()
    name = new_channel(api, owner)["name"]
    fans = [make_member() for _ in range(3)]
    for fan in fans:
        assert api.post(f"/api/v1/channels/{name}/follow", headers=fan.headers).status_code == 200
    r = api.post(
        f"/api/v1/channels/{name}/subscriptions",
        json={"username": fans[0].username, "tier": 1, "months": 1},
        headers={"X-Operator-Token": OPERATOR_TOKEN},
    )
    assert r.status_code == 201, r.text
    assert api.delete(f"/api/v1/channels/{name}/follow", headers=fans[2].headers).status_code == 200
    r = api.get(f"/api/v1/channels/{name}/analytics/audience", params={"days": 7}, headers=owner.headers)
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert [p["day"] for p in points][-1] == datetime.now(UTC).date().isoformat()
    assert len(points) == 7
    assert points[-1] == {"day": points[-1]["day"], "followers": 2, "subscribers": 1}
    assert all(p["followers"] == 0 and p["subscribers"] == 0 for p in points[:-1]), points
    default = api.get(f"/api/v1/channels/{name}/analytics/audience", headers=owner.headers).json()
    assert len(default["points"]) == 30


def test_analytics_are_for_the_owner_and_check_their_parameters(
    api: httpx.Client, make_member: MakeMember
) -> None:
    owner, other = make_member(), make_member()
    name = new_channel(api, owner)["name"]
    audience = f"/api/v1/channels/{name}/analytics/audience"
    for path in (viewers_path(name), audience):
        assert_problem(api.get(path), 401)
        assert_problem(api.get(path, headers=other.headers), 403, "owner")
    assert_problem(api.get(viewers_path(name), params={"bucket": 0}, headers=owner.headers), 400, "bucket")
    assert_problem(
        api.get(viewers_path(name), params={"bucket": 86401}, headers=owner.headers), 400, "bucket"
    )
    assert_problem(api.get(audience, params={"days": 0}, headers=owner.headers), 400, "days")
    assert_problem(api.get(audience, params={"days": 366}, headers=owner.headers), 400, "days")
    assert_problem(api.get(audience, params={"days": "many"}, headers=owner.headers), 400, "days")
    assert_problem(api.get(viewers_path("no_such_channel_x"), headers=owner.headers), 404)
