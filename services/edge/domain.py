"""Per-viewer queueing rules of edge: pure, no I/O."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["ViewerQueue"]

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
