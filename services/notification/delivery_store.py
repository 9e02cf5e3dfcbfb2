"""SQL of the delivery side: VAPID keys, push subscriptions and sends, stream tickets, webhooks and
their deliveries (store.py holds the projections and the inbox). Every function takes a connection and
returns Structs."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from libs.db import Connection
from proto.notification import Notification, PushSubscription, Webhook

__all__ = [
    "DueDelivery",
    "DuePush",
    "Queue",
    "VapidKeyRow",
    "add_delivery",
    "add_push_subscription",
    "claim_deliveries",
    "claim_pushes",
    "dead_letter",
    "delete_webhook",
    "drop_push_subscription",
    "enabled_webhooks",
    "finish",
    "get_webhook",
    "insert_webhook",
    "list_webhooks",
    "put_ticket",
    "put_vapid_key",
    "retry",
    "set_webhook_status",
    "take_ticket",
    "vapid_key",
]


class VapidKeyRow(msgspec.Struct, frozen=True, kw_only=True):
    """The stored VAPID key pair."""

    private_pem: str
    public_key: str


class DuePush(msgspec.Struct, frozen=True, kw_only=True):
    """A leased Web Push send: the delivery, its subscription and the notification it carries."""

    id: int
    attempts: int
    subscription_id: int
    endpoint: str
    p256dh: str
    auth: str
    notification: Notification


class DueDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A leased webhook message with what signing and sending it needs."""

    id: int
    message_id: str
    message_type: str
    body: dict[str, Any]
    attempts: int
    webhook_id: str
    type: str
    callback_url: str
    secret: str


# --- the two outgoing queues ----------------------------------------------------------------------

# Web Push sends (push_deliveries) and webhook messages (webhook_deliveries) wait in queues of the same make:
# a claim leases a batch of due rows to one process for a while and counts the try, a failed try moves its
# row to the next try with the error, and a finished row is deleted.
Queue = Literal["push_deliveries", "webhook_deliveries"]


def _claim(queue: Queue, *, joined: str, on: str, returning: str) -> str:
    """The statement leasing up to $1 due rows of `queue` for $2 seconds, with what sending them needs
    (`joined` tables, `on` condition); constant text only."""
    return (
        f"UPDATE {queue} d SET attempts = d.attempts + 1,"  # noqa: S608 (names from this module only)
        " next_attempt_at = now() + make_interval(secs => $2)"
        f" FROM {joined} WHERE d.id IN (SELECT id FROM {queue} WHERE next_attempt_at <= now()"
        "                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        f" AND {on} RETURNING {returning}"
    )


_CLAIM_PUSHES = _claim(
    "push_deliveries",
    joined="notifications n, push_subscriptions s",
    on="n.id = d.notification_id AND s.id = d.subscription_id",
    returning="d.id, d.attempts, s.id AS subscription_id, s.endpoint, s.p256dh, s.auth,"
    " n.id AS notification_id, n.kind, n.channel_id, n.channel_name, n.actor_username, n.tier,"
    " n.created_at, n.read_at IS NOT NULL AS read",
)
_CLAIM_DELIVERIES = _claim(
    "webhook_deliveries",
    joined="webhooks w",
    on="w.id = d.webhook_id",
    returning="d.id, d.message_id, d.message_type, d.body, d.attempts, w.id AS webhook_id, w.type,"
    " w.callback_url, w.secret",
)


async def finish(conn: Connection, queue: Queue, *, delivery_id: int) -> None:
    """A send or message is done (delivered, or given up)."""
    await conn.execute(f"DELETE FROM {queue} WHERE id = $1", delivery_id)  # noqa: S608


async def retry(conn: Connection, queue: Queue, *, delivery_id: int, delay: float, error: str) -> None:
    """Try a send or message again after `delay` seconds, noting why the last try failed."""
    await conn.execute(
        f"UPDATE {queue} SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3"  # noqa: S608
        " WHERE id = $1",
        delivery_id,
        delay,
        error,
    )


# --- VAPID and push -------------------------------------------------------------------------------


async def vapid_key(conn: Connection) -> VapidKeyRow | None:
    """The stored VAPID key pair."""
    row = await conn.fetchrow("SELECT private_pem, public_key FROM vapid_keys WHERE id = 1")
    return None if row is None else msgspec.convert(dict(row), VapidKeyRow)


async def put_vapid_key(conn: Connection, *, private_pem: str, public_key: str) -> None:
    """Keep a new key pair unless a replica stored one first."""
    await conn.execute(
        "INSERT INTO vapid_keys (id, private_pem, public_key) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
        private_pem,
        public_key,
    )


async def add_push_subscription(
    conn: Connection, *, user_id: str, endpoint: str, p256dh: str, auth: str
) -> PushSubscription:
    """Register (or take over and refresh) a browser's push subscription."""
    row = await conn.fetchrow(
        "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh,"
        " auth = EXCLUDED.auth RETURNING id, endpoint, created_at",
        user_id,
        endpoint,
        p256dh,
        auth,
    )
    return msgspec.convert(dict(row), PushSubscription)


async def claim_pushes(conn: Connection, *, limit: int, lease_seconds: float) -> list[DuePush]:
    """Due Web Push sends, leased to this process for `lease_seconds`."""
    rows = await conn.fetch(_CLAIM_PUSHES, limit, lease_seconds)
    return [_due_push(dict(r)) for r in rows]


_PUSH_FIELDS = frozenset(DuePush.__struct_fields__)


