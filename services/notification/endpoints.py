"""Request handlers of the notification service: inbox, preferences, push subscriptions, stream
tickets, webhooks. Thin: the rules are in domain.py, the SQL in store.py and delivery_store.py."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from libs.bus import BadRequest, Conflict, NotFound, Route, Unauthorized, new_id, request, route
from libs.obs.logging import get_logger
from proto import channel as pc
from proto import notification as pn
from services.notification import delivery_store as ds
from services.notification import store
from services.notification.domain import (
    check_callback_url,
    check_limit,
    check_owner,
    check_secret,
    check_webhook_type,
    decode_cursor,
    notification_view,
)
from services.notification.webhooks import VERIFICATION, verification_body

__all__ = ["RequestHandlers"]

MARK_MAX = 1000
PREF_CHANNELS_MAX = 1000
# Channels one request may make us ask the channel service about (names our copy does not know yet).
LEARN_MAX = 10

log = get_logger("notification")


def _key_bytes(value: str, name: str, size: int) -> bytes:
    """A base64url push subscription key of `size` bytes, or BadRequest naming it."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise BadRequest(f"keys.{name} is not base64url", code="invalid_push_subscription") from None
    if len(raw) != size:
        raise BadRequest(
            f"keys.{name} must be {size} bytes, got {len(raw)}", code="invalid_push_subscription"
        )
    return raw


def _webhook(row: Any) -> pn.Webhook:
    return pn.Webhook(
        id=row["id"],
        channel_name=row["channel_name"],
        type=row["type"],
        callback_url=row["callback_url"],
        status=row["status"],
        created_at=row["created_at"],
    )


