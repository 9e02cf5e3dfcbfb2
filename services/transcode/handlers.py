"""One handler per request subject and per event the transcode service takes; the rules are in domain.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from libs.bus import BadRequest, Forbidden, NotFound, RetryLater, Route, route
from libs.db import add_event
from libs.obs.logging import get_logger
from proto import channel as pc
from proto import ingest
from proto import transcode as pt
from services.transcode import store
from services.transcode.recordings import delete_objects, finalize_recording, recording_view
from services.transcode.settings import TranscodeConfig

__all__ = ["TranscodeHandlers"]

log = get_logger("transcode")


class TranscodeHandlers:
    """Endpoints and event handlers over the pool and the media bucket."""

    def __init__(self, pool: Any, bucket: Any, config: TranscodeConfig) -> None:
        self.pool = pool
        self.bucket = bucket
        self.config = config

    def routes(self) -> list[Route[Any, Any]]:
        """Every request endpoint of the service."""
        return [
            route(pt.LIST_RECORDINGS, self.list_recordings),
            route(pt.DELETE_RECORDING, self.delete_recording),
            route(pt.PLAYBACK, self.playback),
        ]

    async def list_recordings(self, req: pt.ListRecordings) -> pt.RecordingList:
        """transcode.recordings: a channel's recordings, newest first."""
        if not 1 <= req.limit <= 100:
            raise BadRequest(f"limit {req.limit} is out of range 1..100", code="invalid_limit")
        async with self.pool.acquire() as conn:
            rows = await store.list_recordings(conn, channel_name=req.channel_name.lower(), limit=req.limit)
        return pt.RecordingList(items=[recording_view(r) for r in rows])

    async def delete_recording(self, req: pt.DeleteRecording) -> pt.Recording:
        """transcode.delete: the channel owner removes a recording and its media."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.fetch_recording(conn, recording_id=req.recording_id)
            if row is None or row["channel_name"] != req.channel_name.lower():
                raise NotFound(
                    f'channel "{req.channel_name}" has no recording "{req.recording_id}"',
                    code="recording_not_found",
                )
            if await store.owner_of(conn, channel_id=row["channel_id"]) != req.actor_id:
                raise Forbidden(
                    f'only the owner of channel "{row["channel_name"]}" may delete its recordings',
                    code="not_owner",
                )
            await self._forget(conn, row, reason="deleted")
        log.info("recording_deleted", recording_id=req.recording_id, actor_id=req.actor_id)
        return recording_view(row)

    async def _forget(self, conn: Any, row: Any, *, reason: str) -> None:
        session = await store.fetch_session(conn, session_id=row["recording_id"])
        numbers = [s["number"] for s in await store.list_segments(conn, session_id=row["recording_id"])]
        rungs = len(msgspec.json.decode(session["rungs"])) if session is not None else 0
        await store.delete_recording(conn, recording_id=row["recording_id"])
        await add_event(
            conn,
            pt.RecordingDeleted(
                recording_id=row["recording_id"],
                channel_id=row["channel_id"],
                channel_name=row["channel_name"],
                reason=reason,
            ),
        )
        await delete_objects(self.bucket, row, rungs, numbers)

    async def playback(self, req: pt.GetPlayback) -> pt.Playback:
        """transcode.playback: whether the channel is live, transcoded, and where its DASH manifest is."""
        name = req.channel_name.lower()
        async with self.pool.acquire() as conn:
            row = await store.latest_session(conn, channel_name=name)
            has_segments = row is not None and bool(
                await store.list_segments(conn, session_id=row["session_id"])
            )
        if row is None or row["ended_at"] is not None:
            return pt.Playback(channel_name=name, live=False, transcoded=False)
        fresh = datetime.now(UTC) - timedelta(seconds=self.config.takeover_seconds * 2)
        transcoded = row["heartbeat_at"] is not None and row["heartbeat_at"] > fresh and not row["finished"]
        rungs = msgspec.json.decode(row["rungs"]) if isinstance(row["rungs"], str) else row["rungs"]
        return pt.Playback(
            channel_name=name,
            live=True,
            transcoded=transcoded,
            dash_url=f"/live/{name}/manifest.mpd" if transcoded and has_segments else None,
            session_id=row["session_id"],
            renditions=[f"{r['height']}p" for r in rungs],
        )

    async def on_session(self, event: ingest.SessionStarted | ingest.SessionEnded) -> None:
        """Remember sessions; at an end nobody transcodes any more, make the recording here."""
        async with self.pool.acquire() as conn:
            await store.upsert_session(
                conn,
                session_id=event.session_id,
                channel_id=event.channel_id,
                channel_name=event.channel_name,
                started_at=event.started_at,
            )
            if isinstance(event, ingest.SessionStarted):
                return
            await store.mark_ended(conn, session_id=event.session_id, ended_at=event.ended_at)
            row = await store.fetch_session(conn, session_id=event.session_id)
        if row["finished"]:
            return
        fresh = datetime.now(UTC) - timedelta(seconds=self.config.takeover_seconds * 2)
        if row["process_id"] is not None and row["heartbeat_at"] is not None and row["heartbeat_at"] > fresh:
            raise RetryLater("the transcoder is still writing the last segments", delay=2.0)
        await finalize_recording(self.pool, self.bucket, event.session_id, fps=self.config.fps)

    async def on_channel(self, event: pc.ChannelCreated) -> None:
        """Keep who owns which channel, for owner-only deletes."""
        async with self.pool.acquire() as conn:
            await store.upsert_owner(
                conn, channel_id=event.channel_id, name=event.name, owner_id=event.owner_id
            )

    async def sweep_forever(self) -> None:
        """Delete recordings older than the retention setting."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=self.config.recording_retention_days)
            async with self.pool.acquire() as conn, conn.transaction():
                for row in await store.expired_recordings(conn, older_than=cutoff):
                    await self._forget(conn, row, reason="retention")
                    log.info("recording_expired", recording_id=row["recording_id"])
            await asyncio.sleep(self.config.retention_sweep_seconds)
