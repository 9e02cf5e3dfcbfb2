"""Follows, subscriptions, gifts, the operator's subscription API and the payment webhook, relayed to the
social service, which checks every rule."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Response, delete, get, patch, post

from libs.bus import BadRequest
from proto import social as ps
from services.gateway.auth import AuthUser, current_user, operator
from services.gateway.backend import Backend
from services.gateway.bodies import Body

__all__ = ["ROUTES"]

SIGNATURE_HEADER = "cpc-signature"


class SubscriptionBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/v1/channels/{name}/subscriptions body: a signed-in user's gift (`gift_to` or
    `gift_count`), or, with X-Operator-Token, an operator's grant (`username`, `months`)."""

    tier: int = 1
    gift_to: str = ""
    gift_count: int = 0
    username: str = ""
    months: int = 1


class SubscriptionChanges(
    Body, frozen=True, request=ps.ChangeRequest, without=("channel", "username", "end_now", "reason")
):
    """PATCH /api/v1/channels/{name}/subscriptions/{username} body (operator)."""


@post("/api/v1/channels/{name:str}/follow", tags=["social"], status_code=200)
async def follow(backend: Backend, name: str, user: AuthUser) -> ps.FollowState:
    """Follow a channel (a repeat changes nothing and keeps the first follow time)."""
    payload = ps.FollowRequest(user_id=user.id, username=user.username, channel=name)
    return await backend.call(ps.FOLLOW, payload)


@delete("/api/v1/channels/{name:str}/follow", tags=["social"], status_code=200)
async def unfollow(backend: Backend, name: str, user: AuthUser) -> ps.FollowState:
    """Stop following a channel (a repeat changes nothing)."""
    payload = ps.FollowRequest(user_id=user.id, username=user.username, channel=name)
    return await backend.call(ps.UNFOLLOW, payload)


@get("/api/v1/channels/{name:str}/followers", tags=["social"])
async def followers(backend: Backend, name: str, limit: int = 20, cursor: str = "") -> ps.FollowPage:
    """A channel's followers, newest first; `next_cursor` fetches the next page."""
    return await backend.call(ps.FOLLOWERS, ps.ListFollowers(channel=name, limit=limit, cursor=cursor))


@get("/api/v1/me/follows", tags=["social"])
async def my_follows(backend: Backend, user: AuthUser, limit: int = 20, cursor: str = "") -> ps.FollowPage:
    """The channels the signed-in user follows, newest follow first."""
    return await backend.call(ps.FOLLOWING, ps.ListFollowing(user_id=user.id, limit=limit, cursor=cursor))


@get("/api/v1/channels/{name:str}/counts", tags=["social"])
async def counts(backend: Backend, name: str) -> ps.Counts:
    """How many follow the channel and how many subscribe to it."""
    return await backend.call(ps.COUNTS, ps.CountsRequest(channel=name))


@get("/api/v1/channels/{name:str}/relationship", tags=["social"])
async def relationship(backend: Backend, name: str, user: AuthUser) -> ps.Relationship:
    """What the signed-in user is to the channel: owner, follower since when, subscription."""
    return await backend.call(ps.RELATIONSHIP, ps.RelationshipRequest(user_id=user.id, channel=name))


@get("/api/v1/me/subscriptions", tags=["social"])
async def my_subscriptions(
    backend: Backend, user: AuthUser, include_ended: bool = False
) -> ps.SubscriptionList:
    """The signed-in user's subscriptions (add `include_ended=true` for ended ones too)."""
    return await backend.call(
        ps.SUBSCRIPTIONS, ps.ListSubscriptions(user_id=user.id, include_ended=include_ended)
    )


@post("/api/v1/channels/{name:str}/subscriptions", tags=["social"], status_code=201)
async def add_subscriptions(
    request: Request[Any, Any, Any], backend: Backend, name: str, data: SubscriptionBody
) -> ps.GiftResult | ps.Subscription:
    """A signed-in user gifts (`gift_to` or `gift_count`, `tier`); with X-Operator-Token, the operator
    grants `username` a subscription of `tier` for `months` (or extends theirs)."""
    if "x-operator-token" in request.headers:
        await operator(request)
        if data.gift_to or data.gift_count:
            raise BadRequest(
                "an operator grants to `username`; gifts are made by signed-in users", code="invalid_grant"
            )
        if not data.username:
            raise BadRequest("an operator grant needs `username`", code="invalid_grant")
        grant = ps.GrantRequest(channel=name, username=data.username, tier=data.tier, months=data.months)
        return await backend.call(ps.GRANT, grant)
    user = await current_user(request)
    if data.username:
        raise BadRequest(
            "`username` and `months` are for operator grants (X-Operator-Token); gift with `gift_to`",
            code="invalid_gift",
        )
    gift = ps.GiftRequest(
        gifter_id=user.id,
        gifter_username=user.username,
        channel=name,
        tier=data.tier,
        gift_to=data.gift_to,
        gift_count=data.gift_count,
    )
    return await backend.call(ps.GIFT, gift)


@patch("/api/v1/channels/{name:str}/subscriptions/{username:str}", tags=["operator"])
async def change_subscription(
    backend: Backend, name: str, username: str, data: SubscriptionChanges, is_operator: bool
) -> ps.Subscription:
    """Operator: change the tier, or ask for (or withdraw) cancellation at the period end."""
    change = data.to(ps.ChangeRequest, channel=name, username=username)
    return await backend.call(ps.CHANGE, change)


@delete(
    "/api/v1/channels/{name:str}/subscriptions/{username:str}",
    tags=["operator"],
    status_code=200,
)
async def end_subscription(
    backend: Backend,
    name: str,
    username: str,
    is_operator: bool,
    reason: Literal["cancelled", "refunded"] = "cancelled",
) -> ps.Subscription:
    """Operator: end a subscription now (`reason` cancelled or refunded)."""
    change = ps.ChangeRequest(channel=name, username=username, end_now=True, reason=reason)
    return await backend.call(ps.CHANGE, change)


@post("/api/v1/payments/webhook", tags=["payments"], status_code=200)
async def payment_webhook(request: Request[Any, Any, Any], backend: Backend) -> Response[ps.WebhookResult]:
    """A payment provider's signed event; the raw body and CPC-Signature go to social unparsed."""
    body = await request.body()
    signature = request.headers.get(SIGNATURE_HEADER, "")
    result = await backend.call(ps.WEBHOOK, ps.WebhookRequest(body=body, signature=signature))
    return Response(result, status_code=200)


ROUTES: list[Any] = [
    follow,
    unfollow,
    followers,
    my_follows,
    counts,
    relationship,
    my_subscriptions,
    add_subscriptions,
    change_subscription,
    end_subscription,
    payment_webhook,
]
