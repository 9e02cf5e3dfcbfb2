"""Rules of edge: per-viewer queueing and the viewer history's limits; pure, no I/O."""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

from libs.bus import BadRequest, Forbidden

__all__ = ["MAX_POINTS", "ViewerQueue", "check_history_request", "check_owner", "curve_bucket"]

MAX_POINTS = 1000
MAX_BUCKET_SECONDS = 86400
MAX_SESSIONS = 100

T = TypeVar("T")


class ViewerQueue(Generic[T]):
    """A bounded queue of one viewer's video frames that starts at a keyframe and, when the viewer falls
    behind, drops everything up to the next keyframe (a partial GOP would only show as corruption)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.waiting_keyframe = True
        self.dropped = 0

    def offer(self, item: T, keyframe: bool) -> bool:
        """Queue `item`; False when it was dropped (the caller may ask upstream for a keyframe)."""
        if self.waiting_keyframe and not keyframe:
            self.dropped += 1
            return False
        if len(self.items) >= self.capacity:
            self.dropped += len(self.items) + 1
            self.items.clear()
            self.waiting_keyframe = not keyframe
            if not keyframe:
                return False
        self.waiting_keyframe = False
        self.items.append(item)
        return True

    def take(self) -> T | None:
        """The oldest queued item, or None."""
        return self.items.popleft() if self.items else None


def check_history_request(bucket_seconds: int, sessions: int) -> None:
    """A bucket of 1 s to a day and 1 to 100 sessions, or BadRequest naming the parameter."""
    if not 1 <= bucket_seconds <= MAX_BUCKET_SECONDS:
        raise BadRequest(
            f"bucket must be between 1 and {MAX_BUCKET_SECONDS} seconds, not {bucket_seconds}",
            code="invalid_bucket",
        )
    if not 1 <= sessions <= MAX_SESSIONS:
        raise BadRequest(
            f"sessions must be between 1 and {MAX_SESSIONS}, not {sessions}", code="invalid_sessions"
        )


def check_owner(owner_id: str, actor_id: str, *, channel: str) -> None:
    """Only the channel's owner sees its viewer history."""
    if not actor_id or owner_id != actor_id:
        raise Forbidden(f'only the owner of channel "{channel}" may see its viewer history', code="not_owner")


def curve_bucket(duration_seconds: float, bucket_seconds: int) -> int:
    """The bucket asked for, widened so that the session has at most MAX_POINTS points."""
    return max(bucket_seconds, math.ceil(max(duration_seconds, 0.0) / MAX_POINTS))
