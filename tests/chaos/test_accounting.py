"""The chaos suite's arithmetic, without a stack: recovery time from recorded attempts, fault names."""

from __future__ import annotations

import pytest

from tests.chaos import faults
from tests.chaos.accounting import Tally, recovery_seconds, table
from tests.chaos.load import KINDS, Attempt, Target, User


def target(*attempts: Attempt) -> Target:
    u = User("u", "1", "t")
    return Target(u, "c", u, [], attempts=list(attempts))


def test_recovery_is_the_slowest_kind_s_first_ack_after_its_last_failure() -> None:
    kill = 100.0
    ok_all = [Attempt(k, kill + 0.1, kill + 0.2, True) for k in KINDS]
    assert recovery_seconds(target(*ok_all), kill) == pytest.approx(0.2)
    late = [
        *ok_all,
        Attempt("chat", kill + 0.3, kill + 2.0, False),
        Attempt("chat", kill + 2.0, kill + 2.5, False),
        Attempt("chat", kill + 2.5, kill + 3.1, True),
    ]
    assert recovery_seconds(target(*late), kill) == pytest.approx(3.1)
    # A request started before the kill and answered after it says nothing about recovery.
    before = [a for a in ok_all if a.kind != "payment"] + [Attempt("payment", kill - 1, kill + 1, True)]
    assert recovery_seconds(target(*before), kill) == float("inf")


def test_table_shows_losses_and_fault_names_are_checked() -> None:
    row = Tally("social", acked=3, expected=5, kept=4, doubled=1, recovery=1.5)
    assert row.lost == 1
    line = table([row]).splitlines()[2]
    assert line.split()[:7] == ["social", "3", "0", "5", "4", "1", "1"]
    assert faults.chosen("") == faults.FAULTS
    assert faults.chosen("postgres, social") == ["social", "postgres"]
    with pytest.raises(ValueError, match=r"unknown fault.*socail"):
        faults.chosen("socail")
