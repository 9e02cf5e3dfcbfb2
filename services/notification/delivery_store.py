"""SQL of the delivery side: VAPID keys, push subscriptions and sends, stream tickets, webhooks and
their deliveries (store.py holds the projections and the inbox)."""

from __future__ import annotations

from typing import Any

Row = Any  # asyncpg.Record

# --- VAPID and push -------------------------------------------------------------------------------


async def vapid_key(conn: Any) -> Row | None:
    """The stored VAPID key pair."""
    return await conn.fetchrow("SELECT private_pem, public_key FROM vapid_keys WHERE id = 1")


async def put_vapid_key(conn: Any, *, private_pem: str, public_key: str) -> None:
    """Keep a new key pair unless a replica stored one first."""
    await conn.execute(
        "INSERT INTO vapid_keys (id, private_pem, public_key) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
        private_pem,
        public_key,
    )


async def add_push_subscription(conn: Any, *, user_id: str, endpoint: str, p256dh: str, auth: str) -> Row:
    """Register (or take over and refresh) a browser's push subscription."""
    return await conn.fetchrow(
        "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh,"
        " auth = EXCLUDED.auth RETURNING id, endpoint, created_at",
        user_id,
        endpoint,
        p256dh,
        auth,
    )


async def claim_pushes(conn: Any, *, limit: int, lease_seconds: float) -> list[Row]:
    """Due Web Push sends, leased to this process for `lease_seconds`."""
    return list(
        await conn.fetch(
            "UPDATE push_deliveries d SET attempts = d.attempts + 1,"
            " next_attempt_at = now() + make_interval(secs => $2)"
            " FROM notifications n, push_subscriptions s"
            " WHERE d.id IN (SELECT id FROM push_deliveries WHERE next_attempt_at <= now()"
            "                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            "   AND n.id = d.notification_id AND s.id = d.subscription_id"
            " RETURNING d.id, d.attempts, s.id AS subscription_id, s.endpoint, s.p256dh, s.auth,"
            " n.id AS notification_id, n.kind, n.channel_id, n.channel_name, n.actor_username, n.tier,"
            " n.created_at, n.read_at",
            limit,
            lease_seconds,
        )
    )


async def finish_push(conn: Any, *, delivery_id: int) -> None:
    """A send is done (delivered or given up)."""
    await conn.execute("DELETE FROM push_deliveries WHERE id = $1", delivery_id)


async def retry_push(conn: Any, *, delivery_id: int, delay: float) -> None:
    """Try a send again after `delay` seconds."""
    await conn.execute(
        "UPDATE push_deliveries SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1",
        delivery_id,
        delay,
    )


async def drop_push_subscription(conn: Any, *, subscription_id: int) -> None:
    """Forget an expired subscription and its waiting sends."""
    await conn.execute("DELETE FROM push_deliveries WHERE subscription_id = $1", subscription_id)
    await conn.execute("DELETE FROM push_subscriptions WHERE id = $1", subscription_id)


# --- stream tickets -------------------------------------------------------------------------------


async def put_ticket(conn: Any, *, ticket_hash: bytes, user_id: str, ttl: float) -> None:
    """Store a ticket's hash (and prune expired ones)."""
    await conn.execute("DELETE FROM stream_tickets WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO stream_tickets (ticket_hash, user_id, expires_at)"
        " VALUES ($1, $2, now() + make_interval(secs => $3))",
        ticket_hash,
        user_id,
        ttl,
    )


async def take_ticket(conn: Any, *, ticket_hash: bytes) -> str | None:
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
    " FROM webhooks w JOIN channels c ON c.id = w.channel_id "
)
_WEBHOOK_BY_ID = _WEBHOOK_SELECT + "WHERE w.id = $1"
_WEBHOOKS_OF_CHANNEL = _WEBHOOK_SELECT + "WHERE w.channel_id = $1 ORDER BY w.created_at, w.id"


