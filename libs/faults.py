"""Failpoints: named places where a test may ask the process to die, to prove crash safety."""

from __future__ import annotations

import os
import sys

__all__ = ["arm", "failpoint"]

_armed: frozenset[str] = frozenset()

EXIT_CODE = 86


def arm(names: str) -> None:
    """Arm the comma-separated failpoints (from CPC_FAULTS at start); empty disarms all."""
    global _armed
    _armed = frozenset(n.strip() for n in names.split(",") if n.strip())


def failpoint(name: str) -> None:
    """Die at once, as `kill -9` would, when `name` is armed; otherwise do nothing."""
    if name in _armed:
        sys.stdout.write(f'{{"event": "failpoint_hit", "failpoint": "{name}"}}\n')
        sys.stdout.flush()
        os._exit(EXIT_CODE)
