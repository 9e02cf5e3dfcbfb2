"""What the channel service does when others' entities change: a channel's live state follows the copy of
ingest's live sessions (kept by the runtime; this runs in the same transaction as the copy's change)."""

from __future__ import annotations

from libs.db import Connection
from libs.obs.logging import get_logger
from proto.base import Event
from proto.ingest import LiveSession
from services.channel import store

__all__ = ["follow_live_state"]

log = get_logger("channel")


async def follow_live_state(conn: Connection, session: LiveSession, event: Event) -> None:
    """stream.session.started/ended changed the copy: the channel is live while it has an open session
    (the newest one, when a new session started before the last one's end arrived)."""
    # Locked: two replicas handling a start and an end of one channel must not interleave.
    if not await store.lock_channel(conn, channel_id=session.channel_id):
        log.warning(
            "session_for_unknown_channel", channel_id=session.channel_id, session_id=session.session_id
        )
        return
    live_session_id = await store.refresh_live(conn, channel_id=session.channel_id)
    log.info(
        "channel_live_state",
        channel_id=session.channel_id,
        session_id=session.session_id,
        live=live_session_id is not None,
    )
