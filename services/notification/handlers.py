"""Request handlers of the notification service: inbox, preferences, push subscriptions, stream tickets,
webhooks. Thin: the rules are in domain.py, the SQL in store.py and delivery_store.py; a channel the copy
has not seen yet is asked of the channel service (Replica.get)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from libs.bus import BadRequest, Conflict, NotFound, Unauthorized, answers, new_id
from libs.db import Connection, Pool
from libs.replica import Replica
from proto import notification as pn
from proto.channel import ChannelCopy
from services.notification import delivery_store as ds
from services.notification import store
from services.notification.domain import (
    check_callback_url,
    check_limit,
    check_mark_read,
    check_owner,
    check_preference_lists,
    check_push_keys,
    check_secret,
    check_webhook_type,
    decode_cursor,
)
from services.notification.webhooks import VERIFICATION, verification_body

__all__ = ["Handlers"]

# Channels one request may make us ask the channel service about (names our copy does not know yet).
LEARN_MAX = 10


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """One method per notification request, marked with the Rpc it answers, over the pool and the channel
    copy."""

    pool: Pool
    channels: Replica[ChannelCopy]
    vapid_public_key: str
    allow_private: bool
    ticket_ttl: float
    wake_webhooks: Callable[[], None]

    @answers(pn.LIST)
    async def list_inbox(self, req: pn.ListInbox) -> pn.InboxPage:
        """A page of the inbox, newest first, with the unread count."""
        limit = check_limit(req.limit)
        before = decode_cursor(req.cursor)
        async with self.pool.acquire() as conn:
            rows = await store.list_inbox(
                conn, user_id=req.user_id, before=before, limit=limit + 1, unread=req.unread_only
            )
            unread = await store.unread_count(conn, user_id=req.user_id)
        items = rows[:limit]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return pn.InboxPage(items=items, next_cursor=next_cursor, unread_count=unread)

    @answers(pn.MARK_READ)
    async def mark_read(self, req: pn.MarkRead) -> pn.Marked:
        """Mark some notifications, or all, read (only the user's own; others' ids change nothing)."""
        ids = check_mark_read(req.ids, req.all)
        async with self.pool.acquire() as conn:
            marked = await store.mark_read(conn, user_id=req.user_id, ids=ids)
            unread = await store.unread_count(conn, user_id=req.user_id)
        return pn.Marked(marked=marked, unread_count=unread)

    @answers(pn.GET_PREFERENCES)
    async def get_preferences(self, req: pn.GetPreferences) -> pn.Preferences:
        """The user's notification preferences."""
        async with self.pool.acquire() as conn:
            return await store.get_preferences(conn, user_id=req.user_id)

    @answers(pn.SET_PREFERENCES)
    async def set_preferences(self, req: pn.SetPreferences) -> pn.Preferences:
        """Replace the user's preferences; every channel named must exist."""
        prefs = req.preferences
        muted, push = check_preference_lists(prefs.muted_channels, prefs.push_channels)
        async with self.pool.acquire() as conn, conn.transaction():
            ids = await self._channel_ids(conn, [*muted, *push])
            await store.put_preferences(
                conn,
                user_id=req.user_id,
                enabled=prefs.enabled,
                push_all=prefs.push_all,
                muted=[ids[n] for n in muted],
                push=[ids[n] for n in push],
            )
        return await self.get_preferences(pn.GetPreferences(user_id=req.user_id))

    async def _channel_ids(self, conn: Connection, names: list[str]) -> dict[str, str]:
        """The ids of the channels `names` (lower case); BadRequest naming those that do not exist."""
        ids = await store.channel_ids(conn, names=names)
        missing = sorted({n for n in names if n not in ids})
        if len(missing) <= LEARN_MAX:  # a few new channels are asked of the channel service, not more
            for name in missing:
                with contextlib.suppress(NotFound):
                    ids[name] = (await self.channels.get(conn, "name", name)).channel_id
        unknown = sorted({n for n in names if n not in ids})
        if unknown:
            raise BadRequest(f"unknown channel(s): {', '.join(unknown[:10])}", code="channel_not_found")
        return ids

    @answers(pn.ADD_PUSH)
    async def add_push(self, req: pn.AddPushSubscription) -> pn.PushSubscription:
        """Register a browser's push subscription (PushSubscription.toJSON() fields)."""
        check_callback_url(req.endpoint, allow_private=self.allow_private, what="push endpoint")
        check_push_keys(req.p256dh, req.auth)
        async with self.pool.acquire() as conn:
            return await ds.add_push_subscription(
                conn, user_id=req.user_id, endpoint=req.endpoint, p256dh=req.p256dh, auth=req.auth
            )

    @answers(pn.VAPID_KEY)
    async def vapid_key(self, req: pn.GetVapidKey) -> pn.VapidKey:
        """The VAPID public key (applicationServerKey)."""
        return pn.VapidKey(public_key=self.vapid_public_key)

    @answers(pn.ISSUE_TICKET)
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

    @answers(pn.REDEEM_TICKET)
    async def redeem_ticket(self, req: pn.RedeemTicket) -> pn.TicketOwner:
        """Use a ticket up; Unauthorized when unknown, used or expired."""
        async with self.pool.acquire() as conn:
            user_id = await ds.take_ticket(conn, ticket_hash=hashlib.sha256(req.ticket.encode()).digest())
        if user_id is None:
            raise Unauthorized("stream ticket is unknown, used or expired", code="invalid_ticket")
        return pn.TicketOwner(user_id=user_id)

    async def _owned(self, conn: Connection, actor_id: str, name: str) -> ChannelCopy:
        """The channel named `name` (NotFound when it does not exist), when `actor_id` owns it."""
        channel = await self.channels.get(conn, "name", name)
        check_owner(channel.owner_id, actor_id, channel.name)
        return channel

    @answers(pn.CREATE_WEBHOOK)
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
                channel_id=channel.channel_id,
                kind=kind,
                callback_url=url,
                secret=secret,
            )
            if not made:
                raise Conflict(f'a "{kind}" webhook to this callback exists already', code="webhook_exists")
            await ds.add_delivery(
                conn,
                webhook_id=webhook_id,
                message_id=new_id(),
                message_type=VERIFICATION,
                body=verification_body(webhook_id, kind, channel.channel_id),
            )
            webhook = await ds.get_webhook(conn, webhook_id=webhook_id)
        self.wake_webhooks()
        assert webhook is not None  # written in this transaction
        return webhook

    @answers(pn.LIST_WEBHOOKS)
    async def list_webhooks(self, req: pn.ListWebhooks) -> pn.WebhookList:
        """The channel's webhooks (owner only)."""
        async with self.pool.acquire() as conn:
            channel = await self._owned(conn, req.actor_id, req.channel_name)
            return pn.WebhookList(items=await ds.list_webhooks(conn, channel_id=channel.channel_id))

    @answers(pn.DELETE_WEBHOOK)
    async def delete_webhook(self, req: pn.DeleteWebhook) -> pn.Done:
        """Remove a webhook (owner only)."""
        async with self.pool.acquire() as conn:
            channel = await self._owned(conn, req.actor_id, req.channel_name)
            if not await ds.delete_webhook(conn, channel_id=channel.channel_id, webhook_id=req.webhook_id):
                raise NotFound(f'webhook "{req.webhook_id[:80]}" does not exist', code="webhook_not_found")
        return pn.Done()
