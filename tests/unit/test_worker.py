"""libs.worker: a raising step is counted and retried while the loop keeps going, wake() and a step that
reports more work run it again at once, and cancelling stops it cleanly."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import REGISTRY

from libs.worker import Step, Worker

# Far longer than any test waits: a second run can only come from a wake, a retry or "more work".
NEVER = 3600.0
# Generous: these bound a hang, they do not measure speed.
PATIENCE = 10.0


def _errors(name: str) -> float:
    return REGISTRY.get_sample_value("cpc_worker_errors_total", {"worker": name}) or 0.0


def _name() -> str:
    return f"test-{secrets.token_hex(4)}"


class Calls:
    """Counts a step's calls and lets a test wait for the n-th."""

    def __init__(self) -> None:
        self.n = 0
        self._changed = asyncio.Condition()

    async def seen(self) -> None:
        async with self._changed:
            self.n += 1
            self._changed.notify_all()

    async def reach(self, n: int) -> None:
        async with asyncio.timeout(PATIENCE), self._changed:
            await self._changed.wait_for(lambda: self.n >= n)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def counting(calls: Calls, then: Callable[[int], bool] = lambda n: False) -> Step:
    async def step() -> bool:
        await calls.seen()
        return then(calls.n)

    return step


async def test_a_raising_step_is_counted_retried_and_the_worker_keeps_running() -> None:
    name, calls = _name(), Calls()

    async def step() -> bool:
        await calls.seen()
        if calls.n <= 2:
            raise ConnectionResetError("the database went away")
        return False

    worker = Worker(name, step, every=NEVER)
    async with running(worker) as task:
        await calls.reach(3)  # two failures, each retried after its back-off, then a success
        assert _errors(name) == 2
        assert worker.failures == 0  # the success reset the back-off
        assert not task.done()
        worker.wake()
        await calls.reach(4)
        assert not task.done()
    assert _errors(name) == 2


async def test_the_back_off_grows_with_failures_and_stays_within_its_caps() -> None:
    async def step() -> bool:
        return False

    worker = Worker(_name(), step, every=NEVER, max_backoff=2.0)
    short = Worker(_name(), step, every=1.0)
    delays = []
    for failures in range(1, 8):
        worker.failures = failures
        delays.append(worker._backoff())
    assert delays == sorted(delays)
    assert delays[0] > 0
    assert max(delays) == 2.0
    short.failures = 10
    assert short._backoff() == 1.0  # a worker due every second never waits longer than that


async def test_wake_runs_the_step_at_once_without_waiting_for_every() -> None:
    calls = Calls()
    worker = Worker(_name(), counting(calls), every=NEVER)
    async with running(worker):
        await calls.reach(1)  # the first round runs at start
        worker.wake()
        await calls.reach(2)
        worker.wake()
        await calls.reach(3)


async def test_a_wake_during_first_after_starts_the_first_round() -> None:
    calls = Calls()
    worker = Worker(_name(), counting(calls), every=NEVER, first_after=NEVER)
    async with running(worker):
        await asyncio.sleep(0)
        assert calls.n == 0
        worker.wake()
        await calls.reach(1)


async def test_a_step_reporting_more_work_runs_again_at_once() -> None:
    calls = Calls()
    worker = Worker(_name(), counting(calls, then=lambda n: n < 4), every=NEVER)
    async with running(worker):
        await calls.reach(4)  # True, True, True, then False: four calls with no wake and no poll
        await asyncio.sleep(0.1)
        assert calls.n == 4  # False ends the round: the next waits for a wake or `every`


async def test_cancelling_stops_the_worker_cleanly_mid_step_and_between_steps() -> None:
    name, started = _name(), asyncio.Event()

    async def blocked() -> bool:
        started.set()
        await asyncio.Event().wait()
        return False

    worker = Worker(name, blocked, every=NEVER)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(PATIENCE):
        await started.wait()
    task.cancel()
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert _errors(name) == 0  # a cancelled step is a stop, not a failure

    calls = Calls()
    idle = Worker(_name(), counting(calls), every=NEVER)
    task = asyncio.create_task(idle.run())
    await calls.reach(1)  # now asleep until `every`
    task.cancel()
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_a_worker_woken_in_the_same_moment_it_is_cancelled_still_stops() -> None:
    """A relay woken by a commit's NOTIFY just as its service stops: Python 3.11's asyncio.wait_for
    returns the finished wait and drops the cancellation, so the worker would run on forever."""
    calls = Calls()
    worker = Worker(_name(), counting(calls), every=NEVER)
    task = asyncio.create_task(worker.run())
    await calls.reach(1)  # now asleep until woken
    await asyncio.sleep(0)
    worker.wake()
    task.cancel()
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
