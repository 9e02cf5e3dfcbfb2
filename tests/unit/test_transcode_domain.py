"""The transcoder's rules without servers: ladder parsing and capping, segment cutting, manifests."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

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
    assert seg.ready(audio_stale=True) == []  # rung 1 has not passed the boundary yet
    seg.add_video(1, [(b"a", 400, True), (b"b", 433, False), (b"c", 1000, True)])
    seg.add_audio(b"o", 990)
    assert seg.ready(audio_stale=False) != []
    last = seg.close(1033)
    assert [(s.number, s.start_ms, s.duration_ms) for s in last] == [(6, 1000, 33)]


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
    vod = ET.fromstring(domain.vod_manifest(base="", rungs=rungs, has_audio=False, segments=segs, fps=30))
    assert vod.get("type") == "static"
    assert vod.get("mediaPresentationDuration") == "PT58.000S"
    assert len(vod.findall("d:Period/d:AdaptationSet", NS)) == 1


def test_opus_head_is_rfc7845() -> None:
    assert OPUS_HEAD[:8] == b"OpusHead"
    assert len(OPUS_HEAD) == 19
    assert OPUS_HEAD[9] == 2
