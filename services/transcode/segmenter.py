"""Cuts one session's encoded media into numbered segments: video decides the boundaries (the first picture
of each nominal slot is a forced keyframe on every rung), audio packets follow them by timestamp. Each
segment goes out as chunks (low-latency DASH): a chunk holds every track's packets up to a chunk boundary
all tracks have passed, and the last chunk of a segment, marked final, holds the rest. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.transcode.pipeline import Packet

__all__ = ["Chunk", "SegmentBuffer", "Segmenter"]

AUDIO_PACKET_MS = 20


@dataclass
class SegmentBuffer:
    """The media of one segment number while it fills: packets not handed out in a chunk yet."""

    number: int
    start_ms: int
    rungs: int
    end_ms: int | None = None
    video: list[list[Packet]] = field(default_factory=list)
    audio: list[tuple[bytes, int]] = field(default_factory=list)
    chunks: int = 0  # chunks handed out so far
    cut_ms: int = 0  # media before this went out in chunks
    pictures: int = 0

    def __post_init__(self) -> None:
        self.video = [[] for _ in range(self.rungs)]
        self.cut_ms = self.start_ms

    @property
    def duration_ms(self) -> int:
        """Length on the timeline (known once closed)."""
        return (self.end_ms or self.start_ms) - self.start_ms


@dataclass
class Chunk:
    """A piece of a segment: per rung its packets, the audio packets, and whether it ends the segment
    (then `end_ms` is the segment's end)."""

    number: int
    index: int
    start_ms: int
    video: list[list[Packet]]
    audio: list[tuple[bytes, int]]
    final: bool
    end_ms: int | None = None

    @property
    def duration_ms(self) -> int:
        """The whole segment's length (final chunks only)."""
        return (self.end_ms or self.start_ms) - self.start_ms


class Segmenter:
    """Boundaries and membership of segments; `take()` hands out chunks in order, segment by segment.
    `chunk_ms` 0 hands out each segment as one final chunk."""

    def __init__(self, *, segment_ms: int, rungs: int, first_number: int, chunk_ms: int = 0) -> None:
        self.segment_ms = segment_ms
        self.chunk_ms = chunk_ms
        self.rungs = rungs
        self.next_number = first_number
        self.current: SegmentBuffer | None = None
        self.closed: list[SegmentBuffer] = []
        self.rung_last = [-1] * rungs
        self.audio_last = -1

    def video_frame(self, t_ms: int) -> bool:
        """Account for a picture at `t_ms`; True when it starts a segment (it must be a keyframe)."""
        cur = self.current
        if cur is not None and t_ms // self.segment_ms <= cur.start_ms // self.segment_ms:
            cur.pictures += 1
            return False
        if cur is not None:
            cur.end_ms = t_ms
            self.closed.append(cur)
        self.current = SegmentBuffer(number=self.next_number, start_ms=t_ms, rungs=self.rungs, pictures=1)
        self.next_number += 1
        return True

    def _holder(self, t_ms: int) -> SegmentBuffer | None:
        if self.current is not None and t_ms >= self.current.start_ms:
            return self.current
        for seg in reversed(self.closed):
            if seg.start_ms <= t_ms:
                return seg
        return None

    def add_video(self, rung: int, packets: list[Packet]) -> None:
        """Encoded packets of one rung, placed by their timestamps."""
        for packet in packets:
            seg = self._holder(packet[1])
            if seg is not None and packet[1] >= seg.cut_ms:
                seg.video[rung].append(packet)
            self.rung_last[rung] = max(self.rung_last[rung], packet[1])

    def add_audio(self, data: bytes, t_ms: int) -> None:
        """An Opus packet; packets before the first segment (or behind a chunk already out) are dropped."""
        seg = self._holder(t_ms)
        if seg is not None and t_ms >= seg.cut_ms:
            seg.audio.append((data, t_ms))
        self.audio_last = max(self.audio_last, t_ms)

    def _passed(self, *, audio_stale: bool) -> int:
        """The media time every track has reached: everything before it is here."""
        reached = min(self.rung_last)
        if self.audio_last >= 0 and not audio_stale:
            reached = min(reached, self.audio_last + AUDIO_PACKET_MS)
        return reached

    def take(self, *, audio_stale: bool) -> list[Chunk]:
        """Chunks ready to go out: finished segments' last chunks, then the chunks every track has passed."""
        reached = self._passed(audio_stale=audio_stale)
        out = []
        while self.closed and reached >= (self.closed[0].end_ms or 0):
            out.append(self._cut(self.closed.pop(0), None))
        if self.chunk_ms > 0:
            for seg in [*self.closed, self.current]:
                if seg is None or reached < seg.start_ms:
                    continue
                bound = seg.start_ms + (reached - seg.start_ms) // self.chunk_ms * self.chunk_ms
                if bound > seg.cut_ms and (seg.end_ms is None or bound < seg.end_ms):
                    out.append(self._cut(seg, bound))
        return out

    def _cut(self, seg: SegmentBuffer, bound: int | None) -> Chunk:
        """Hand out what `seg` holds before `bound` (everything when None: its final chunk)."""
        limit = bound if bound is not None else 1 << 62
        video = []
        for i, packets in enumerate(seg.video):
            n = next((k for k, p in enumerate(packets) if p[1] >= limit), len(packets))
            video.append(packets[:n])
            seg.video[i] = packets[n:]
        audio = sorted((a for a in seg.audio if a[1] < limit), key=lambda a: a[1])
        seg.audio = [a for a in seg.audio if a[1] >= limit]
        chunk = Chunk(
            number=seg.number, index=seg.chunks, start_ms=seg.start_ms, video=video, audio=audio,
            final=bound is None, end_ms=seg.end_ms if bound is None else None,
        )  # fmt: skip
        seg.chunks += 1
        seg.cut_ms = limit
        return chunk

    def close(self, end_ms: int) -> list[Chunk]:
        """The rest of every segment not finished yet, the current one ending at `end_ms` (the stream
        stopped)."""
        segs, self.closed = self.closed, []
        if self.current is not None and self.current.pictures:
            self.current.end_ms = max(end_ms, self.current.start_ms + 1)
            segs.append(self.current)
        self.current = None
        return [self._cut(seg, None) for seg in segs]
