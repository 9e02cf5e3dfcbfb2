"""Where a session's media goes: each chunk is muxed per track on worker threads and published at once on
the chunk stream (the gateway streams a segment still being made from there: low-latency DASH); each
finished segment is stored whole in the bucket, and the live manifests are rewritten from the segment list
kept here (never re-read from the database)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js.object_store import ObjectStore

from libs.bus.publish import publish_media_piece
from libs.db import Pool
from libs.obs.logging import get_logger
from proto import transcode as pt
from services.transcode import domain, store
from services.transcode.config import TranscodeConfig
from services.transcode.metrics import REALTIME_FACTOR, SEGMENTS
from services.transcode.pipeline import RungEncoder
from services.transcode.segmenter import Chunk
from services.transcode.webm import Muxed, mux_audio, mux_video

__all__ = ["SegmentOutput"]

log = get_logger("transcode")

# Chunk messages stay well under NATS's max_payload (1 MiB by default); a larger chunk goes in pieces.
PIECE_BYTES = 512 * 1024


class SegmentOutput:
    """Muxes, publishes and stores the chunks of one session, in the order they come."""

    def __init__(
        self, *, nc: Client, bucket: ObjectStore, pool: Pool, config: TranscodeConfig, channel: str,
        session_id: str, epoch_us: int, segments: list[domain.SegmentInfo], with_audio: bool | None,
    ) -> None:  # fmt: skip
        self.js = nc.jetstream()
        self.bucket, self.pool, self.config = bucket, pool, config
        self.channel, self.sid, self.epoch_us = channel, session_id, epoch_us
        self.segments = segments
        # Fixed at the first chunk (or by the replica before us): the manifests' tracks never change.
        self.with_audio = with_audio
        self.rungs: list[RungEncoder] = []
        self.inits_written: set[str] = set()
        self.parts: dict[str, list[bytes]] = {}  # the current segment's chunks so far, per track

    async def write(self, chunk: Chunk, *, has_audio: bool) -> None:
        """Publish one chunk of every track; store the segment and rewrite the manifests when it is final."""
        if self.with_audio is None:
            self.with_audio = has_audio
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(r.pool, self._mux_rung, r, chunk.video[i]) for i, r in enumerate(self.rungs)
        ]
        tracks = [f"v{i}" for i in range(len(self.rungs))]
        if self.with_audio:
            jobs.append(loop.run_in_executor(None, _mux_audio, chunk.audio))
            tracks.append("a")
        if chunk.index == 0:
            self.parts = {track: [] for track in tracks}
        for track, muxed in zip(tracks, await asyncio.gather(*jobs), strict=True):
            if muxed.init and track not in self.inits_written:
                await self.bucket.put(pt.media_object(self.channel, self.sid, track, "init.webm"), muxed.init)
                self.inits_written.add(track)
            await self._publish(track, chunk, muxed.media)
            self.parts.setdefault(track, []).append(muxed.media)
        if chunk.final:
            await self._store(chunk)
        elif chunk.index == 0:  # announce the segment being made in the low-latency manifest
            await self._publish_manifests(coming=chunk, plain=False)

    async def _publish(self, track: str, chunk: Chunk, data: bytes) -> None:
        subject = pt.chunk_subject(self.sid, track, chunk.number)
        pieces = [data[i : i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES)] or [b""]
        for k, piece in enumerate(pieces):
            msg_id = f"{self.sid}.{track}.{chunk.number}.{chunk.index}.{k}"
            final = chunk.final and k == len(pieces) - 1
            headers = {pt.FINAL_CHUNK_HEADER: "1"} if final else None
            await publish_media_piece(self.js, subject, piece, msg_id=msg_id, headers=headers)

    async def _store(self, chunk: Chunk) -> None:
        size = 0
        for track, parts in self.parts.items():
            media = b"".join(parts)  # the very bytes the chunk readers got
            await self.bucket.put(
                pt.media_object(self.channel, self.sid, track, f"{chunk.number}.webm"), media
            )
            SEGMENTS.labels(track[0]).inc()
            size += len(media)
        self.parts = {}
        async with self.pool.acquire() as conn:
            await store.insert_segment(
                conn, session_id=self.sid, number=chunk.number, start_ms=chunk.start_ms,
                duration_ms=chunk.duration_ms, size=size,
            )  # fmt: skip
        info = domain.SegmentInfo(number=chunk.number, start_ms=chunk.start_ms, duration_ms=chunk.duration_ms)
        earlier = [s for s in self.segments if s.number < chunk.number]
        self.segments = [*earlier[-self._keep() :], info]
        await self._publish_manifests(coming=None, plain=True)
        for r in self.rungs:
            REALTIME_FACTOR.labels(r.rung.label).set(chunk.duration_ms / 1000 / max(r.busy_seconds, 1e-6))
            r.busy_seconds = 0.0
        log.info(
            "segment_stored", session_id=self.sid, number=chunk.number, ms=chunk.duration_ms, bytes=size,
            chunks=chunk.index + 1,
        )  # fmt: skip

    def _keep(self) -> int:
        """Segments kept in memory: the window and a margin (short segments after a takeover)."""
        return 2 * self.config.window_seconds // max(self.config.segment_seconds, 1) + 2

    async def _publish_manifests(self, *, coming: Chunk | None, plain: bool) -> None:
        cfg = self.config
        segment_ms = cfg.segment_seconds * 1000
        args: dict[str, Any] = dict(
            base=f"{self.sid}/",
            availability_start=datetime.fromtimestamp(self.epoch_us / 1e6, UTC),
            published=datetime.now(UTC),
            rungs=[r.rung for r in self.rungs],
            has_audio=bool(self.with_audio),
            segment_ms=segment_ms,
            window_ms=cfg.window_seconds * 1000,
            fps=cfg.fps,
        )
        if plain:
            mpd = domain.live_manifest(segments=self.segments, **args)
            await self.bucket.put(pt.live_manifest_object(self.channel), mpd.encode())
        if cfg.chunk_ms <= 0:
            return
        segments = list(self.segments)
        if coming is not None:
            # Until it is finished, the segment is listed as ending at the next slot's boundary.
            end = (coming.start_ms // segment_ms + 1) * segment_ms
            segments.append(domain.SegmentInfo(number=coming.number, start_ms=coming.start_ms,
                                               duration_ms=max(end - coming.start_ms, 1)))  # fmt: skip
        ll = domain.LowLatency(chunk_ms=cfg.chunk_ms, target_latency_ms=cfg.target_latency_ms)
        mpd = domain.live_manifest(segments=segments, low_latency=ll, **args)
        await self.bucket.put(pt.ll_manifest_object(self.channel), mpd.encode())

    def _mux_rung(self, r: RungEncoder, packets: list[Any]) -> Muxed:
        if not packets:
            return Muxed(b"", b"")
        return mux_video(
            packets, width=r.rung.width, height=r.rung.height, extradata=r.extradata, fps=self.config.fps
        )


def _mux_audio(packets: list[tuple[bytes, int]]) -> Muxed:
    return mux_audio(packets) if packets else Muxed(b"", b"")
