"""The session lifecycle rules of ingest: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["OpenSession", "StartDecision", "decide_start", "is_expired", "kbps"]

StartDecision = Literal["new", "resume", "conflict", "same"]


@dataclass(frozen=True, slots=True)
class OpenSession:
    """The unfinished session of a channel as the rules need it."""

    kind: str
    state: str
    last_seen: datetime
    grace_until: datetime | None


def is_expired(s: OpenSession, now: datetime, *, grace: timedelta, stale: timedelta) -> bool:
    """Whether the session is over: its grace period passed, or its process went silent that long."""
    if s.state == "grace":
        return s.grace_until is not None and s.grace_until <= now
    if s.kind == "whip":
        return s.last_seen + stale + grace <= now
    return False


def decide_start(
    s: OpenSession | None, kind: str, now: datetime, *, grace: timedelta, stale: timedelta
) -> StartDecision:
    """What a new start of `kind` on a channel with unfinished session `s` does.

    A broadcaster who dropped (grace) or whose ingest process went silent comes back into the same
    session; a live one refuses a second broadcaster; an operator start on an operator session is a no-op.
    """
    if s is None or is_expired(s, now, grace=grace, stale=stale):
        return "new"
    if s.state == "grace":
        return "resume"
    if s.kind == "whip" and s.last_seen + stale <= now:
        return "resume"
    if s.kind == "operator" and kind == "operator":
        return "same"
    return "conflict"


def kbps(byte_count: int, seconds: float) -> int:
    """Bitrate in kbit/s of `byte_count` bytes over `seconds`."""
    return round(byte_count * 8 / 1000 / seconds) if seconds > 0 else 0
