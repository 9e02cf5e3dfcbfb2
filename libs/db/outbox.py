"""Transactional outbox: an event is written in the same transaction as the change it reports,
then relayed to JetStream with `Nats-Msg-Id = event_id`, so a crash can neither lose nor double it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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

__all__ = ["LEAD_IDLE_SECONDS", "OUTBOX_DDL", "OutboxRelay", "add_event", "relay_lock_key"]

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


# How long the relay's session may stay idle before PostgreSQL ends it (and so frees the lead). Each step
# uses it (the worker steps every second, at most 5 s apart while failing), so only a stuck or cut-off
# relay reaches this.
LEAD_IDLE_SECONDS = 30.0
# A leader whose ping is not answered in this long treats its connection (and so the lead) as lost.
PING_SECONDS = 5.0


def _channel(schema: str) -> str:
    return f"cpc_outbox_{schema}"


def relay_lock_key(schema: str) -> int:
    """The advisory lock key whose holder is the one relay of `schema` (a stable 63-bit hash)."""
    digest = hashlib.blake2b(f"cpc-outbox-relay/{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


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
    """Publishes committed outbox rows in commit (seq) order, one batch at a time. Of the replicas of a
    service only the leader sends: the one holding the schema's advisory lock, taken with
    `pg_try_advisory_lock` on the connection it also listens on; if that connection is lost PostgreSQL
    releases the lock and another replica's next step takes it. Its `step` runs in a `libs.worker.Worker`,
    woken by the NOTIFY of each commit (and every second, which is also how a follower retries the lock)."""

    def __init__(
        self,
        pool: Pool,
        js: JetStreamContext,
        schema: str,
        *,
        batch: int = 200,
        lead_idle_seconds: float = LEAD_IDLE_SECONDS,
    ) -> None:
        self._pool = pool
        self._lead_idle = lead_idle_seconds
        self._js = js
        self._schema = schema
        self._batch = batch
        self._listener: Connection | None = None
        self.leading = False
        self.on_notify: Callable[[], None] = lambda: None

    async def step(self) -> bool:
        """Listen for commits and hold the lead (again, after a lost connection), then relay one batch
        if leading; True if more wait."""
        await self._listen()
        if not await self._lead():
            return False
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
            # A leader that stops stepping (frozen, or cut off without the socket closing) must not keep
            # the lock until TCP gives up: PostgreSQL ends a session idle this long, releasing the lock.
            # The pool's reset (RESET ALL) undoes this when the connection goes back.
            idle = f"{int(self._lead_idle * 1000)}ms"
            await listener.execute(f"SET idle_session_timeout = '{idle}'")
            await listener.add_listener(_channel(self._schema), self._notified)
        except BaseException:
            await self._pool.release(listener)
            raise
        self._listener = listener

    async def _lead(self) -> bool:
        """Whether this relay holds the schema's relay lock, trying to take it when not. A leader checks
        its connection is alive on each step: a lost one has lost the lock too (and another replica may
        hold it now), so it gives the connection back and tries again on the next step."""
        listener = self._listener
        assert listener is not None
        try:
            if self.leading:
                await listener.fetchval("SELECT 1", timeout=PING_SECONDS)
                return True
            key = relay_lock_key(self._schema)
            got = bool(await listener.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=PING_SECONDS))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if self.leading:
                log.warning("outbox_relay_lead_lost", schema=self._schema)
            await self.close()
            raise
        if got:
            self.leading = True
            log.info("outbox_relay_leading", schema=self._schema)
        return got

    async def close(self) -> None:
        """Give up the lead and give the listening connection back to the pool (bounded: a connection
        cut off without closing must not hang the relay here)."""
        listener, self._listener = self._listener, None
        leading, self.leading = self.leading, False
        if listener is None:
            return
        if leading:
            with contextlib.suppress(Exception):
                key = relay_lock_key(self._schema)
                await listener.fetchval("SELECT pg_advisory_unlock($1)", key, timeout=PING_SECONDS)
        with contextlib.suppress(Exception):
            remove = listener.remove_listener(_channel(self._schema), self._notified)
            await asyncio.wait_for(remove, PING_SECONDS)
        # The pool's reset on release also runs pg_advisory_unlock_all(); a release that times out
        # terminates the connection, which frees the lock as well.
        with contextlib.suppress(Exception):
            await self._pool.release(listener, timeout=PING_SECONDS)

    def _notified(self, *_: Any) -> None:
        self.on_notify()

    async def relay_once(self) -> int:
        """Publish the oldest batch of pending rows one after another, each after the previous one's
        PubAck, and delete those acknowledged; returns how many were relayed. A failed publish ends the
        batch there, so a later row never reaches the stream before an earlier one."""
        async with self._pool.acquire() as conn, conn.transaction():
            # FOR UPDATE without SKIP LOCKED: a relay that lost the lead mid-batch still holds these rows,
            # and its successor waits for that batch to end instead of sending rows behind it.
            rows = await conn.fetch(
                "SELECT seq, event_id, subject, payload, headers FROM outbox"
                " ORDER BY seq LIMIT $1 FOR UPDATE",
                self._batch,
            )
            if not rows:
                return 0
            failpoint("outbox.before_publish")
            sent: list[int] = []
            failed: Exception | None = None
            for r in rows:
                try:
                    payload = bytes(r["payload"])
                    await publish_encoded(
                        self._js, r["subject"], payload, msg_id=r["event_id"], headers=r["headers"]
                    )
                except Exception as exc:  # NATS away: keep what was acknowledged, retry the rest later
                    failed = exc
                    break
                sent.append(r["seq"])
            if sent:
                failpoint("outbox.after_publish")
                await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", sent)
        if failed is not None:
            raise failed
        return len(sent)