class RequestHandlers:
    """The notification.* endpoints over the pool."""

    def __init__(
        self, pool: Any, nc: Client, *, vapid_public_key: str, allow_private: bool,
        ticket_ttl: float, wake_webhooks: Callable[[], None],
    ) -> None:  # fmt: skip
        self.pool = pool
        self.nc = nc
        self.vapid_public_key = vapid_public_key
        self.allow_private = allow_private
        self.ticket_ttl = ticket_ttl
        self.wake_webhooks = wake_webhooks

    def routes(self) -> list[Route[Any, Any]]:
        """Every endpoint of the service."""
        return [
            route(pn.LIST, self.list_inbox),
            route(pn.MARK_READ, self.mark_read),
            route(pn.GET_PREFERENCES, self.get_preferences),
            route(pn.SET_PREFERENCES, self.set_preferences),
            route(pn.ADD_PUSH, self.add_push),
            route(pn.VAPID_KEY, self.vapid_key),
            route(pn.ISSUE_TICKET, self.issue_ticket),
            route(pn.REDEEM_TICKET, self.redeem_ticket),
            route(pn.CREATE_WEBHOOK, self.create_webhook),
            route(pn.LIST_WEBHOOKS, self.list_webhooks),
            route(pn.DELETE_WEBHOOK, self.delete_webhook),
        ]

    async def list_inbox(self, req: pn.ListInbox) -> pn.InboxPage:
        """A page of the inbox, newest first, with the unread count."""
        limit = check_limit(req.limit)
        before = decode_cursor(req.cursor)
        async with self.pool.acquire() as conn:
            rows = await store.list_inbox(
                conn, user_id=req.user_id, before=before, limit=limit + 1, unread=req.unread_only
            )
            unread = await store.unread_count(conn, user_id=req.user_id)
        items = [notification_view(r) for r in rows[:limit]]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return pn.InboxPage(items=items, next_cursor=next_cursor, unread_count=unread)

    async def mark_read(self, req: pn.MarkRead) -> pn.Marked:
        """Mark some notifications, or all, read (only the user's own; others' ids change nothing)."""
        if req.all == bool(req.ids):
            raise BadRequest('send either "ids" (a non-empty list) or "all": true', code="invalid_mark_read")
        if len(req.ids) > MARK_MAX:
            raise BadRequest(f"{len(req.ids)} ids given; at most {MARK_MAX}", code="invalid_mark_read")
        if any(not 0 < i < 2**63 for i in req.ids):
            raise BadRequest("ids must be positive notification ids", code="invalid_mark_read")
        async with self.pool.acquire() as conn:
            marked = await store.mark_read(conn, user_id=req.user_id, ids=None if req.all else req.ids)
            unread = await store.unread_count(conn, user_id=req.user_id)
        return pn.Marked(marked=marked, unread_count=unread)

    async def get_preferences(self, req: pn.GetPreferences) -> pn.Preferences:
        """The user's notification preferences."""
        async with self.pool.acquire() as conn:
            row = await store.get_preferences(conn, user_id=req.user_id)
        return pn.Preferences(
            enabled=row["enabled"],
            push_all=row["push_all"],
            muted_channels=list(row["muted"]),
            push_channels=list(row["push"]),
        )

    async def set_preferences(self, req: pn.SetPreferences) -> pn.Preferences:
        """Replace the user's preferences; every channel named must exist."""
        prefs = req.preferences
        muted = sorted({n.lower() for n in prefs.muted_channels})
        push = sorted({n.lower() for n in prefs.push_channels})
        if len(muted) > PREF_CHANNELS_MAX or len(push) > PREF_CHANNELS_MAX:
            raise BadRequest(f"at most {PREF_CHANNELS_MAX} channels per list", code="invalid_preferences")
        async with self.pool.acquire() as conn, conn.transaction():
            ids = await store.channel_ids(conn, names=muted + push)
            missing = sorted({n for n in [*muted, *push] if n not in ids})
            if len(missing) <= LEARN_MAX:
                for name in missing:
                    row = await self._learn(conn, name)
                    if row is not None:
                        ids[row["name"]] = row["id"]
            unknown = [n for n in [*muted, *push] if n not in ids]
            if unknown:
                raise BadRequest(
                    f"unknown channel(s): {', '.join(sorted(set(unknown))[:10])}", code="channel_not_found"
                )
            await store.put_preferences(
                conn,
                user_id=req.user_id,
                enabled=prefs.enabled,
                push_all=prefs.push_all,
                muted=[ids[n] for n in muted],
                push=[ids[n] for n in push],
            )
        return await self.get_preferences(pn.GetPreferences(user_id=req.user_id))

    async def add_push(self, req: pn.AddPushSubscription) -> pn.PushSubscription:
        """Register a browser's push subscription (PushSubscription.toJSON() fields)."""
        check_callback_url(req.endpoint, allow_private=self.allow_private, what="push endpoint")
        point = _key_bytes(req.p256dh, "p256dh", 65)
        if point[0] != 4:
            raise BadRequest(
                "keys.p256dh must be an uncompressed P-256 point", code="invalid_push_subscription"
            )
        _key_bytes(req.auth, "auth", 16)
        async with self.pool.acquire() as conn:
            row = await ds.add_push_subscription(
                conn, user_id=req.user_id, endpoint=req.endpoint, p256dh=req.p256dh, auth=req.auth
            )
        return pn.PushSubscription(id=row["id"], endpoint=row["endpoint"], created_at=row["created_at"])

    async def vapid_key(self, req: pn.GetVapidKey) -> pn.VapidKey:
        """The VAPID public key (applicationServerKey)."""
        return pn.VapidKey(public_key=self.vapid_public_key)

    async def issue_ticket(self, req: pn.IssueTicket) -> pn.Ticket:
        """A single-use ticket, valid a few seconds, to open the live stream from a browser."""
        ticket = secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn:
            await ds.put_ticket(
                conn,
                ticket_hash=hashlib.sha256(ticket.encode()).digest(),
                user_id=req.user_id,
                ttl=self.ticket_ttl,
            )
        return pn.Ticket(ticket=ticket, expires_in=int(self.ticket_ttl))

    async def redeem_ticket(self, req: pn.RedeemTicket) -> pn.TicketOwner:
        """Use a ticket up; Unauthorized when unknown, used or expired."""
        async with self.pool.acquire() as conn:
            user_id = await ds.take_ticket(conn, ticket_hash=hashlib.sha256(req.ticket.encode()).digest())
        if user_id is None:
            raise Unauthorized("stream ticket is unknown, used or expired", code="invalid_ticket")
        return pn.TicketOwner(user_id=user_id)

    async def _learn(self, conn: Any, name: str) -> Any:
        """A channel our copy does not know yet (created a moment ago, its event not handled yet), asked
        of the channel service and kept; None when it does not exist."""
        try:
            found = await request(self.nc, pc.GET, pc.GetChannel(name=name))
        except NotFound:
            return None
        await store.upsert_channel(conn, channel_id=found.id, name=found.name, owner_id=found.owner_id)
        log.info("channel_learned_on_miss", channel_id=found.id, channel=found.name)
        return await store.channel_by_name(conn, name=found.name)

    async def _owned(self, conn: Any, actor_id: str, name: str) -> Any:
        channel = await store.channel_by_name(conn, name=name) or await self._learn(conn, name)
        if channel is None:
            raise NotFound(f'channel "{name}" does not exist', code="channel_not_found")
        check_owner(channel["owner_id"], actor_id, channel["name"])
        return channel

    async def create_webhook(self, req: pn.CreateWebhook) -> pn.Webhook:
        """Register a webhook; it is enabled once its callback echoes the challenge sent now."""
        kind = check_webhook_type(req.type)
        url = check_callback_url(req.callback_url, allow_private=self.allow_private)
        secret = check_secret(req.secret)
        webhook_id = new_id()
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self._owned(conn, req.actor_id, req.channel_name)
            made = await ds.insert_webhook(
                conn,
                webhook_id=webhook_id,
                channel_id=channel["id"],
                kind=kind,
                callback_url=url,
                secret=secret,
            )
            if made is None:
                raise Conflict(f'a "{kind}" webhook to this callback exists already', code="webhook_exists")
            await ds.add_delivery(
                conn,
                webhook_id=webhook_id,
                message_id=new_id(),
                message_type=VERIFICATION,
                body=verification_body(webhook_id, kind, channel["id"]),
            )
            row = await ds.get_webhook(conn, webhook_id=webhook_id)
        self.wake_webhooks()
        return _webhook(row)

    async def list_webhooks(self, req: pn.ListWebhooks) -> pn.WebhookList:
        """The channel's webhooks (owner only)."""
        async with self.pool.acquire() as conn:
            channel = await self._owned(conn, req.actor_id, req.channel_name)
            rows = await ds.list_webhooks(conn, channel_id=channel["id"])
        return pn.WebhookList(items=[_webhook(r) for r in rows])

    async def delete_webhook(self, req: pn.DeleteWebhook) -> pn.Done:
        """Remove a webhook (owner only)."""
        async with self.pool.acquire() as conn:
            channel = await self._owned(conn, req.actor_id, req.channel_name)
            if not await ds.delete_webhook(conn, channel_id=channel["id"], webhook_id=req.webhook_id):
                raise NotFound(f'webhook "{req.webhook_id[:80]}" does not exist', code="webhook_not_found")
        return pn.Done()
