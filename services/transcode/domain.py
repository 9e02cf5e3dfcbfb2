"""The transcoder's rules: the ladder, segment boundaries and the DASH manifests. Pure, no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import quoteattr

import msgspec

__all__ = [
    "FrameGrid",
    "LowLatency",
    "Rung",
    "SegmentInfo",
    "cap_ladder",
    "live_manifest",
    "parse_ladder",
    "retention_cutoff",
    "segment_index",
    "transcoder_alive",
    "vod_manifest",
]

_RUNG = re.compile(r"^(\d{2,4})x(\d{2,4}):(\d{2,6})$")
AV1_CODEC = "av01.0.08M.08"  # main profile, level 4.0, main tier, 8 bit: fits 1280x720 30 fps
OPUS_CODEC = "opus"


class Rung(msgspec.Struct, frozen=True, kw_only=True):
    """One rendition of the ladder: frame size and target bitrate."""

    width: int
    height: int
    kbps: int

    @property
    def label(self) -> str:
        """Short name, e.g. `720p`."""
        return f"{self.height}p"


class SegmentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A stored segment of a session: its number and where it sits on the session's timeline (ms)."""

    number: int
    start_ms: int
    duration_ms: int


class LowLatency(msgspec.Struct, frozen=True, kw_only=True):
    """Low-latency DASH: segments are served while being made, chunk by chunk, and the player is asked to
    keep `target_latency_ms` behind the live edge."""

    chunk_ms: int
    target_latency_ms: int


def parse_ladder(text: str) -> list[Rung]:
    """`1280x720:2500,854x480:1200` into rungs, largest first; ValueError names a bad entry."""
    rungs = []
    for part in (p.strip() for p in text.split(",")):
        m = _RUNG.match(part)
        if m is None:
            raise ValueError(f'ladder entry "{part}" is not WIDTHxHEIGHT:KBPS')
        width, height, kbps = (int(g) for g in m.groups())
        if width % 2 or height % 2 or kbps < 50:
            raise ValueError(f'ladder entry "{part}" needs even sizes and at least 50 kbps')
        rungs.append(Rung(width=width, height=height, kbps=kbps))
    if not rungs:
        raise ValueError("the ladder is empty")
    return sorted(rungs, key=lambda r: r.height, reverse=True)


def cap_ladder(ladder: list[Rung], width: int, height: int) -> list[Rung]:
    """The rungs no larger than the source; a source smaller than every rung gets one rung of its size."""
    kept = [r for r in ladder if r.height <= height and r.width <= width]
    if kept:
        return kept
    smallest = ladder[-1]
    return [Rung(width=width - width % 2, height=height - height % 2, kbps=smallest.kbps)]


def transcoder_alive(heartbeat_at: datetime | None, *, now: datetime, takeover_seconds: float) -> bool:
    """Whether a replica still transcodes a session: it checked in within two takeover periods (a replica
    that stopped answering has lost the session to another by then)."""
    return heartbeat_at is not None and heartbeat_at > now - timedelta(seconds=takeover_seconds * 2)


def retention_cutoff(now: datetime, *, retention_days: float) -> datetime:
    """Recordings that ended before this are deleted."""
    return now - timedelta(days=retention_days)


def segment_index(t_ms: int, segment_ms: int) -> int:
    """Which nominal segment slot a timestamp falls into (a new slot starts a new segment)."""
    return t_ms // segment_ms


# A source that stalls longer than this (a clock jump, a long outage) is not bridged: the gap stays.
FILL_MAX_MS = 10_000


class FrameGrid:
    """Puts a source's pictures on a constant frame-rate grid, as the ladder's encoders and the players'
    buffers want them. A source that stalls (a congested network, a busy camera or encoder) leaves a hole
    and then often sends what it held back in a burst. In WebM the last picture of a cluster lasts one
    frame interval in a browser's media buffer, so a hole that crosses a chunk or segment boundary is a
    hole in the buffer, which players stall on. On the grid, the last picture is shown again over a hole
    (it freezes, as on TV) and of several pictures in one grid slot only the first is kept, so the output
    has a picture every frame interval and no more."""

    def __init__(self, fps: int) -> None:
        self.step = 1000 / fps
        self.origin: int | None = None
        self.slot = 0  # the last slot filled

    def _time(self, slot: int) -> int:
        assert self.origin is not None
        return self.origin + round(slot * self.step)

    @property
    def last_ms(self) -> int:
        """The time of the last slot filled (-1 before the first picture)."""
        return -1 if self.origin is None else self._time(self.slot)

    def place(self, t_ms: int) -> tuple[list[int], int | None]:
        """For a picture taken at `t_ms`: the grid times at which to show the previous picture again, and
        this picture's grid time (None: its slot is taken, leave it out)."""
        if self.origin is None:
            self.origin = t_ms
            return [], t_ms
        slot = round((t_ms - self.origin) / self.step)
        if slot <= self.slot:
            return [], None
        bridged = (slot - self.slot) * self.step <= FILL_MAX_MS
        repeats = [self._time(k) for k in range(self.slot + 1, slot)] if bridged else []
        self.slot = slot
        return repeats, self.last_ms


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _duration(ms: int) -> str:
    return f"PT{ms / 1000:.3f}S"


def _timeline(segments: list[SegmentInfo]) -> str:
    return "".join(f'<S t="{s.start_ms}" d="{s.duration_ms}"/>' for s in segments)


