"""notification: inbox, preferences, Web Push and outgoing webhooks. Owned by services/notification.

Live pushes go out on core NATS, one subject per user (`user_subject`), as encoded `Notification`s."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from proto.base import Rpc

WebhookType = Literal["stream.online", "stream.offline", "channel.follow", "channel.subscribe"]
WEBHOOK_TYPES: tuple[str, ...] = ("stream.online", "stream.offline", "channel.follow", "channel.subscribe")


def user_subject(user_id: str) -> str:
    """The core NATS subject a user's new notifications are pushed on."""
    return f"notify.user.{user_id}"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One inbox entry; `kind` is live, follow or subscribe."""

    id: int
    kind: str
    channel_id: str
    channel_name: str
    actor_username: str = ""
    tier: int = 0
    created_at: datetime
    read: bool = False


class ListInbox(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    limit: int = 20
    cursor: str = ""
    unread_only: bool = False


class InboxPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Notification]
    next_cursor: str | None
    unread_count: int


class MarkRead(msgspec.Struct, frozen=True, kw_only=True):
    """Mark `ids` read, or every notification of the user when `all` is true."""

    user_id: str
    ids: list[int] = []
    all: bool = False


class Marked(msgspec.Struct, frozen=True, kw_only=True):
    marked: int
    unread_count: int


class GetPreferences(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str


class Preferences(msgspec.Struct, frozen=True, kw_only=True):
    """`enabled` off silences everything; muted channels never notify; Web Push reaches the user for
    every followed channel's go-live when `push_all`, else only for `push_channels`."""

    enabled: bool = True
    muted_channels: list[str] = []
    push_all: bool = True
    push_channels: list[str] = []


class SetPreferences(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    preferences: Preferences


class AddPushSubscription(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    endpoint: str
    p256dh: str
    auth: str


class PushSubscription(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    endpoint: str
    created_at: datetime


class GetVapidKey(msgspec.Struct, frozen=True, kw_only=True):
    pass


class VapidKey(msgspec.Struct, frozen=True, kw_only=True):
    """The application server key browsers pass to `pushManager.subscribe` (base64url, uncompressed)."""

    public_key: str


class IssueTicket(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str


class Ticket(msgspec.Struct, frozen=True, kw_only=True):
    ticket: str
    expires_in: int


class RedeemTicket(msgspec.Struct, frozen=True, kw_only=True):
    ticket: str


class TicketOwner(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str


class CreateWebhook(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    channel_name: str
    type: str
    callback_url: str
    secret: str


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook as its owner sees it (never the secret); `status` is verification_pending, enabled or
    verification_failed."""

    id: str
    channel_name: str
    type: str
    callback_url: str
    status: str
    created_at: datetime


class ListWebhooks(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    channel_name: str


class WebhookList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Webhook]


class DeleteWebhook(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    channel_name: str
    webhook_id: str


class Done(msgspec.Struct, frozen=True, kw_only=True):
    done: bool = True


LIST = Rpc("notification.list", ListInbox, InboxPage)
MARK_READ = Rpc("notification.mark_read", MarkRead, Marked)
GET_PREFERENCES = Rpc("notification.get_preferences", GetPreferences, Preferences)
SET_PREFERENCES = Rpc("notification.set_preferences", SetPreferences, Preferences)
ADD_PUSH = Rpc("notification.add_push", AddPushSubscription, PushSubscription)
VAPID_KEY = Rpc("notification.vapid_key", GetVapidKey, VapidKey)
ISSUE_TICKET = Rpc("notification.issue_ticket", IssueTicket, Ticket)
REDEEM_TICKET = Rpc("notification.redeem_ticket", RedeemTicket, TicketOwner)
CREATE_WEBHOOK = Rpc("notification.create_webhook", CreateWebhook, Webhook)
LIST_WEBHOOKS = Rpc("notification.list_webhooks", ListWebhooks, WebhookList)
DELETE_WEBHOOK = Rpc("notification.delete_webhook", DeleteWebhook, Done)