def _due_push(row: dict[str, Any]) -> DuePush:
    """A claimed row split into the send and its notification."""
    note = {k: v for k, v in row.items() if k not in _PUSH_FIELDS}
    note["id"] = note.pop("notification_id")
    sending = {k: v for k, v in row.items() if k in _PUSH_FIELDS}
    return msgspec.convert({**sending, "notification": note}, DuePush)


async def drop_push_subscription(conn: Connection, *, subscription_id: int) -> None:
    """Forget an expired subscription and its waiting sends."""
    await conn.execute("DELETE FROM push_deliveries WHERE subscription_id = $1", subscription_id)
    await conn.execute("DELETE FROM push_subscriptions WHERE id = $1", subscription_id)


# --- stream tickets -------------------------------------------------------------------------------


async def put_ticket(conn: Connection, *, ticket_hash: bytes, user_id: str, ttl: float) -> None:
    """Store a ticket's hash (and prune expired ones)."""
    await conn.execute("DELETE FROM stream_tickets WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO stream_tickets (ticket_hash, user_id, expires_at)"
        " VALUES ($1, $2, now() + make_interval(secs => $3))",
        ticket_hash,
        user_id,
        ttl,
    )


async def take_ticket(conn: Connection, *, ticket_hash: bytes) -> str | None:
    """Use a ticket up: its user when it existed and had not expired."""
    user_id: str | None = await conn.fetchval(
        "DELETE FROM stream_tickets WHERE ticket_hash = $1 RETURNING"
        " CASE WHEN expires_at >= now() THEN user_id END",
        ticket_hash,
    )
    return user_id


# --- webhooks -------------------------------------------------------------------------------------

# Constant text only; every value is a bound parameter.
_WEBHOOK_SELECT = (
    "SELECT w.id, c.name AS channel_name, w.type, w.callback_url, w.status, w.created_at"
    " FROM webhooks w JOIN copied_channels c ON c.channel_id = w.channel_id "
)
_WEBHOOK_BY_ID = _WEBHOOK_SELECT + "WHERE w.id = $1"
_WEBHOOKS_OF_CHANNEL = _WEBHOOK_SELECT + "WHERE w.channel_id = $1 ORDER BY w.created_at, w.id"


async def insert_webhook(
    conn: Connection, *, webhook_id: str, channel_id: str, kind: str, callback_url: str, secret: str
) -> bool:
    """A new webhook waiting for verification; False when the same one exists."""
    made = await conn.fetchval(
        "INSERT INTO webhooks (id, channel_id, type, callback_url, secret) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING RETURNING id",
        webhook_id,
        channel_id,
        kind,
        callback_url,
        secret,
    )
    return made is not None


async def get_webhook(conn: Connection, *, webhook_id: str) -> Webhook | None:
    """One webhook as its owner sees it."""
    row = await conn.fetchrow(_WEBHOOK_BY_ID, webhook_id)
    return None if row is None else msgspec.convert(dict(row), Webhook)


async def list_webhooks(conn: Connection, *, channel_id: str) -> list[Webhook]:
    """A channel's webhooks, oldest first."""
    rows = await conn.fetch(_WEBHOOKS_OF_CHANNEL, channel_id)
    return msgspec.convert([dict(r) for r in rows], list[Webhook])


async def delete_webhook(conn: Connection, *, channel_id: str, webhook_id: str) -> bool:
    """Remove a webhook (its waiting deliveries go with it)."""
    status: str = await conn.execute(
        "DELETE FROM webhooks WHERE id = $1 AND channel_id = $2", webhook_id, channel_id
    )
    return status != "DELETE 0"


async def set_webhook_status(conn: Connection, *, webhook_id: str, status: str) -> None:
    """enabled after the challenge was echoed; verification_failed after its last try."""
    await conn.execute("UPDATE webhooks SET status = $2 WHERE id = $1", webhook_id, status)


async def add_delivery(
    conn: Connection, *, webhook_id: str, message_id: str, message_type: str, body: dict[str, Any]
) -> None:
    """Queue one message to one webhook (a repeated message id is dropped)."""
    await conn.execute(
        "INSERT INTO webhook_deliveries (webhook_id, message_id, message_type, body) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (message_id) DO NOTHING",
        webhook_id,
        message_id,
        message_type,
        body,
    )


async def enabled_webhooks(conn: Connection, *, channel_id: str, kind: str) -> list[str]:
    """The ids of the channel's verified webhooks of a type."""
    rows = await conn.fetch(
        "SELECT id FROM webhooks WHERE channel_id = $1 AND type = $2 AND status = 'enabled'",
        channel_id,
        kind,
    )
    return [r["id"] for r in rows]


async def claim_deliveries(conn: Connection, *, limit: int, lease_seconds: float) -> list[DueDelivery]:
    """Due webhook messages, leased to this process for `lease_seconds`."""
    rows = await conn.fetch(_CLAIM_DELIVERIES, limit, lease_seconds)
    return msgspec.convert([dict(r) for r in rows], list[DueDelivery])


async def dead_letter(conn: Connection, *, delivery_id: int, error: str) -> None:
    """Move a message that failed its last try to the dead letters."""
    await conn.execute(
        "WITH d AS (DELETE FROM webhook_deliveries WHERE id = $1"
        "           RETURNING message_id, webhook_id, message_type, body, attempts)"
        " INSERT INTO webhook_dead_letters (message_id, webhook_id, message_type, body, attempts, last_error)"
        " SELECT message_id, webhook_id, message_type, body, attempts, $2 FROM d ON CONFLICT DO NOTHING",
        delivery_id,
        error,
    )
