"""/api/v1/notifications, push subscriptions, preferences and channel webhooks: relayed to the
notification service. The live stream (SSE) subscribes to the user's core NATS subject here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.response import ServerSentEvent, ServerSentEventMessage

from libs.bus import BadRequest, Unauthorized
from proto import notification as pn
from services.gateway.auth import AuthUser, current_user
from services.gateway.backend import Backend
from services.gateway.bodies import Body

__all__ = ["ROUTES"]

HEARTBEAT_SECONDS = 15.0
QUEUE_MAX = 256


class ReadBody(Body, frozen=True, request=pn.MarkRead, without=("user_id",)):
    """POST /api/v1/notifications/read: `ids`, or `all: true`."""


class PushKeys(msgspec.Struct, frozen=True, kw_only=True):
    p256dh: str
    auth: str


class PushBody(msgspec.Struct, frozen=True, kw_only=True):
    """A browser's PushSubscription.toJSON() (`expirationTime` and other members are ignored)."""

    endpoint: str
    keys: PushKeys


class PreferencesBody(Body, frozen=True, request=pn.Preferences):
    """PUT /api/v1/me/notification-preferences body: the whole preferences."""


class WebhookBody(Body, frozen=True, request=pn.CreateWebhook, without=("actor_id", "channel_name")):
    """POST /api/v1/channels/{name}/webhooks body."""


@get("/api/v1/notifications", tags=["notifications"])
async def list_notifications(
    backend: Backend, user: AuthUser, limit: int = 20, cursor: str = "", unread: bool = False
) -> pn.InboxPage:
    """The inbox, newest first, with the unread count; `next_cursor` fetches the next page."""
    query = pn.ListInbox(user_id=user.id, limit=limit, cursor=cursor, unread_only=unread)
    return await backend.call(pn.LIST, query)


@post("/api/v1/notifications/read", tags=["notifications"], status_code=200)
async def mark_read(backend: Backend, data: ReadBody, user: AuthUser) -> pn.Marked:
    """Mark notifications read: `{"ids": [...]}` or `{"all": true}`."""
    return await backend.call(pn.MARK_READ, data.to(pn.MarkRead, user_id=user.id))


@post("/api/v1/notifications/stream-ticket", tags=["notifications"], status_code=201)
async def stream_ticket(backend: Backend, user: AuthUser) -> Response[pn.Ticket]:
    """A single-use ticket, valid seconds, for `GET /api/v1/notifications/stream?ticket=` (EventSource
    cannot send an Authorization header, and an access token does not belong in a URL)."""
    ticket = await backend.call(pn.ISSUE_TICKET, pn.IssueTicket(user_id=user.id))
    return Response(ticket, status_code=201, headers={"Cache-Control": "no-store"})


async def _stream_user(request: Request[Any, Any, Any], backend: Backend, ticket: str) -> str:
    if ticket:
        if request.headers.get("authorization"):
            raise BadRequest(
                "send either a ticket or an Authorization header, not both", code="invalid_request"
            )
        owner = await backend.call(pn.REDEEM_TICKET, pn.RedeemTicket(ticket=ticket))
        return owner.user_id
    if not request.headers.get("authorization"):
        raise Unauthorized(
            "open the stream with ?ticket= (POST /api/v1/notifications/stream-ticket) or a Bearer token",
            code="missing_token",
        )
    return (await current_user(request)).id


@get("/api/v1/notifications/stream", tags=["notifications"])
async def notification_stream(
    request: Request[Any, Any, Any], backend: Backend, ticket: str = ""
) -> ServerSentEvent:
    """Server-sent events: `ready` once subscribed, then a `notification` event per new notification."""
    user_id = await _stream_user(request, backend, ticket)
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)

    async def on_message(msg: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a stalled client loses pushes, never the inbox
            queue.put_nowait(msg.data)

    sub = await backend.nc.subscribe(pn.user_subject(user_id), cb=on_message)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield ServerSentEventMessage(event="ready", data="{}")
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="heartbeat")
                    continue
                yield ServerSentEventMessage(event="notification", data=data.decode())
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@get("/api/v1/push/vapid-public-key", tags=["notifications"])
async def vapid_public_key(backend: Backend) -> pn.VapidKey:
    """The applicationServerKey for `pushManager.subscribe`."""
    return await backend.call(pn.VAPID_KEY, pn.GetVapidKey())


@post("/api/v1/push/subscriptions", tags=["notifications"], status_code=201)
async def add_push_subscription(backend: Backend, data: PushBody, user: AuthUser) -> pn.PushSubscription:
    """Register this browser's push subscription for the signed-in user."""
    req = pn.AddPushSubscription(
        user_id=user.id, endpoint=data.endpoint, p256dh=data.keys.p256dh, auth=data.keys.auth
    )
    return await backend.call(pn.ADD_PUSH, req)


@get("/api/v1/me/notification-preferences", tags=["notifications"])
async def get_preferences(backend: Backend, user: AuthUser) -> pn.Preferences:
    """The signed-in user's notification preferences."""
    return await backend.call(pn.GET_PREFERENCES, pn.GetPreferences(user_id=user.id))


@put("/api/v1/me/notification-preferences", tags=["notifications"])
async def set_preferences(backend: Backend, data: PreferencesBody, user: AuthUser) -> pn.Preferences:
    """Replace the signed-in user's notification preferences."""
    prefs = pn.SetPreferences(user_id=user.id, preferences=data.to(pn.Preferences))
    return await backend.call(pn.SET_PREFERENCES, prefs)


WEBHOOKS = "/api/v1/channels/{name:str}/webhooks"


@post(WEBHOOKS, tags=["webhooks"], status_code=202)
async def create_webhook(backend: Backend, name: str, data: WebhookBody, user: AuthUser) -> pn.Webhook:
    """Register a webhook (owner only); enabled once its callback echoes the challenge (202 until then)."""
    req = data.to(pn.CreateWebhook, actor_id=user.id, channel_name=name)
    return await backend.call(pn.CREATE_WEBHOOK, req)


@get(WEBHOOKS, tags=["webhooks"])
async def list_webhooks(backend: Backend, name: str, user: AuthUser) -> pn.WebhookList:
    """The channel's webhooks (owner only)."""
    return await backend.call(pn.LIST_WEBHOOKS, pn.ListWebhooks(actor_id=user.id, channel_name=name))


@delete(WEBHOOKS + "/{webhook_id:str}", tags=["webhooks"])
async def delete_webhook(backend: Backend, name: str, webhook_id: str, user: AuthUser) -> None:
    """Remove a webhook (owner only)."""
    req = pn.DeleteWebhook(actor_id=user.id, channel_name=name, webhook_id=webhook_id)
    await backend.call(pn.DELETE_WEBHOOK, req)


ROUTES: list[Any] = [
    list_notifications,
    mark_read,
    stream_ticket,
    notification_stream,
    vapid_public_key,
    add_push_subscription,
    get_preferences,
    set_preferences,
    create_webhook,
    list_webhooks,
    delete_webhook,
]
