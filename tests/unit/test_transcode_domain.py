"""The transcoder's rules without servers: ladder parsing and capping, segment cutting, manifests."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from services.transcode import domain
from services.transcode.segmenter import Segmenter
from services.transcode.webm import OPUS_HEAD

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def test_ladder_parses_sorted_and_rejects_bad_entries() -> None:
    rungs = domain.parse_ladder("640x360:700, 1280x720:2500,854x480:1200")
    assert [r.label for r in rungs] == ["720p", "480p", "360p"]
    for bad in ("1280x720", "1281x720:2500", "640x360:10", ""):
        with pytest.raises(ValueError, match="ladder"):
            domain.parse_ladder(bad)


def _feed(grid: domain.FrameGrid, times: list[int]) -> list[tuple[int, str]]:
    """Every grid time the pictures at `times` produce, each marked as a repeat or the picture itself."""
    out: list[tuple[int, str]] = []
    for t in times:
        repeats, shown = grid.place(t)
        out += [(r, "repeat") for r in repeats]
        if shown is not None:
            out.append((shown, f"picture {t}"))
    return out


def test_frame_grid_keeps_a_steady_source_as_it_is() -> None:
    times = [1000 + round(k * 1000 / 30) for k in range(90)]
    jittered = [t + (7 if k % 3 == 1 else -5 if k % 3 == 2 else 0) for k, t in enumerate(times)]
    out = _feed(domain.FrameGrid(30), jittered)
    assert [kind for _t, kind in out] == [f"picture {t}" for t in jittered]
    assert [t for t, _kind in out] == times


def test_frame_grid_freezes_over_a_stall_and_thins_the_burst_after_it() -> None:
    # 10 pictures, nothing for 700 ms, then 6 held-back pictures at once, then steady again.
    steady = [round(k * 1000 / 30) for k in range(10)]  # 0 .. 300
    burst = [1000, 1002, 1004, 1006, 1008, 1010]
    after = [1033, 1067, 1100]
    out = _feed(domain.FrameGrid(30), steady + burst + after)
    times = [t for t, _kind in out]
    assert times == sorted(set(times))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 34, gaps  # a picture every frame interval, the hole bridged
    assert min(gaps) >= 33, gaps  # and no more: the burst is thinned
    repeats = [t for t, kind in out if kind == "repeat"]
    assert (repeats[0], repeats[-1]) == (333, 967), repeats
    shown = [kind for _t, kind in out if kind != "repeat"]
    assert shown == [f"picture {t}" for t in [*steady, 1000, *after]]
    assert out[-1] == (1100, "picture 1100")


def test_frame_grid_leaves_a_long_outage_or_clock_jump_unbridged() -> None:
    grid = domain.FrameGrid(30)
    grid.place(0)
    repeats, shown = grid.place(domain.FILL_MAX_MS + 1000)
    assert repeats == []
    assert shown == domain.FILL_MAX_MS + 1000
    assert grid.place(domain.FILL_MAX_MS + 1033) == ([], domain.FILL_MAX_MS + 1033)


def test_ladder_is_capped_at_the_source() -> None:
    ladder = domain.parse_ladder("1280x720:2500,854x480:1200,640x360:700")
    assert [r.label for r in domain.cap_ladder(ladder, 854, 480)] == ["480p", "360p"]
    small = domain.cap_ladder(ladder, 321, 181)
    assert [(r.width, r.height) for r in small] == [(320, 180)]


def test_segments_start_at_slot_changes_and_wait_for_every_rung() -> None:
    seg = Segmenter(segment_ms=1000, rungs=2, first_number=5)
    assert seg.video_frame(400)  # the first picture starts segment 5
    assert not seg.video_frame(433)
    assert seg.video_frame(1000)  # a new slot: a forced keyframe, segment 6
    seg.add_video(0, [(b"a", 400, True), (b"b", 433, False), (b"c", 1000, True)])
    assert seg.take(audio_stale=True) == []  # rung 1 has not passed the boundary yet
    seg.add_video(1, [(b"a", 400, True), (b"b", 433, False), (b"c", 1000, True)])
    seg.add_audio(b"o", 990)
    done = seg.take(audio_stale=False)
    assert [(c.number, c.final, c.duration_ms, len(c.video[1]), len(c.audio)) for c in done] == [
        (5, True, 600, 2, 1)
    ]
    last = seg.close(1033)
    assert [(c.number, c.start_ms, c.duration_ms, c.final) for c in last] == [(6, 1000, 33, True)]


def test_chunks_go_out_at_boundaries_every_track_passed_and_add_up_to_the_segment() -> None:
    seg = Segmenter(segment_ms=2000, rungs=2, first_number=1, chunk_ms=500)
    packets = [(bytes([i]), 2000 + i * 100, i % 20 == 0) for i in range(25)]  # 2000 .. 4400 ms
    chunks = []
    for data, t, key in packets:
        assert seg.video_frame(t) == key
        seg.add_video(0, [(data, t, key)])
        assert seg.take(audio_stale=True) == []  # rung 1 has not passed the new picture yet
        seg.add_video(1, [(data, t, key)])
        chunks += seg.take(audio_stale=True)
    first = [c for c in chunks if c.number == 1]
    assert [(c.index, c.final) for c in first] == [(0, False), (1, False), (2, False), (3, True)]
    assert [[p[1] for p in c.video[0]] for c in first][:2] == [[2000, 2100, 2200, 2300, 2400],
                                                                [2500, 2600, 2700, 2800, 2900]]  # fmt: skip
    assert [p for c in first for p in c.video[1]] == packets[:20]
    assert first[-1].duration_ms == 2000
    # Audio that lags holds chunks back until it is stale.
    seg.add_audio(b"o", 4000)
    seg.add_video(0, [(b"x", 4500, False)])
    seg.add_video(1, [(b"x", 4500, False)])
    assert seg.take(audio_stale=False) == []
    late = seg.take(audio_stale=True)
    assert [(c.number, c.index, len(c.audio)) for c in late] == [(2, 0, 1)]
    rest = seg.close(4533)
    assert [(c.number, c.index, c.final, c.duration_ms) for c in rest] == [(2, 1, True, 533)]


def test_live_manifest_lists_the_window_and_vod_all() -> None:
    segs = [domain.SegmentInfo(number=n, start_ms=n * 2000, duration_ms=2000) for n in range(1, 30)]
    rungs = domain.parse_ladder("640x360:700")
    text = domain.live_manifest(
        base="s/", availability_start=datetime(2026, 1, 1, tzinfo=UTC), published=datetime.now(UTC),
        rungs=rungs, has_audio=True, segments=segs, segment_ms=2000, window_ms=10_000, fps=30,
    )  # fmt: skip
    mpd = ET.fromstring(text)
    assert mpd.get("type") == "dynamic"
    assert mpd.get("availabilityStartTime") == "2026-01-01T00:00:00.000Z"
    tpl = mpd.find("d:Period/d:AdaptationSet/d:Representation/d:SegmentTemplate", NS)
    assert tpl is not None
    assert tpl.get("startNumber") == "25"
    assert tpl.get("media") == "s/v0/$Number$.webm"
    assert len(tpl.findall("d:SegmentTimeline/d:S", NS)) == 5
    timing = mpd.find("d:UTCTiming", NS)  # after the Period, as the MPD schema orders it
    assert timing is not None
    assert [c.tag.split("}")[1] for c in mpd][-1] == "UTCTiming"
    assert timing.get("schemeIdUri") == "urn:mpeg:dash:utc:http-iso:2014"
    assert timing.get("value") == "../time"
    vod = ET.fromstring(domain.vod_manifest(base="", rungs=rungs, has_audio=False, segments=segs, fps=30))
    assert vod.get("type") == "static"
    assert vod.get("mediaPresentationDuration") == "PT58.000S"
    assert vod.find("d:UTCTiming", NS) is None  # a recording has no live edge
    assert len(vod.findall("d:Period/d:AdaptationSet", NS)) == 1


def _ll_manifest(target_ms: int) -> ET.Element:
    segs = [domain.SegmentInfo(number=n, start_ms=n * 2000, duration_ms=2000) for n in range(1, 4)]
    text = domain.live_manifest(
        base="s/", availability_start=datetime(2026, 1, 1, tzinfo=UTC), published=datetime.now(UTC),
        rungs=domain.parse_ladder("640x360:700"), has_audio=True, segments=segs, segment_ms=2000,
        window_ms=10_000, fps=30, low_latency=domain.LowLatency(chunk_ms=500, target_latency_ms=target_ms),
    )  # fmt: skip
    return ET.fromstring(text)


def test_low_latency_manifest_offers_the_segment_being_made() -> None:
    mpd = _ll_manifest(3000)
    assert [c.tag.split("}")[1] for c in mpd][:2] == ["ServiceDescription", "Period"]
    for tpl in mpd.findall("d:Period/d:AdaptationSet/d:Representation/d:SegmentTemplate", NS):
        assert tpl.get("availabilityTimeOffset") == "1.500"
        assert tpl.get("availabilityTimeComplete") == "false"


def test_low_latency_target_is_split_between_the_delay_and_shakas_latency() -> None:
    # Shaka keeps its Latency target from its seek range end, which already lies the presentation delay
    # back: a 3 s picture target is a 2.5 s delay (target less a chunk) and the rest after a segment, a
    # chunk and Shaka's 0.5 s tolerance (0 s); a longer target leaves Shaka some; a short one is held at a
    # segment's delay, the nearest a whole-segment player can be.
    for target, delay, shaka_target in (
        (3000, "PT2.500S", "0"),
        (4500, "PT4.000S", "1500"),
        (1000, "PT2.000S", "0"),
    ):
        mpd = _ll_manifest(target)
        latency = mpd.find("d:ServiceDescription/d:Latency", NS)
        assert latency is not None
        assert (mpd.get("suggestedPresentationDelay"), latency.get("target")) == (delay, shaka_target)
        assert latency.get("max") == str(int(shaka_target) + 2000)


def test_opus_head_is_rfc7845() -> None:
    assert OPUS_HEAD[:8] == b"OpusHead"
    assert len(OPUS_HEAD) == 19
    assert OPUS_HEAD[9] == 2


def test_a_transcoder_is_alive_for_two_takeover_periods_after_its_last_check_in() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert domain.transcoder_alive(now - timedelta(seconds=11), now=now, takeover_seconds=6.0)
    assert not domain.transcoder_alive(now - timedelta(seconds=12), now=now, takeover_seconds=6.0)
    assert not domain.transcoder_alive(None, now=now, takeover_seconds=6.0)


def test_recordings_expire_after_the_retention_days() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert domain.retention_cutoff(now, retention_days=30) == datetime(2026, 11, 4, 12, 0, tzinfo=UTC)
