"""The one loop for background work: a step run when woken, every `every` seconds, and again at once
while it says more is waiting. A step that raises is logged, counted and retried after a back-off; a lost
database or NATS connection never ends the process. The runtime starts and stops every worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from libs.obs.logging import get_logger
from libs.obs.metrics import WORKER_ERRORS, WORKER_SECONDS

__all__ = ["Step", "Worker"]

log = get_logger("worker")

# A step returns True (or a positive count) when more work is waiting, so it runs again at once.
Step = Callable[[], Awaitable[bool | int | None]]

# A failing step is retried after 0.25 s, doubling up to this (or `every`, if shorter): work resumes
# within 5 s of the database or NATS coming back, at the cost of one failed attempt per 5 s while away.
MAX_BACKOFF = 5.0


class Worker:
    """Runs `step` when woken, every `every` seconds, and straight away while it reports more work."""

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        every: float,
        first_after: float = 0.0,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.name = name
        self.step = step
        self.every = every
        self.first_after = first_after
        self.max_backoff = max_backoff
        self.failures = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run the step now (work was queued); safe to call from any coroutine of the loop."""
        self._wake.set()

    def _backoff(self) -> float:
        """How long to wait after the latest failure: doubling, never past `max_backoff` or `every`."""
        return float(min(self.every, self.max_backoff, 0.25 * 2 ** min(self.failures - 1, 16)))

    async def run_once(self) -> bool:
        """One round: the step until it reports no more work. False when it raised (and was counted)."""
        started = time.perf_counter()
        try:
            while await self.step():
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database or NATS is away: the work waits for the next round
            self.failures += 1
            WORKER_ERRORS.labels(self.name).inc()
            log.warning(
                "worker_step_failed",
                worker=self.name,
                error=f"{type(exc).__name__}: {exc}",
                failures=self.failures,
                retry_in=self._backoff(),
            )
            return False
        finally:
            WORKER_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        if self.failures:
            log.info("worker_recovered", worker=self.name, after_failures=self.failures)
        self.failures = 0
        return True

    async def run(self) -> None:
        """Work until cancelled."""
        if self.first_after > 0:
            await self._sleep(self.first_after)
        while True:
            ok = await self.run_once()
            await self._sleep(self.every if ok else self._backoff())

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds` or until woken, whichever is first."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that arrives as the
        # wait ends (a wake() in the same moment), and the stopped worker would go on running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()