async def insert_webhook(
    conn: Any, *, webhook_id: str, channel_id: str, kind: str, callback_url: str, secret: str
) -> Row | None:
    """A new webhook waiting for verification; None when the same one exists."""
    return await conn.fetchrow(
        "INSERT INTO webhooks (id, channel_id, type, callback_url, secret) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING RETURNING id",
        webhook_id,
        channel_id,
        kind,
        callback_url,
        secret,
    )


async def get_webhook(conn: Any, *, webhook_id: str) -> Row | None:
    """One webhook as its owner sees it."""
    return await conn.fetchrow(
        _WEBHOOK_BY_ID,
        webhook_id,
    )


async def list_webhooks(conn: Any, *, channel_id: str) -> list[Row]:
    """A channel's webhooks, oldest first."""
    return list(
        await conn.fetch(
            _WEBHOOKS_OF_CHANNEL,
            channel_id,
        )
    )


async def delete_webhook(conn: Any, *, channel_id: str, webhook_id: str) -> bool:
    """Remove a webhook (its waiting deliveries go with it)."""
    status: str = await conn.execute(
        "DELETE FROM webhooks WHERE id = $1 AND channel_id = $2", webhook_id, channel_id
    )
    return status != "DELETE 0"


async def set_webhook_status(conn: Any, *, webhook_id: str, status: str) -> None:
    """enabled after the challenge was echoed; verification_failed after its last try."""
    await conn.execute("UPDATE webhooks SET status = $2 WHERE id = $1", webhook_id, status)


async def add_delivery(conn: Any, *, webhook_id: str, message_id: str, message_type: str, body: Any) -> None:
    """Queue one message to one webhook (a repeated message id is dropped)."""
    await conn.execute(
        "INSERT INTO webhook_deliveries (webhook_id, message_id, message_type, body) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (message_id) DO NOTHING",
        webhook_id,
        message_id,
        message_type,
        body,
    )


async def enabled_webhooks(conn: Any, *, channel_id: str, kind: str) -> list[Row]:
    """The channel's verified webhooks of a type."""
    return list(
        await conn.fetch(
            "SELECT id, type FROM webhooks WHERE channel_id = $1 AND type = $2 AND status = 'enabled'",
            channel_id,
            kind,
        )
    )


async def claim_deliveries(conn: Any, *, limit: int, lease_seconds: float) -> list[Row]:
    """Due webhook messages, leased to this process for `lease_seconds`."""
    return list(
        await conn.fetch(
            "UPDATE webhook_deliveries d SET attempts = d.attempts + 1,"
            " next_attempt_at = now() + make_interval(secs => $2) FROM webhooks w"
            " WHERE d.id IN (SELECT id FROM webhook_deliveries WHERE next_attempt_at <= now()"
            "                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            "   AND w.id = d.webhook_id"
            " RETURNING d.id, d.message_id, d.message_type, d.body, d.attempts, w.id AS webhook_id,"
            " w.type, w.callback_url, w.secret",
            limit,
            lease_seconds,
        )
    )


async def finish_delivery(conn: Any, *, delivery_id: int) -> None:
    """A message was delivered."""
    await conn.execute("DELETE FROM webhook_deliveries WHERE id = $1", delivery_id)


async def retry_delivery(conn: Any, *, delivery_id: int, delay: float, error: str) -> None:
    """Try a message again after `delay` seconds."""
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3"
        " WHERE id = $1",
        delivery_id,
        delay,
        error,
    )


async def dead_letter(conn: Any, *, delivery_id: int, error: str) -> None:
    """Move a message that failed its last try to the dead letters."""
    await conn.execute(
        "WITH d AS (DELETE FROM webhook_deliveries WHERE id = $1"
        "           RETURNING message_id, webhook_id, message_type, body, attempts)"
        " INSERT INTO webhook_dead_letters (message_id, webhook_id, message_type, body, attempts, last_error)"
        " SELECT message_id, webhook_id, message_type, body, attempts, $2 FROM d ON CONFLICT DO NOTHING",
        delivery_id,
        error,
    )
