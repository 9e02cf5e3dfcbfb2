"""What edge does when its copy of a live session changes (libs.runtime keep_copy's on_change), thin: the
session goes into edge's history, and once it ended its viewers leave, in the copy's transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from libs.bus import Event
from libs.db import Connection, add_event
from proto.ingest import LiveSession
from services.edge import domain, store

__all__ = ["SessionEvents"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionEvents:
    """`close_local(session_id)` lets go of this process's own peers of an ended session (their rows have
    left already); other processes close theirs in their maintenance step."""

    close_local: Callable[[str], None]

    async def on_change(self, conn: Connection, live: LiveSession, event: Event) -> None:
        """Record the session; when it ended, every viewer still watching it leaves (one event each)."""
        await store.record_session(conn, live)
        if live.ended_at is None:
            return
        for viewer in await store.leave_session(conn, live.session_id):
            await add_event(conn, domain.viewer_left(viewer))
        self.close_local(live.session_id)
