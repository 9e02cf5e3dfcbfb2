"""The devstack supervisor restarts a dead unit after a back-off that doubles up to a cap, keeps trying
when a restart fails, and does nothing once stopped."""

from __future__ import annotations

import threading
import time

from libs.devstack import supervisor as sup
from libs.devstack.supervisor import Supervisor, Unit


class Flaky:
    """A unit that is dead until restarted; `fail_first` restarts raise first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.up = True
        self.fail_first = fail_first
        self.calls: list[float] = []
        self.restarted = threading.Event()

    def restart(self) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.fail_first:
            raise OSError("port still taken")
        self.up = True
        self.restarted.set()


def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_dead_unit_is_restarted_after_the_first_delay_and_logged() -> None:
    unit = Flaky()
    lines: list[str] = []
    s = Supervisor([Unit("nats-server", lambda: unit.up, unit.restart)], say=lines.append).start()
    try:
        unit.up = False
        died = time.monotonic()
        assert unit.restarted.wait(5)
        assert unit.calls[0] - died >= sup.FIRST_DELAY * 0.9
        assert [r.name for r in s.history] == ["nats-server"]
        assert any("nats-server restarted" in line for line in lines), lines
    finally:
        s.stop()


def test_failed_restarts_are_retried_with_doubling_waits() -> None:
    unit = Flaky(fail_first=3)
    lines: list[str] = []
    s = Supervisor([Unit("postgres", lambda: unit.up, unit.restart)], say=lines.append).start()
    try:
        unit.up = False
        assert unit.restarted.wait(10)
    finally:
        s.stop()
    gaps = [b - a for a, b in zip(unit.calls, unit.calls[1:], strict=False)]
    assert len(unit.calls) == 4
    # 0.4, 0.8, 1.6 s after the failures (the first try came after 0.2 s).
    for gap, expected in zip(gaps, (0.4, 0.8, 1.6), strict=True):
        assert expected * 0.9 <= gap <= expected + 1.0, gaps
    assert sum("did not start" in line for line in lines) == 3, lines


def test_a_unit_dying_again_at_once_waits_longer_each_time_up_to_the_cap() -> None:
    unit = Unit("chat", lambda: False, lambda: None)
    s = Supervisor([unit], say=lambda line: None)
    delays = []
    for _ in range(8):  # drive the checks by hand: the unit is dead again right after each restart
        s._check(unit)
        delays.append(unit.delay)
        unit.due = 0.0
        s._check(unit)
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_a_unit_up_for_a_minute_starts_again_from_the_first_delay() -> None:
    unit = Unit("chat", lambda: False, lambda: None, delay=5.0)
    unit.started_at = time.monotonic() - sup.STABLE_SECONDS - 1
    Supervisor([unit], say=lambda line: None)._check(unit)
    assert unit.delay == sup.FIRST_DELAY


def test_nothing_is_restarted_once_stopped() -> None:
    unit = Flaky()
    s = Supervisor([Unit("gateway", lambda: unit.up, unit.restart)], say=lambda line: None).start()
    s.stop()
    unit.up = False
    time.sleep(sup.FIRST_DELAY + 3 * sup.POLL_SECONDS)
    assert unit.calls == []
