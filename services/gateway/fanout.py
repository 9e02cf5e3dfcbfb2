"""Chat fan-out in one gateway process: one NATS subscription per room that has local sockets, each batch
of room frames joined once and handed to every socket of the room, and a socket that falls too far behind
is disconnected instead of slowing the room.

Room frames are framed once per flush (`services.gateway.wire.text_frame`) and written straight to each
socket's transport when the server offers the ``cpc.wire`` extension and nothing else waits for that
socket; a socket then falls behind when its kernel-side send buffer holds more than ``max_buffer`` bytes.
Frames of one socket only (the welcome, acks, errors) and room frames that queue behind them go through
the socket's bounded list and its writer task, in order.

Frames travel as NDJSON: one WebSocket text frame carries one or more JSON objects separated by "\\n"."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from prometheus_client import Counter, Gauge, Histogram

from libs.bus import ServiceUnavailable
from libs.obs.logging import get_logger
from proto import chat as pc
from services.gateway.wire import WireWriter, text_frame

__all__ = ["Fanout", "Outbox", "coalesce_window"]

log = get_logger("gateway")

SOCKETS = Gauge("cpc_chat_sockets", "Chat WebSockets open in this gateway.")
ROOMS = Gauge("cpc_chat_rooms", "Chat rooms this gateway is subscribed to.")
DROPPED = Counter("cpc_chat_slow_disconnects_total", "Chat sockets disconnected for falling behind.")
DELIVERED = Counter(
    "cpc_chat_frames_sent_total",
    "WebSocket frames sent to chat sockets: framed once per room flush and written directly, or queued.",
    ["path"],
)
DIRECT = DELIVERED.labels(path="direct")
QUEUED = DELIVERED.labels(path="queued")
DELIVERIES = Counter(
    "cpc_chat_deliveries_total", "Chat frames handed to sockets: one per frame per socket of its room."
)
DELIVERY_SECONDS = Histogram(
    "cpc_chat_delivery_seconds",
    "Seconds from a chat frame reaching this gateway to the socket write that carried it (oldest frame).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

SLOW_CLOSE_CODE = 4008
SEEN_IDS = 4096


def coalesce_window(sockets: int, *, base: float, budget: float, most: float) -> float:
    """Seconds a room's frames are gathered before one write to each of its `sockets`: `base`, stretched
    so that a busy room costs this process at most `budget` socket writes per second, never past `most`.

    A room of 1,000 sockets at the defaults (20 ms, 100,000 writes/s, 100 ms) flushes every 20 ms; a room
    of 5,000 every 50 ms: its messages wait longer to be written, but five times fewer writes leave room
    for everything else the process does, which is what keeps the tail latency down."""
    return min(most, max(base, sockets / budget))


class Outbox:
    """The sending side of one socket: frames wait in a bounded list; one task writes them, joined."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        *,
        max_pending: int,
        wire: WireWriter | None = None,
        max_buffer: int = 1 << 20,
    ) -> None:
        self._send = send
        self._close = close
        self._max_pending = max_pending
        self._wire = wire
        self._max_buffer = max_buffer
        self.pending: list[str] = []
        self.oldest = 0.0  # when the oldest pending frame reached the gateway (monotonic)
        self.closed = False
        self._sending = False  # the writer task is inside a send: a direct write would overtake it
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task (frames queued before it, like the welcome, go first)."""
        self._task = asyncio.create_task(self._run())
        SOCKETS.inc()

    def push_wire(self, frame: str, wire: bytes, arrived: float) -> bool:
        """Deliver a room frame: `wire` is `frame` already framed. Written straight to the transport when
        the socket has nothing queued (True), else queued behind what waits (False)."""
        if self.closed:
            return False
        if self._wire is None or self.pending or self._sending or self._task is None:
            self.push(frame, arrived)
            return False
        buffered = self._wire.write(wire)
        if buffered > self._max_buffer:
            self._overflow()
        return buffered >= 0

    def push(self, frame: str, arrived: float | None = None) -> None:
        """Queue a frame; a socket this far behind is disconnected (it never holds the room up)."""
        if self.closed:
            return
        if not self.pending:
            self.oldest = time.monotonic() if arrived is None else arrived
        self.pending.append(frame)
        if len(self.pending) > self._max_pending:
            self._overflow()
            return
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            if not self.pending:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            batch, self.pending, oldest = self.pending, [], self.oldest
            self._sending = True
            try:
                await self._send(batch[0] if len(batch) == 1 else "\n".join(batch))
            finally:
                self._sending = False
            QUEUED.inc()
            DELIVERY_SECONDS.observe(time.monotonic() - oldest)

    def _overflow(self) -> None:
        self.closed = True
        self.pending = []
        DROPPED.inc()
        log.info("chat_socket_too_slow", max_pending=self._max_pending, max_buffer=self._max_buffer)
        if self._task is not None:
            self._task.cancel()  # it may be stuck in a send to a peer that stopped reading
        asyncio.get_running_loop().create_task(self._close_quietly(SLOW_CLOSE_CODE, "too slow: reconnect"))

    async def _close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close(code, reason), timeout=5)

    async def stop(self) -> None:
        """Stop the writer (the socket is closing)."""
        if self._task is None:
            return
        SOCKETS.dec()
        self.closed = True
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self._task = None


class _Room:
    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.outboxes: set[Outbox] = set()
        self.batch: list[bytes] = []
        self.first_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.sub: Any = None
        self.ready = asyncio.Event()


class Fanout:
    """Rooms of this gateway process and their sockets."""

    def __init__(
        self,
        nc: Client,
        *,
        coalesce_seconds: float,
        write_budget: float = 100_000,
        coalesce_max_seconds: float = 0.1,
    ) -> None:
        self.nc = nc
        self.coalesce_seconds = coalesce_seconds
        self.write_budget = write_budget
        self.coalesce_max_seconds = max(coalesce_max_seconds, coalesce_seconds)
        self._rooms: dict[str, _Room] = {}

    async def join(self, room_id: str, outbox: Outbox) -> None:
        """Deliver the room's frames to `outbox` from now on (subscribing to the room if it is new here)."""
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(room_id)
            ROOMS.inc()

            async def on_msg(msg: Any) -> None:
                self._on_frame(room, msg.data, (msg.headers or {}).get("Nats-Msg-Id"))

            try:
                room.sub = await self.nc.subscribe(
                    pc.room_wildcard(room_id), cb=on_msg, pending_msgs_limit=100_000
                )
                await self.nc.flush()  # the server has our subscription before the joiner reads history
            except BaseException:
                del self._rooms[room_id]
                ROOMS.dec()
                room.ready.set()  # joiners waiting on it find no room and fail their own join
                raise
            room.ready.set()
        room.outboxes.add(outbox)
        await room.ready.wait()
        if self._rooms.get(room_id) is not room:
            raise ServiceUnavailable("chat fan-out is not reachable; reconnect", code="fanout_unavailable")

    async def leave(self, room_id: str, outbox: Outbox) -> None:
        """Stop delivering to `outbox`; the last socket of a room unsubscribes it."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        room.outboxes.discard(outbox)
        if room.outboxes or not room.ready.is_set():
            return
        del self._rooms[room_id]
        ROOMS.dec()
        if room.timer is not None:
            room.timer.cancel()
        with contextlib.suppress(Exception):
            await room.sub.unsubscribe()

    def _on_frame(self, room: _Room, data: bytes, msg_id: str | None) -> None:
        if msg_id is not None:
            # A publish retried after a chat-service crash reaches core subscribers again, though the
            # stream kept one copy: drop the repeat here so no socket sees a message twice.
            if msg_id in room.seen:
                return
            room.seen[msg_id] = None
            if len(room.seen) > SEEN_IDS:
                room.seen.popitem(last=False)
        if not room.batch:
            room.first_at = time.monotonic()
        room.batch.append(data)
        if room.timer is None:
            window = coalesce_window(
                len(room.outboxes),
                base=self.coalesce_seconds,
                budget=self.write_budget,
                most=self.coalesce_max_seconds,
            )
            room.timer = asyncio.get_running_loop().call_later(window, self._flush, room)

    def _flush(self, room: _Room) -> None:
        room.timer = None
        batch, room.batch = room.batch, []
        if not batch:
            return
        # Joined, decoded and framed once for the whole room; each socket gets the same bytes.
        payload = b"\n".join(batch)
        frame, wire, first_at = payload.decode(), text_frame(payload), room.first_at
        written = 0
        for outbox in room.outboxes:
            written += outbox.push_wire(frame, wire, first_at)
        if written:
            DIRECT.inc(written)
            DELIVERY_SECONDS.observe(time.monotonic() - first_at)  # when the last direct write left
        DELIVERIES.inc(len(batch) * len(room.outboxes))
