"""A supervisor for the embedded stack: it watches the PostgreSQL postmaster, nats-server and every service
process, and starts whichever died again, with its data (same folder, same port), after a back-off."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Restart", "Supervisor", "Unit"]

# Back-off before a restart: 0.2 s, doubling with each restart up to 5 s; a unit that stayed up a minute
# starts again from 0.2 s. A unit that crashes at once on every start is retried every 5 s, not in a loop.
FIRST_DELAY = 0.2
MAX_DELAY = 5.0
STABLE_SECONDS = 60.0
POLL_SECONDS = 0.1


@dataclass
class Unit:
    """One supervised thing: `alive()` says whether it runs, `restart()` starts it again (and may raise)."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], object]
    delay: float = FIRST_DELAY
    started_at: float = field(default_factory=time.monotonic)
    died_at: float | None = None
    due: float = 0.0


@dataclass(frozen=True)
class Restart:
    """A restart the supervisor made: when the death was seen, and how long the restart itself took."""

    name: str
    died_at: float
    restarted_at: float
    start_seconds: float

    @property
    def down_seconds(self) -> float:
        """From the death being seen to the restart having returned."""
        return self.restarted_at - self.died_at


class Supervisor:
    """A thread that polls its units in order (infrastructure before the services that need it) and
    restarts the dead ones; `stop()` ends it, so that a deliberate stop afterwards is not undone."""

    def __init__(self, units: Sequence[Unit], *, say: Callable[[str], None]) -> None:
        self.units = list(units)
        self.say = say
        self.history: list[Restart] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        """Start watching (idempotent)."""
        if self._thread is None:
            now = time.monotonic()
            for unit in self.units:
                unit.started_at = now
            self._thread = threading.Thread(target=self._run, name="devstack-supervisor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching; returns once a restart under way has finished."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    @property
    def running(self) -> bool:
        """True while the supervisor watches."""
        return self._thread is not None and not self._stop.is_set()

    def restarts_of(self, name: str) -> list[Restart]:
        """The restarts of unit `name` so far."""
        return [r for r in list(self.history) if r.name == name]

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            for unit in self.units:
                if self._stop.is_set():
                    return
                try:
                    self._check(unit)
                except Exception as exc:  # the supervisor itself must never die of one unit's trouble
                    self.say(f"supervisor: checking {unit.name} failed: {type(exc).__name__}: {exc}")

    def _check(self, unit: Unit) -> None:
        now = time.monotonic()
        if unit.died_at is None:
            if unit.alive():
                return
            if now - unit.started_at >= STABLE_SECONDS:
                unit.delay = FIRST_DELAY
            unit.died_at, unit.due = now, now + unit.delay
            self.say(f"{unit.name} is down; restarting it in {unit.delay:g} s")
            return
        if now < unit.due:
            return
        began = time.monotonic()
        try:
            unit.restart()
        except Exception as exc:
            unit.delay = min(unit.delay * 2, MAX_DELAY)
            unit.due = time.monotonic() + unit.delay
            self.say(f"{unit.name} did not start ({type(exc).__name__}: {exc}); next try in {unit.delay:g} s")
            return
        done = time.monotonic()
        self.history.append(Restart(unit.name, unit.died_at, done, done - began))
        self.say(f"{unit.name} restarted (start took {done - began:.2f} s, down {done - unit.died_at:.2f} s)")
        unit.started_at, unit.died_at = done, None
        unit.delay = min(unit.delay * 2, MAX_DELAY)
