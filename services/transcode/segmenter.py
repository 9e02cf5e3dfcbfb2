"""Cuts one session's encoded media into numbered segments: video decides the boundaries (the first picture
of each nominal slot is a forced keyframe on every rung), audio packets follow them by timestamp. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.transcode.pipeline import Packet

__all__ = ["SegmentBuffer", "Segmenter"]


@dataclass
class SegmentBuffer:
    """The media of one segment number while it fills."""

    number: int
    start_ms: int
    rungs: int
    end_ms: int | None = None
    video: list[list[Packet]] = field(default_factory=list)
    audio: list[tuple[bytes, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.video = [[] for _ in range(self.rungs)]

    @property
    def duration_ms(self) -> int:
        """Length on the timeline (known once closed)."""
        return (self.end_ms or self.start_ms) - self.start_ms


class Segmenter:
    """Boundaries and membership of segments; `ready()` hands out complete segments in order."""

    def __init__(self, *, segment_ms: int, rungs: int, first_number: int) -> None:
        self.segment_ms = segment_ms
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
            return False
        if cur is not None:
            cur.end_ms = t_ms
            self.closed.append(cur)
        self.current = SegmentBuffer(number=self.next_number, start_ms=t_ms, rungs=self.rungs)
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
            if seg is not None:
                seg.video[rung].append(packet)
            self.rung_last[rung] = max(self.rung_last[rung], packet[1])

    def add_audio(self, data: bytes, t_ms: int) -> None:
        """An Opus packet; packets before the first segment are dropped."""
        seg = self._holder(t_ms)
        if seg is not None:
            seg.audio.append((data, t_ms))
        self.audio_last = max(self.audio_last, t_ms)

    def ready(self, *, audio_stale: bool) -> list[SegmentBuffer]:
        """Closed segments whose every rung (and the audio, unless stale or absent) has moved past them."""
        out = []
        while self.closed:
            seg = self.closed[0]
            end = seg.end_ms or 0
            video_done = all(last >= end for last in self.rung_last)
            audio_done = self.audio_last < 0 or audio_stale or self.audio_last >= end - 20
            if not (video_done and audio_done):
                break
            out.append(self.closed.pop(0))
        return out

    def close(self, end_ms: int) -> list[SegmentBuffer]:
        """Every segment not handed out yet, the current one ending at `end_ms` (the stream stopped)."""
        out, self.closed = self.closed, []
        if self.current is not None and self.current.video[0]:
            self.current.end_ms = max(end_ms, self.current.start_ms + 1)
            out.append(self.current)
        self.current = None
        return out
