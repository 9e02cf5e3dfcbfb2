"""Transcodes one live session: encoded frames from NATS in, decoded once, encoded per rung on worker
threads, cut into aligned segments that go out chunk by chunk (`output.SegmentOutput`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.object_store import ObjectStore

from libs.bus import decode
from libs.db import Pool
from libs.media.frames import MediaFrame, request_keyframe, unpack_frame
from libs.obs.logging import get_logger
from proto import ingest
from services.transcode import domain, store
from services.transcode.config import TranscodeConfig
from services.transcode.metrics import LIVE_STREAMS
from services.transcode.output import SegmentOutput
from services.transcode.pipeline import Decoder, Ladder, Packet, RungEncoder
from services.transcode.recordings import finalize_recording
from services.transcode.segmenter import Chunk, Segmenter

__all__ = ["SessionRunner"]

log = get_logger("transcode")

AUDIO_STALE_SECONDS = 1.0
CHECK_SECONDS = 1.0


class SessionRunner:
    """The life of one session on this replica; `run()` returns when the session ended or was lost."""

    def __init__(
        self, *, nc: Client, bucket: ObjectStore, pool: Pool, config: TranscodeConfig,
        event: ingest.SessionStarted,
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
        self.grid = domain.FrameGrid(config.fps)  # pictures go to the ladder at a constant frame rate
        self.last_picture: Any = None  # the picture last sent to the ladder, shown again over a stall
        self.repeated = self.skipped = 0  # pictures repeated over stalls, left out of bursts
        self.audio_seen = 0.0
        self.ladder_started = 0.0
        self.has_audio = False
        self.ladder: Ladder | None = None
        self.output: SegmentOutput | None = None
        self.writer: asyncio.Queue[Chunk | None] = asyncio.Queue()

    async def run(self) -> None:
        """Transcode until the session ends (then make its recording) or another replica takes it."""
        if not await self._claim():
            return
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
        log.info(
            "transcode_stopped",
            session_id=self.sid,
            owned=owned,
            pictures_repeated=self.repeated,
            pictures_skipped=self.skipped,
        )

    async def _claim(self) -> bool:
        """Take the session, going on with the timeline and segment numbers of the replica before us."""
        async with self.pool.acquire() as conn:
            row = await store.claim_session(
                conn, session_id=self.sid, process_id=self.process_id, epoch_us=time.time_ns() // 1000,
                encoder=self.encoder,
            )  # fmt: skip
            segs = await store.list_segments(conn, session_id=self.sid)
        if row is None or row.epoch_us is None:
            return False
        self.epoch_us = row.epoch_us
        self.first_number = segs[-1].number + 1 if segs else 1
        self.output = SegmentOutput(
            nc=self.nc, bucket=self.bucket, pool=self.pool, config=self.config, channel=self.channel,
            session_id=self.sid, epoch_us=self.epoch_us, segments=segs,
            with_audio=row.has_audio if segs else None,
        )  # fmt: skip
        return True

    async def _on_media(self, msg: Msg) -> None:
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

    async def _on_ended(self, msg: Msg) -> None:
        """The live end signal: ingest's `stream.session.ended` as a core NATS message, so the pipeline
        stops and flushes the moment the session ends. The durable consumers are for keeping state (the
        copy, the recording) and may lag behind; the check-in also reads the end from the copy, should
        this message be missed."""
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
                    await request_keyframe(self.nc, self.sid)
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
        rungs = [r.rung for r in self.rungs]
        async with self.pool.acquire() as conn:
            owned = await store.heartbeat(
                conn,
                session_id=self.sid,
                process_id=self.process_id,
                rungs=rungs,
                has_audio=bool(self.output and self.output.with_audio),
            )
            row = await store.fetch_session(conn, session_id=self.sid)
        if row is not None and row.ended_at is not None:
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
            assert self.ladder is not None
            self.last_t = t
            repeats, shown = self.grid.place(t)
            for repeat in repeats:  # the source stalled: its last picture stays on screen
                self.ladder.submit(self.last_picture, repeat, self.segmenter.video_frame(repeat))
                self._place(await self.ladder.collect())
            self.repeated += len(repeats)
            if shown is None:  # a burst: more pictures than frame intervals
                self.skipped += 1
                continue
            self.last_picture = picture
            self.ladder.submit(picture, shown, self.segmenter.video_frame(shown))
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
        self.ladder_started = time.monotonic()
        assert self.output is not None
        self.output.rungs = self.rungs
        self.segmenter = Segmenter(
            segment_ms=cfg.segment_seconds * 1000, rungs=len(rungs), first_number=self.first_number,
            chunk_ms=cfg.chunk_ms,
        )  # fmt: skip
        log.info(
            "ladder_chosen", session_id=self.sid, source=f"{width}x{height}", rungs=[r.label for r in rungs]
        )

    def _open_rung(self, rung: domain.Rung) -> RungEncoder:
        return RungEncoder(rung, encoder=self.encoder, fps=self.config.fps, preset=self.config.svtav1_preset)

    def _hand_out(self) -> None:
        if self.segmenter is None or self.output is None:
            return
        now = time.monotonic()
        if (self.output.with_audio is None and not self.has_audio
                and now - self.ladder_started < self.config.segment_seconds):  # fmt: skip
            return  # the first chunk fixes the tracks: audio gets a first segment's time to show up
        stale = now - self.audio_seen > AUDIO_STALE_SECONDS
        for chunk in self.segmenter.take(audio_stale=stale):
            self.writer.put_nowait(chunk)

    async def _flush(self) -> None:
        """Drain the encoders and hand out the last, possibly short, segment."""
        if self.segmenter is None:
            return
        if self.ladder is not None:
            self._place(await self.ladder.flush())
        for chunk in self.segmenter.close(self.grid.last_ms + 1000 // self.config.fps):
            self.writer.put_nowait(chunk)

    def _close(self) -> None:
        for r in self.rungs:
            r.close()
        if self.decoder is not None:
            self.decoder.close()

    async def _write_loop(self) -> None:
        while (chunk := await self.writer.get()) is not None:
            assert self.output is not None
            try:
                await self.output.write(chunk, has_audio=self.has_audio)
            except Exception:  # a lost chunk leaves a gap; the stream goes on
                log.exception("chunk_write_failed", session_id=self.sid, number=chunk.number)
