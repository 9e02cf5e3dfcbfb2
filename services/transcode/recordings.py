"""Recordings: a finished session's segments under a static manifest; deleting them and their objects, by
their owner or when they outlive the retention."""

from __future__ import annotations

import contextlib

from nats.js.object_store import ObjectStore

from libs.db import Connection, Pool, add_event
from libs.obs.logging import get_logger
from proto import transcode as pt
from proto.base import utcnow
from services.transcode import domain, store
from services.transcode.store import RecordingRow

__all__ = ["delete_objects", "expire_recordings", "finalize_recording", "forget_recording", "recording_view"]

log = get_logger("transcode")

# Recordings deleted per retention step (one transaction); a step that deletes this many runs again.
EXPIRE_BATCH = 50


def recording_view(row: RecordingRow) -> pt.Recording:
    """A stored recording as the API shows it."""
    return pt.Recording(
        id=row.recording_id,
        channel_name=row.channel_name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_ms=row.duration_ms,
        segments=row.segments,
        manifest_url=f"/vod/{row.channel_name}/{row.recording_id}/manifest.mpd",
    )


async def finalize_recording(pool: Pool, bucket: ObjectStore, session_id: str, *, fps: int) -> None:
    """Turn a finished session into a recording (once), and take its live manifest down."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.fetch_session(conn, session_id=session_id, lock=True)
        if row is None or row.finished:
            return
        segs = await store.list_segments(conn, session_id=session_id)
        await store.finish_session(conn, session_id=session_id)
        if segs:
            mpd = domain.vod_manifest(
                base="", rungs=row.rungs, has_audio=row.has_audio, segments=segs, fps=fps
            )
            await bucket.put(pt.vod_manifest_object(row.channel_name, session_id), mpd.encode())
            duration = segs[-1].start_ms + segs[-1].duration_ms - segs[0].start_ms
            if await store.insert_recording(conn, session=row, duration_ms=duration, segments=len(segs)):
                await add_event(
                    conn,
                    pt.RecordingReady(
                        recording_id=session_id,
                        channel_id=row.channel_id,
                        channel_name=row.channel_name,
                        duration_ms=duration,
                    ),
                )
        latest = await store.latest_session(conn, channel_name=row.channel_name)
    if latest is not None and latest.session_id == session_id:
        for name in (pt.live_manifest_object(row.channel_name), pt.ll_manifest_object(row.channel_name)):
            with contextlib.suppress(Exception):  # the low-latency one is missing when chunks are off
                await bucket.delete(name)
    log.info("recording_ready", session_id=session_id, segments=len(segs))


async def forget_recording(conn: Connection, bucket: ObjectStore, row: RecordingRow, *, reason: str) -> None:
    """Delete a recording with its segments and objects, and say so (`reason`: deleted, retention)."""
    session = await store.fetch_session(conn, session_id=row.recording_id)
    numbers = [s.number for s in await store.list_segments(conn, session_id=row.recording_id)]
    rungs = len(session.rungs) if session is not None else 0
    await store.delete_recording(conn, recording_id=row.recording_id)
    await add_event(
        conn,
        pt.RecordingDeleted(
            recording_id=row.recording_id,
            channel_id=row.channel_id,
            channel_name=row.channel_name,
            reason=reason,
        ),
    )
    await delete_objects(bucket, row, rungs, numbers)


async def expire_recordings(pool: Pool, bucket: ObjectStore, *, retention_days: float) -> bool:
    """One retention step: delete recordings that ended longer ago than the retention; True when more wait."""
    cutoff = domain.retention_cutoff(utcnow(), retention_days=retention_days)
    async with pool.acquire() as conn, conn.transaction():
        expired = await store.expired_recordings(conn, older_than=cutoff, limit=EXPIRE_BATCH)
        for row in expired:
            await forget_recording(conn, bucket, row, reason="retention")
            log.info("recording_expired", recording_id=row.recording_id)
    return len(expired) == EXPIRE_BATCH


async def delete_objects(bucket: ObjectStore, row: RecordingRow, rungs: int, numbers: list[int]) -> None:
    """Remove a recording's manifest, init and media segments from the bucket."""
    channel, sid = row.channel_name, row.recording_id
    names = [pt.vod_manifest_object(channel, sid)]
    for track in [*(f"v{i}" for i in range(rungs)), "a"]:
        names.append(pt.media_object(channel, sid, track, "init.webm"))
        names.extend(pt.media_object(channel, sid, track, f"{n}.webm") for n in numbers)
    for name in names:
        with contextlib.suppress(Exception):  # already gone, or audio that never was
            await bucket.delete(name)
