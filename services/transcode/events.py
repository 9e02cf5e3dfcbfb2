"""The consumers of ingest's session events, thin: the replicas' shared work consumer that transcodes a
started session, and the end of a session, after which its recording is made."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.object_store import ObjectStore

from libs.bus import RetryLater
from libs.db import Pool
from libs.obs.logging import get_logger
from libs.replica import Replica
from proto import ingest
from proto.base import utcnow
from services.transcode import domain, store
from services.transcode.config import TranscodeConfig
from services.transcode.recordings import finalize_recording
from services.transcode.session import SessionRunner

__all__ = ["SessionEvents"]

log = get_logger("transcode")


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionEvents:
    """Event handlers over the pool, the bucket and the copy of live sessions. Each first applies its event
    to the copy (as the copy's own consumer does, idempotently by version), so the copy is current for
    what the handler does next whichever consumer got there first."""

    nc: Client
    bucket: ObjectStore
    pool: Pool
    config: TranscodeConfig
    sessions: Replica[ingest.LiveSession]
    process_id: str
    encoder: str

    async def transcode(self, event: ingest.SessionStarted) -> None:
        """transcode-work: transcode the session here until it ends or another replica takes it. A run that
        fails is logged and acknowledged (retrying would most likely fail again on the same media)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self.sessions.apply(conn, event)
            await store.add_transcode(conn, session_id=event.session_id)
        runner = SessionRunner(
            nc=self.nc, bucket=self.bucket, pool=self.pool, config=self.config, event=event,
            process_id=self.process_id, encoder=self.encoder,
        )  # fmt: skip
        try:
            await runner.run()
        except Exception:
            log.exception("transcode_failed", session_id=event.session_id)

    async def session_ended(self, event: ingest.SessionEnded) -> None:
        """transcode-session-ends: once no replica transcodes the ended session any more, make its recording
        (a replica that saw the end itself has made it already)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self.sessions.apply(conn, event)
            await store.add_transcode(conn, session_id=event.session_id)
            row = await store.fetch_session(conn, session_id=event.session_id)
        if row is None or row.finished:
            return
        takeover = self.config.takeover_seconds
        if row.process_id is not None and domain.transcoder_alive(
            row.heartbeat_at, now=utcnow(), takeover_seconds=takeover
        ):
            raise RetryLater("the transcoder is still writing the last segments", delay=2.0)
        await finalize_recording(self.pool, self.bucket, event.session_id, fps=self.config.fps)
