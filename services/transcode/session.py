"""Transcodes one live session: encoded frames from NATS in, decoded once, encoded per rung on worker
threads, cut into aligned segments, stored in the bucket with a live manifest after each segment."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from libs.bus import decode
from libs.media.frames import MediaFrame, unpack_frame
from libs.obs.logging import get_logger
from proto import ingest
from proto import transcode as pt
from services.transcode import domain, store
from services.transcode.metrics import LIVE_STREAMS, REALTIME_FACTOR, SEGMENTS
from services.transcode.pipeline import Decoder, Ladder, Packet, RungEncoder
from services.transcode.recordings import finalize_recording
from services.transcode.segmenter import SegmentBuffer, Segmenter
from services.transcode.settings import TranscodeConfig
from services.transcode.webm import Muxed, mux_audio, mux_video

__all__ = ["SessionRunner"]

log = get_logger("transcode")

AUDIO_STALE_SECONDS = 1.0
CHECK_SECONDS = 1.0


class SessionRunner:
    """The life of one session on this replica; `run()` returns when the session ended or was lost."""

    def __init__(
        self, *, nc: Any, bucket: Any, pool: Any, config: TranscodeConfig, event: ingest.SessionStarted,
        process_id: str, encoder: str,
    ) -> None:  # fmt: skip
        self.nc, self.bucket, self.pool, self.config = nc, bucket, pool, config
        self.event, self.process_id, self.encoder = event, process_id, encoder
        self.channel, self.sid = event.channel_name, event.session_id
        self.queue: asyncio.Queue[tuple[str, MediaFrame]] = asyncio.Queue(maxsize=config.queue_frames)
        self.ended = asyncio.Event()
        self.decoder: Decoder | None = None
        self.rungs: list[RungEncoder] = []
        self.segmenter: Segmenter | None = None
        self.epoch_us = 0
        self.last_media = time.monotonic()
        self.first_number = 1
        self.last_t = -1
        self.audio_seen = 0.0
        self.has_audio = False
        # Fixed at the first segment (or by the replica before us): the manifest's tracks never change.
        self.with_audio: bool | None = None
        self.inits_written: set[str] = set()
        self.ladder: Ladder | None = None
        self.writer: asyncio.Queue[SegmentBuffer | None] = asyncio.Queue()

    async def run(self) -> None:
        """Transcode until the session ends (then make its recording) or another replica takes it."""
        async with self.pool.acquire() as conn:
            row = await store.claim_session(
                conn, session_id=self.sid, process_id=self.process_id, epoch_us=time.time_ns() // 1000,
                encoder=self.encoder,
            )  # fmt: skip
            segs = await store.list_segments(conn, session_id=self.sid)
        if row is None:
            return
        self.epoch_us = row["epoch_us"]
        if segs:
            self.with_audio = bool(row["has_audio"])
        self.first_number = segs[-1]["number"] + 1 if segs else 1
        subs = [
            await self.nc.subscribe(ingest.media_subject(self.sid, "video"), cb=self._on_media),
            await self.nc.subscribe(ingest.media_subject(self.sid, "audio"), cb=self._on_media),
            await self.nc.subscribe(ingest.SessionEnded.subject, cb=self._on_ended),
        ]
        LIVE_STREAMS.inc()
        writer = asyncio.create_task(self._write_loop())
        log.info(
            "transcode_started", session_id=self.sid, channel=self.channel, first_number=self.first_number
        )
        try:
            owned = await self._media_loop()
        finally:
            for sub in subs:
                await sub.unsubscribe()
            LIVE_STREAMS.dec()
        await self._flush()
        await self.writer.put(None)
        await writer
        self._close()
        if owned:
            await finalize_recording(self.pool, self.bucket, self.sid, fps=self.config.fps)
        log.info("transcode_stopped", session_id=self.sid, owned=owned)

    async def _on_media(self, msg: Any) -> None:
        try:
            frame = unpack_frame(msg.data)
        except ValueError as exc:
            log.warning("media_frame_invalid", session_id=self.sid, error=str(exc))
            return
        kind = msg.subject.rsplit(".", 1)[1]
        self.last_media = time.monotonic()
        if self.queue.full():  # we fall behind: drop; the decoder recovers at the next keyframe
            return
        self.queue.put_nowait((kind, frame))

    async def _on_ended(self, msg: Any) -> None:
        try:
            event = decode(msg.data, ingest.SessionEnded)
        except msgspec.DecodeError:
            return
        if event.session_id == self.sid:
            self.ended.set()

    async def _media_loop(self) -> bool:
        """Handle frames until the end; False when another replica took the session from us."""
        next_check = 0.0
        self.last_media = time.monotonic()
        while not self.ended.is_set():
            now = time.monotonic()
            if now - self.last_media > self.config.idle_seconds:
                log.warning(
                    "transcode_idle_released", session_id=self.sid, idle_seconds=self.config.idle_seconds
                )
                break
            if now >= next_check:
                next_check = now + CHECK_SECONDS
                if not await self._check_in():
                    return False
                if self.decoder is None or self.segmenter is None:
                    await self.nc.publish(ingest.keyframe_subject(self.sid), b"")
            try:
                kind, frame = await asyncio.wait_for(self.queue.get(), timeout=CHECK_SECONDS)
            except TimeoutError:
                continue
            t = (frame.capture_us - self.epoch_us) // 1000
            if kind == "video":
                await self._video(frame, t)
            elif kind == "audio" and frame.codec == "opus" and self.segmenter is not None:
                self.has_audio, self.audio_seen = True, time.monotonic()
                self.segmenter.add_audio(frame.data, t)
            self._hand_out()
        return True

    async def _check_in(self) -> bool:
        rungs = json.dumps([msgspec.to_builtins(r.rung) for r in self.rungs])
        async with self.pool.acquire() as conn:
            owned = await store.heartbeat(
                conn,
                session_id=self.sid,
                process_id=self.process_id,
                rungs=rungs,
                has_audio=bool(self.with_audio),
            )
            row = await store.fetch_session(conn, session_id=self.sid)
        if row is not None and row["ended_at"] is not None:
            self.ended.set()
        return owned

    async def _video(self, frame: MediaFrame, t: int) -> None:
        if self.decoder is None:
            if not frame.keyframe:
                return
            self.decoder = Decoder(frame.codec)
        if t <= self.last_t:
            return
        loop = asyncio.get_running_loop()
        pictures = await loop.run_in_executor(self.decoder.pool, self.decoder.decode, frame.data, t)
        for picture in pictures:
            if self.segmenter is None:
                await self._start_ladder(picture.width, picture.height)
            assert self.segmenter is not None
            self.last_t = t
            assert self.ladder is not None
            self.ladder.submit(picture, t, self.segmenter.video_frame(t))
        if self.ladder is not None:
            self._place(await self.ladder.collect())

    def _place(self, done: list[list[list[Packet]]]) -> None:
        assert self.segmenter is not None
        for results in done:
            for i, packets in enumerate(results):
                self.segmenter.add_video(i, packets)

    async def _start_ladder(self, width: int, height: int) -> None:
        rungs = domain.cap_ladder(domain.parse_ladder(self.config.transcode_ladder), width, height)
        loop = asyncio.get_running_loop()
        cfg = self.config
        self.rungs = list(
            await asyncio.gather(*(loop.run_in_executor(None, self._open_rung, r) for r in rungs))
        )
        self.ladder = Ladder(self.rungs)
        self.segmenter = Segmenter(
            segment_ms=cfg.segment_seconds * 1000, rungs=len(rungs), first_number=self.first_number
        )
        log.info(
            "ladder_chosen", session_id=self.sid, source=f"{width}x{height}", rungs=[r.label for r in rungs]
        )

    def _open_rung(self, rung: domain.Rung) -> RungEncoder:
        return RungEncoder(rung, encoder=self.encoder, fps=self.config.fps, preset=self.config.svtav1_preset)

    def _hand_out(self) -> None:
        if self.segmenter is None:
            return
        stale = time.monotonic() - self.audio_seen > AUDIO_STALE_SECONDS
        for seg in self.segmenter.ready(audio_stale=stale):
            self.writer.put_nowait(seg)

    async def _flush(self) -> None:
        """Drain the encoders and hand out the last, possibly short, segment."""
        if self.segmenter is None:
            return
        if self.ladder is not None:
            self._place(await self.ladder.flush())
        for seg in self.segmenter.close(self.last_t + 1000 // self.config.fps):
            self.writer.put_nowait(seg)

    def _close(self) -> None:
        for r in self.rungs:
            r.close()
        if self.decoder is not None:
            self.decoder.close()

    async def _write_loop(self) -> None:
        while (seg := await self.writer.get()) is not None:
            try:
                await self._write(seg)
            except Exception:  # a lost segment leaves a gap; the stream goes on
                log.exception("segment_write_failed", session_id=self.sid, number=seg.number)

    async def _write(self, seg: SegmentBuffer) -> None:
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(r.pool, self._mux_rung, r, seg.video[i]) for i, r in enumerate(self.rungs)
        ]
        tracks = [f"v{i}" for i in range(len(self.rungs))]
        if self.with_audio is None:
            self.with_audio = self.has_audio
        if self.with_audio:
            jobs.append(loop.run_in_executor(None, mux_audio, seg.audio))
            tracks.append("a")
        size = 0
        for track, muxed in zip(tracks, await asyncio.gather(*jobs), strict=True):
            if track not in self.inits_written:
                await self.bucket.put(pt.media_object(self.channel, self.sid, track, "init.webm"), muxed.init)
                self.inits_written.add(track)
            await self.bucket.put(
                pt.media_object(self.channel, self.sid, track, f"{seg.number}.webm"), muxed.media
            )
            SEGMENTS.labels(track[0]).inc()
            size += len(muxed.media)
        async with self.pool.acquire() as conn:
            await store.insert_segment(
                conn, session_id=self.sid, number=seg.number, start_ms=seg.start_ms,
                duration_ms=seg.duration_ms, size=size,
            )  # fmt: skip
            segs = await store.list_segments(conn, session_id=self.sid)
        await self._publish_manifest([domain.SegmentInfo(**dict(s)) for s in segs])
        for r in self.rungs:
            REALTIME_FACTOR.labels(r.rung.label).set(seg.duration_ms / 1000 / max(r.busy_seconds, 1e-6))
            r.busy_seconds = 0.0
        log.info("segment_stored", session_id=self.sid, number=seg.number, ms=seg.duration_ms, bytes=size)

    def _mux_rung(self, r: RungEncoder, packets: list[Packet]) -> Muxed:
        return mux_video(
            packets, width=r.rung.width, height=r.rung.height, extradata=r.extradata, fps=self.config.fps
        )

    async def _publish_manifest(self, segments: list[domain.SegmentInfo]) -> None:
        cfg = self.config
        mpd = domain.live_manifest(
            base=f"{self.sid}/",
            availability_start=datetime.fromtimestamp(self.epoch_us / 1e6, UTC),
            published=datetime.now(UTC),
            rungs=[r.rung for r in self.rungs],
            has_audio=bool(self.with_audio),
            segments=segments,
            segment_ms=cfg.segment_seconds * 1000,
            window_ms=cfg.window_seconds * 1000,
            fps=cfg.fps,
        )
        await self.bucket.put(pt.live_manifest_object(self.channel), mpd.encode())
