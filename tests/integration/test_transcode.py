"""The transcoder through the real stack: a synthetic VP8 + Opus source on ingest's media subjects, AV1/Opus
WebM segments and DASH manifests out of the gateway, and the recording made when the session ends."""

from __future__ import annotations

import asyncio

import httpx

from libs.bus import connect
from libs.devstack.stack import Stack
from libs.media.synthetic import SyntheticBroadcast
from proto import transcode as pt
from tests.conftest import assert_problem
from tests.integration.transcode_helpers import (
    NS,
    OP,
    await_for,
    decode_track,
    fetch_track,
    parse_mpd,
    representations,
    start_live,
    timeline,
    wait_for,
)


async def test_ladder_segments_manifests_and_recording(stack: Stack, api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    """Every rung decodes as AV1 at its size for the stream's length, the manifests list exactly the stored
    segments, a stream that stops mid-segment ends with a short last segment, and the recording plays."""
    name, session_id, owner = start_live(api, make_member)
    nc = await connect(stack.nats_url, name="test-source")
    try:
        source = SyntheticBroadcast(nc, session_id, width=320, height=180)
        feeding = asyncio.create_task(source.run(3.5))

        def live() -> httpx.Response | None:
            r = api.get(f"/live/{name}/manifest.mpd")
            return r if r.status_code == 200 else None

        r = await await_for(live, 20, "the live manifest")
        assert r.headers["content-type"].startswith("application/dash+xml")
        assert r.headers["cache-control"] == "public, max-age=1"
        mpd = parse_mpd(r.text)
        assert mpd.get("type") == "dynamic"
        assert mpd.get("availabilityStartTime")
        assert mpd.get("timeShiftBufferDepth")
        assert mpd.get("minimumUpdatePeriod")
        sets = mpd.findall("d:Period/d:AdaptationSet", NS)
        assert [s.get("contentType") for s in sets] == ["video", "audio"]
        assert [(x.get("width"), x.get("height")) for x in representations(mpd)[:2]] == [
            ("320", "180"),
            ("256", "144"),
        ]
        state = api.get(f"/api/v1/channels/{name}/playback").json()
        assert state["live"]
        assert state["transcoded"]
        assert state["dash_url"] == f"/live/{name}/manifest.mpd"
        await feeding
    finally:
        await nc.drain()
    r = api.delete(f"/api/v1/operator/channels/{name}/session", headers=OP)
    assert r.status_code == 200, r.text

    items = wait_for(
        lambda: api.get(f"/api/v1/channels/{name}/recordings").json()["items"], 30, "the recording"
    )
    rec = items[0]
    # The transcoder starts at the first keyframe it asks for, so up to a second may be missing at the start.
    assert rec["id"] == session_id
    assert rec["segments"] >= 2
    assert 2000 <= rec["duration_ms"] <= 3600, rec
    r = api.get(rec["manifest_url"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dash+xml")
    mpd = parse_mpd(r.text)
    assert mpd.get("type") == "static"
    base = rec["manifest_url"].rsplit("/", 1)[0] + "/"
    expected = {"v0": (320, 180), "v1": (256, 144)}
    listed: set[str] = set()
    for rep in representations(mpd):
        data, numbers = fetch_track(api, base, rep)
        listed.update(f"{rep.get('id')}/{n}.webm" for n in numbers)
        codec, count, width, height, seconds = decode_track(data)
        template = rep.find("d:SegmentTemplate", NS)
        assert template is not None
        segs = timeline(template)
        total = sum(d for _n, _t, d in segs) / 1000
        if rep.get("id") == "a":
            assert codec == "opus", (seconds, total)
            assert abs(seconds - total) < 0.3, (seconds, total)
            continue
        assert codec == "libdav1d", codec
        assert (width, height) == expected[str(rep.get("id"))]
        assert abs(count - total * 30) <= 3, (count, total)
        # Stopped mid-segment: the last segment ends off the 1 s grid, is stored, and its frames decode.
        end = segs[-1][1] + segs[-1][2]
        assert end % 1000 != 0, segs
        assert segs[-1][2] <= 1000, segs
    await _assert_bucket_matches(stack, name, session_id, listed)
    # Only the owner deletes; then the media is gone.
    other = make_member()
    r = api.delete(f"/api/v1/channels/{name}/recordings/{session_id}", headers=other.headers)
    assert_problem(r, 403, "owner")
    r = api.delete(f"/api/v1/channels/{name}/recordings/{session_id}", headers=owner.headers)
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/channels/{name}/recordings").json()["items"] == []
    assert_problem(api.get(rec["manifest_url"]), 404, "recording")


async def _assert_bucket_matches(stack: Stack, name: str, session_id: str, listed: set[str]) -> None:
    nc = await connect(stack.nats_url, name="test-bucket")
    try:
        bucket = await nc.jetstream().object_store(pt.BUCKET)
        prefix = f"{name}/{session_id}/"
        stored = {i.name[len(prefix) :] for i in await bucket.list() if i.name.startswith(prefix)}
    finally:
        await nc.drain()
    media = {s for s in stored if not s.endswith(("init.webm", ".mpd"))}
    assert media == listed


def test_bad_paths_are_problems(stack: Stack, api: httpx.Client) -> None:
    """Unknown channels, bad tracks and file names are 404 problems, never errors."""
    assert_problem(api.get("/live/nobody_here/manifest.mpd"), 404, "live")
    assert_problem(api.get("/live/x/s/v0/secret.webm"), 404, "segment")
    assert_problem(api.get("/live/x/s/zz/1.webm"), 404, "segment")
    assert_problem(api.get("/vod/x/nosuch/manifest.mpd"), 404, "recording")
    assert_problem(api.get("/api/v1/channels/x/recordings?limit=0"), 400, "limit")
    assert api.get("/api/v1/channels/nobody_here/playback").json()["live"] is False
