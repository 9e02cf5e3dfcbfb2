"""Transactional outbox: an event is written in the same transaction as the change it reports,
then relayed to JetStream with `Nats-Msg-Id = event_id`, so a crash can neither lose nor double it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from libs.bus.codec import Event, encode
from libs.bus.publish import publish_encoded
from libs.db.pool import Connection, Pool
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


async def add_event(conn: Connection, event: Event) -> None:
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
    """Publishes committed outbox rows in order; several replicas share the table with SKIP LOCKED.
    Its `step` runs in a `libs.worker.Worker`, woken by the NOTIFY of each commit."""

    def __init__(self, pool: Pool, js: JetStreamContext, schema: str, *, batch: int = 200) -> None:
        self._pool = pool
        self._js = js
        self._schema = schema
        self._batch = batch
        self._listener: Connection | None = None
        self.on_notify: Callable[[], None] = lambda: None

    async def step(self) -> bool:
        """Listen for commits (again, after a lost connection), then relay one batch; True if more wait."""
        await self._listen()
        return await self.relay_once() > 0

    def _listening(self) -> bool:
        if self._listener is None:
            return False
        try:
            return not self._listener.is_closed()
        except asyncpg.InterfaceError:
            # The connection was lost (PostgreSQL restarted): the pool took it back and detached our
            # handle, whose every call now raises. Without this the relay would never listen again.
            return False

    async def _listen(self) -> None:
        if self._listening():
            return
        await self.close()
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(_channel(self._schema), self._notified)
        except BaseException:
            await self._pool.release(listener)
            raise
        self._listener = listener

    async def close(self) -> None:
        """Give the listening connection back to the pool."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(Exception):
            await listener.remove_listener(_channel(self._schema), self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(listener)

    def _notified(self, *_: Any) -> None:
        self.on_notify()

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
