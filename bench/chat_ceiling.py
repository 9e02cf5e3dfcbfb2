"""The ceiling for bench/chat_fanout.py: a bare `websockets` broadcast server, run in its own process on
uvloop (as the gateway's uvicorn is), fed from a core NATS subject, with the same per-room coalescing
window as the gateway (`coalesce_window`) and a writer task per socket."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import nats
import uvloop
from websockets.asyncio.server import ServerConnection, serve

from services.gateway.fanout import coalesce_window


class _Client:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.pending: list[str] = []
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            if batch:
                await self.ws.send(batch[0] if len(batch) == 1 else "\n".join(batch))


async def _main(
    port: int, nats_url: str, subject: str, coalesce: tuple[float, float, float], max_pending: int
) -> None:
    base, budget, most = coalesce
    clients: set[_Client] = set()
    batch: list[bytes] = []
    timer: list[Any] = [None]
    closing: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def flush() -> None:
        timer[0] = None
        frame = b"\n".join(batch).decode()
        batch.clear()
        for c in list(clients):
            c.pending.append(frame)
            if len(c.pending) > max_pending:
                clients.discard(c)
                closing.add(task := loop.create_task(c.ws.close(4008, "too slow")))
                task.add_done_callback(closing.discard)
            else:
                c.wake.set()

    async def on_msg(msg: Any) -> None:
        batch.append(msg.data)
        if timer[0] is None:
            window = coalesce_window(len(clients), base=base, budget=budget, most=most)
            timer[0] = loop.call_later(window, flush)

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the hello frame
        client = _Client(ws)
        clients.add(client)
        task = asyncio.create_task(client.run())
        try:
            await ws.wait_closed()
        finally:
            clients.discard(client)
            task.cancel()

    nc = await nats.connect(nats_url)
    await nc.subscribe(subject, cb=on_msg)
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, ping_interval=None):
        await asyncio.Future()


def run(
    port: int, nats_url: str, subject: str, coalesce: tuple[float, float, float], max_pending: int
) -> None:
    """Process entry: serve until terminated. `coalesce` is (base seconds, write budget, most seconds)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_main(port, nats_url, subject, coalesce, max_pending))
