"""/api/v1/notifications, push subscriptions, preferences and channel webhooks: relayed to the
notification service. The live stream (SSE) subscribes to the user's core NATS subject here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.di import Provide
from litestar.response import ServerSentEvent, ServerSentEventMessage

from libs.bus import BadRequest, Unauthorized
from proto import notification as pn
from services.gateway.auth import AuthUser, current_user
from services.gateway.backend import Backend

__all__ = ["ROUTES"]

SIGNED_IN = {"user": Provide(current_user)}
HEARTBEAT_SECONDS = 15.0
QUEUE_MAX = 256


class ReadBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/v1/notifications/read: `ids`, or `all: true`."""

    ids: list[int] = []
    all: bool = False


class PushKeys(msgspec.Struct, frozen=True, kw_only=True):
    p256dh: str
    auth: str


class PushBody(msgspec.Struct, frozen=True, kw_only=True):
    """A browser's PushSubscription.toJSON() (`expirationTime` and other members are ignored)."""

    endpoint: str
    keys: PushKeys


class PreferencesBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    muted_channels: list[str] = []
    push_all: bool = True
    push_channels: list[str] = []


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str
    callback_url: str
    secret: str


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@get("/api/v1/notifications", dependencies=SIGNED_IN, tags=["notifications"])
async def list_notifications(
    request: Request[Any, Any, Any], user: AuthUser, limit: int = 20, cursor: str = "", unread: bool = False
) -> pn.InboxPage:
    """The inbox, newest first, with the unread count; `next_cursor` fetches the next page."""
    query = pn.ListInbox(user_id=user.id, limit=limit, cursor=cursor, unread_only=unread)
    return await _backend(request).call(pn.LIST, query)


@post("/api/v1/notifications/read", dependencies=SIGNED_IN, tags=["notifications"], status_code=200)
async def mark_read(request: Request[Any, Any, Any], data: ReadBody, user: AuthUser) -> pn.Marked:
    """Mark notifications read: `{"ids": [...]}` or `{"all": true}`."""
    return await _backend(request).call(
        pn.MARK_READ, pn.MarkRead(user_id=user.id, ids=data.ids, all=data.all)
    )


@post("/api/v1/notifications/stream-ticket", dependencies=SIGNED_IN, tags=["notifications"], status_code=201)
async def stream_ticket(request: Request[Any, Any, Any], user: AuthUser) -> Response[pn.Ticket]:
    """A single-use ticket, valid seconds, for `GET /api/v1/notifications/stream?ticket=` (EventSource
    cannot send an Authorization header, and an access token does not belong in a URL)."""
    ticket = await _backend(request).call(pn.ISSUE_TICKET, pn.IssueTicket(user_id=user.id))
    return Response(ticket, status_code=201, headers={"Cache-Control": "no-store"})


async def _stream_user(request: Request[Any, Any, Any], ticket: str) -> str:
    if ticket:
        if request.headers.get("authorization"):
            raise BadRequest(
                "send either a ticket or an Authorization header, not both", code="invalid_request"
            )
        owner = await _backend(request).call(pn.REDEEM_TICKET, pn.RedeemTicket(ticket=ticket))
        return owner.user_id
    if not request.headers.get("authorization"):
        raise Unauthorized(
            "open the stream with ?ticket= (POST /api/v1/notifications/stream-ticket) or a Bearer token",
            code="missing_token",
        )
    return (await current_user(request)).id


@get("/api/v1/notifications/stream", tags=["notifications"])
async def notification_stream(request: Request[Any, Any, Any], ticket: str = "") -> ServerSentEvent:
    """Server-sent events: `ready` once subscribed, then a `notification` event per new notification."""
    user_id = await _stream_user(request, ticket)
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)

    async def on_message(msg: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a stalled client loses pushes, never the inbox
            queue.put_nowait(msg.data)

    sub = await _backend(request).nc.subscribe(pn.user_subject(user_id), cb=on_message)

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
async def vapid_public_key(request: Request[Any, Any, Any]) -> pn.VapidKey:
    """The applicationServerKey for `pushManager.subscribe`."""
    return await _backend(request).call(pn.VAPID_KEY, pn.GetVapidKey())


@post("/api/v1/push/subscriptions", dependencies=SIGNED_IN, tags=["notifications"], status_code=201)
async def add_push_subscription(
    request: Request[Any, Any, Any], data: PushBody, user: AuthUser
) -> pn.PushSubscription:
    """Register this browser's push subscription for the signed-in user."""
    req = pn.AddPushSubscription(
        user_id=user.id, endpoint=data.endpoint, p256dh=data.keys.p256dh, auth=data.keys.auth
    )
    return await _backend(request).call(pn.ADD_PUSH, req)


@get("/api/v1/me/notification-preferences", dependencies=SIGNED_IN, tags=["notifications"])
async def get_preferences(request: Request[Any, Any, Any], user: AuthUser) -> pn.Preferences:
    """The signed-in user's notification preferences."""
    return await _backend(request).call(pn.GET_PREFERENCES, pn.GetPreferences(user_id=user.id))


@put("/api/v1/me/notification-preferences", dependencies=SIGNED_IN, tags=["notifications"])
async def set_preferences(
    request: Request[Any, Any, Any], data: PreferencesBody, user: AuthUser
) -> pn.Preferences:
    """Replace the signed-in user's notification preferences."""
    prefs = pn.Preferences(**msgspec.structs.asdict(data))
    return await _backend(request).call(
        pn.SET_PREFERENCES, pn.SetPreferences(user_id=user.id, preferences=prefs)
    )


WEBHOOKS = "/api/v1/channels/{name:str}/webhooks"


@post(WEBHOOKS, dependencies=SIGNED_IN, tags=["webhooks"], status_code=202)
async def create_webhook(
    request: Request[Any, Any, Any], name: str, data: WebhookBody, user: AuthUser
) -> pn.Webhook:
    """Register a webhook (owner only); enabled once its callback echoes the challenge (202 until then)."""
    req = pn.CreateWebhook(
        actor_id=user.id,
        channel_name=name,
        type=data.type,
        callback_url=data.callback_url,
        secret=data.secret,
    )
    return await _backend(request).call(pn.CREATE_WEBHOOK, req)


@get(WEBHOOKS, dependencies=SIGNED_IN, tags=["webhooks"])
async def list_webhooks(request: Request[Any, Any, Any], name: str, user: AuthUser) -> pn.WebhookList:
    """The channel's webhooks (owner only)."""
    return await _backend(request).call(
        pn.LIST_WEBHOOKS, pn.ListWebhooks(actor_id=user.id, channel_name=name)
    )


@delete(WEBHOOKS + "/{webhook_id:str}", dependencies=SIGNED_IN, tags=["webhooks"])
async def delete_webhook(request: Request[Any, Any, Any], name: str, webhook_id: str, user: AuthUser) -> None:
    """Remove a webhook (owner only)."""
    req = pn.DeleteWebhook(actor_id=user.id, channel_name=name, webhook_id=webhook_id)
    await _backend(request).call(pn.DELETE_WEBHOOK, req)


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