def _adaptation_sets(
    base: str, rungs: list[Rung], has_audio: bool, segments: list[SegmentInfo], fps: int, ato: str = ""
) -> str:
    first = segments[0].number if segments else 1
    tl = _timeline(segments)

    def template(track: str) -> str:
        init = quoteattr(f"{base}{track}/init.webm")
        media = quoteattr(f"{base}{track}/$Number$.webm")
        return (
            f'<SegmentTemplate timescale="1000" initialization={init} media={media} '
            f'startNumber="{first}"{ato}><SegmentTimeline>{tl}</SegmentTimeline></SegmentTemplate>'
        )

    reps = "".join(
        f'<Representation id="v{i}" bandwidth="{r.kbps * 1000}" width="{r.width}" height="{r.height}" '
        f'codecs="{AV1_CODEC}" frameRate="{fps}">{template(f"v{i}")}</Representation>'
        for i, r in enumerate(rungs)
    )
    out = (
        '<AdaptationSet id="0" contentType="video" mimeType="video/webm" segmentAlignment="true" '
        f'startWithSAP="1">{reps}</AdaptationSet>'
    )
    if has_audio:
        out += (
            '<AdaptationSet id="1" contentType="audio" mimeType="audio/webm" lang="und" '
            'segmentAlignment="true" startWithSAP="1">'
            f'<Representation id="a" bandwidth="64000" codecs="{OPUS_CODEC}" audioSamplingRate="48000">'
            '<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" '
            f'value="2"/>{template("a")}</Representation></AdaptationSet>'
        )
    return out


_MPD_NS = 'xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011"'
# Live manifests name the gateway's clock (GET /live/time, relative to /live/{channel}/manifest*.mpd), so a
# player whose own clock is off still computes the live edge from the server's time (DASH UTCTiming).
CLOCK_TIMING = '<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="../time"/>'


def live_manifest(
    *,
    base: str,
    availability_start: datetime,
    published: datetime,
    rungs: list[Rung],
    has_audio: bool,
    segments: list[SegmentInfo],
    segment_ms: int,
    window_ms: int,
    fps: int,
    low_latency: LowLatency | None = None,
) -> str:
    """A dynamic MPD over the last `window_ms` of segments (SegmentTemplate, $Number$, SegmentTimeline).
    Low-latency: the last segment listed may still be in the making; it can be requested
    `availabilityTimeOffset` before its end (the gateway streams its chunks as they come)."""
    end = segments[-1].start_ms + segments[-1].duration_ms if segments else 0
    shown = [s for s in segments if s.start_ms + s.duration_ms > end - window_ms]
    ato, service, delay = "", "", segment_ms + segment_ms // 2
    if low_latency is not None:
        offset = max(segment_ms - low_latency.chunk_ms, 0) / 1000
        ato = f' availabilityTimeOffset="{offset:.3f}" availabilityTimeComplete="false"'
        target = low_latency.target_latency_ms
        # Shaka keeps the Latency target (±0.5 s, at PlaybackRate@max above it and @min below) as the
        # distance from its seek range end, which lies `suggestedPresentationDelay` behind an availability
        # end that `availabilityTimeOffset` puts up to a chunk or so ahead of the newest picture. So the
        # picture is about delay + target + 0.5 s - (that lead) old; the lead is fixed when Shaka joins
        # (0.2-0.8 s measured). With delay = target - chunk and the Shaka target the rest of `target`
        # after a segment, a chunk and the tolerance (0 for 3 s, 2 s and 500 ms), pictures were 2.15-2.2 s
        # old with 2 s segments, just above a segment's own delay, without stalls. Handing Shaka `target`
        # for both, as before, made it sit 4-4.6 s behind.
        delay = max(target - low_latency.chunk_ms, segment_ms)  # never nearer than a segment allows
        behind = max(target - segment_ms - low_latency.chunk_ms - 500, 0)
        service = (
            f'<ServiceDescription id="0"><Latency target="{behind}" min="0" max="{behind + segment_ms}"/>'
            '<PlaybackRate min="0.95" max="1.15"/></ServiceDescription>'
        )
    sets = _adaptation_sets(base, rungs, has_audio, shown, fps, ato)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<MPD {_MPD_NS} type="dynamic" '
        f'availabilityStartTime="{_iso(availability_start)}" publishTime="{_iso(published)}" '
        f'minimumUpdatePeriod="{_duration(segment_ms // 2)}" minBufferTime="{_duration(segment_ms)}" '
        f'timeShiftBufferDepth="{_duration(window_ms)}" '
        f'suggestedPresentationDelay="{_duration(delay)}">{service}'
        f'<Period id="0" start="PT0S">{sets}</Period>{CLOCK_TIMING}</MPD>\n'
    )


def vod_manifest(
    *, base: str, rungs: list[Rung], has_audio: bool, segments: list[SegmentInfo], fps: int
) -> str:
    """A static MPD over every segment of a finished session."""
    start = segments[0].start_ms if segments else 0
    end = segments[-1].start_ms + segments[-1].duration_ms if segments else 0
    sets = _adaptation_sets(base, rungs, has_audio, segments, fps)
    # presentationTimeOffset lets the recording start at 0 although its media times continue the live ones.
    sets = sets.replace('timescale="1000"', f'timescale="1000" presentationTimeOffset="{start}"')
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<MPD {_MPD_NS} '
        f'type="static" mediaPresentationDuration="{_duration(end - start)}" minBufferTime="PT2S">'
        f'<Period id="0" start="PT0S">{sets}</Period></MPD>\n'
    )
