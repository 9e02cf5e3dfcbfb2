"""The gateway's per-socket outbox: writes are joined while a send is in progress, and a socket that
stops reading is closed instead of holding anything up."""

from __future__ import annotations

import asyncio

from services.gateway.fanout import SLOW_CLOSE_CODE, Outbox, coalesce_window


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


def test_big_rooms_gather_longer_within_the_write_budget() -> None:
    window = {
        n: coalesce_window(n, base=0.02, budget=100_000, most=0.1) for n in (10, 1000, 2000, 5000, 50_000)
    }
    assert window == {10: 0.02, 1000: 0.02, 2000: 0.02, 5000: 0.05, 50_000: 0.1}
    # at most `budget` writes per second while the window is below its cap
    assert 5000 / window[5000] <= 100_000
