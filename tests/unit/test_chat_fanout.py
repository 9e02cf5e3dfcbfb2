"""The gateway's per-socket outbox: writes are joined while a send is in progress, and a socket that
stops reading is closed instead of holding anything up."""

from __future__ import annotations

import asyncio

from services.gateway.fanout import SLOW_CLOSE_CODE, Outbox


async def test_pending_frames_are_joined_into_one_write() -> None:
    sent: list[str] = []
    gate = asyncio.Event()

    async def send(text: str) -> None:
        sent.append(text)
        await gate.wait()

    async def close(code: int, reason: str) -> None:
        raise AssertionError("not closed")

    box = Outbox(send, close, max_pending=10)
    box.start()
    box.push("a")
    await asyncio.sleep(0.01)
    box.push("b")
    box.push("c")
    gate.set()
    await asyncio.sleep(0.01)
    assert sent == ["a", "b\nc"]
    await box.stop()


async def test_a_stuck_socket_is_closed_on_overflow() -> None:
    closed: list[int] = []

    async def never(text: str) -> None:
        await asyncio.Event().wait()  # the peer stopped reading

    async def close(code: int, reason: str) -> None:
        closed.append(code)

    box = Outbox(never, close, max_pending=3)
    box.start()
    for i in range(5):
        box.push(str(i))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert closed == [SLOW_CLOSE_CODE]
    assert box.closed
    await box.stop()
