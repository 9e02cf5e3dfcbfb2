"""One handler per request subject of the transcode service; the rules are in domain.py."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.object_store import ObjectStore

from libs.bus import Forbidden, NotFound, answers
from libs.db import Pool
from libs.obs.logging import get_logger
from libs.paging import check_limit
from libs.replica import Replica
from proto import channel as pc
from proto import transcode as pt
from proto.base import utcnow
from services.transcode import domain, store
from services.transcode.recordings import forget_recording, recording_view

__all__ = ["Handlers"]

log = get_logger("transcode")


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """One method per transcode request, marked with the Rpc it answers, over the pool, the media bucket
    and the copy of channels (for their owners)."""

    pool: Pool
    bucket: ObjectStore
    takeover_seconds: float
    channels: Replica[pc.ChannelCopy]

    @answers(pt.LIST_RECORDINGS)
    async def list_recordings(self, req: pt.ListRecordings) -> pt.RecordingList:
        """transcode.recordings: a channel's recordings, newest first."""
        limit = check_limit(req.limit)
        async with self.pool.acquire() as conn:
            rows = await store.list_recordings(conn, channel_name=req.channel_name.lower(), limit=limit)
        return pt.RecordingList(items=[recording_view(r) for r in rows])

    @answers(pt.DELETE_RECORDING)
    async def delete_recording(self, req: pt.DeleteRecording) -> pt.Recording:
        """transcode.delete: the channel owner removes a recording and its media."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.fetch_recording(conn, recording_id=req.recording_id)
            if row is None or row.channel_name != req.channel_name.lower():
                raise NotFound(
                    f'channel "{req.channel_name}" has no recording "{req.recording_id}"',
                    code="recording_not_found",
                )
            channel = await self.channels.get(conn, "channel_id", row.channel_id)
            if channel.owner_id != req.actor_id:
                raise Forbidden(
                    f'only the owner of channel "{row.channel_name}" may delete its recordings',
                    code="not_owner",
                )
            await forget_recording(conn, self.bucket, row, reason="deleted")
        log.info("recording_deleted", recording_id=req.recording_id, actor_id=req.actor_id)
        return recording_view(row)

    @answers(pt.PLAYBACK)
    async def playback(self, req: pt.GetPlayback) -> pt.Playback:
        """transcode.playback: whether the channel is live, transcoded, and where its DASH manifest is."""
        name = req.channel_name.lower()
        async with self.pool.acquire() as conn:
            row = await store.latest_session(conn, channel_name=name)
            has_segments = row is not None and await store.has_segments(conn, session_id=row.session_id)
        if row is None or row.ended_at is not None:
            return pt.Playback(channel_name=name, live=False, transcoded=False)
        alive = domain.transcoder_alive(
            row.heartbeat_at, now=utcnow(), takeover_seconds=self.takeover_seconds
        )
        transcoded = alive and not row.finished
        return pt.Playback(
            channel_name=name,
            live=True,
            transcoded=transcoded,
            dash_url=f"/live/{name}/manifest.mpd" if transcoded and has_segments else None,
            session_id=row.session_id,
            renditions=[r.label for r in row.rungs],
        )
