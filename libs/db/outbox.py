"""Transactional outbox: an event is written in the same transaction as the change it reports,
then relayed to JetStream with `Nats-Msg-Id = event_id`, so a crash can neither lose nor double it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.js import JetStreamContext

from libs.bus.codec import Event, encode
from libs.bus.publish import publish_encoded
from libs.faults import failpoint
from libs.obs.logging import get_logger
from libs.obs.tracing import inject_context

__all__ = ["OUTBOX_DDL", "OutboxRelay", "add_event"]

log = get_logger("outbox")

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    seq bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    subject text NOT NULL,
    payload bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def _channel(schema: str) -> str:
    return f"cpc_outbox_{schema}"


async def add_event(conn: Any, event: Event) -> None:
    """Record `event` in the caller's transaction; the relay publishes it once the transaction commits."""
    await conn.execute(
        "INSERT INTO outbox (event_id, subject, payload, headers) VALUES ($1, $2, $3, $4)",
        event.event_id,
        type(event).subject,
        encode(event),
        inject_context({}),
    )
    # NOTIFY is delivered on commit only, so the relay wakes exactly when the row becomes visible.
    await conn.execute("SELECT pg_notify('cpc_outbox_' || current_schema(), '')")


class OutboxRelay:
    """Publishes committed outbox rows in order; several replicas share the table with SKIP LOCKED."""

    def __init__(self, pool: Any, js: JetStreamContext, schema: str, *, batch: int = 200) -> None:
        self._pool = pool
        self._js = js
        self._schema = schema
        self._batch = batch
        self._wake = asyncio.Event()

    async def run(self, *, poll_seconds: float = 1.0) -> None:
        """Relay until cancelled: on every NOTIFY, and every `poll_seconds` in case one was missed."""
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(_channel(self._schema), self._on_notify)
            while True:
                try:
                    while await self.relay_once():
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # NATS or the database is away: rows stay and are retried
                    log.warning("outbox_relay_failed", error=str(exc))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
                self._wake.clear()
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(_channel(self._schema), self._on_notify)
            await self._pool.release(listener)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch of pending rows and delete them; returns how many were relayed."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, event_id, subject, payload, headers FROM outbox"
                " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            failpoint("outbox.before_publish")
            # Published in order on one connection, acks awaited together.
            await asyncio.gather(
                *(
                    publish_encoded(
                        self._js,
                        r["subject"],
                        bytes(r["payload"]),
                        msg_id=r["event_id"],
                        headers=r["headers"],
                    )
                    for r in rows
                )
            )
            failpoint("outbox.after_publish")
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
        return len(rows)
