"""The transcoder through the real stack: a synthetic VP8 + Opus source on ingest's media subjects, AV1/Opus
WebM segments and DASH manifests out of the gateway, and the recording made when the session ends."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import httpx
from nats.js.errors import ObjectNotFoundError

from libs.bus import connect
from libs.devstack.stack import Stack
from libs.media.synthetic import SyntheticBroadcast
from proto import transcode as pt
from tests.conftest import assert_problem, unique_name
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
    segments, a stream that stops mid-segment ends with a short last segment, a stall in the camera is
    bridged, and the recording plays."""
    name, session_id, owner = start_live(api, make_member)
    nc = await connect(stack.nats_url, name="test-source")
    try:
        # The camera stalls for 1.2 s mid-stream (audio goes on): the rungs still have a picture every
        # frame interval (the last one repeated), so a player's buffer has no hole to stall on.
        source = SyntheticBroadcast(nc, session_id, width=320, height=180, video_gap=(1.2, 1.2))
        started = time.monotonic()
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
        timing = mpd.find("d:UTCTiming", NS)  # the clock it names, resolved as a player resolves it, answers
        assert timing is not None
        clock = api.get(urljoin(f"{stack.url}/live/{name}/manifest.mpd", timing.get("value", "")))
        assert clock.status_code == 200
        assert abs(datetime.fromisoformat(clock.text) - datetime.now(UTC)) < timedelta(seconds=5)
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
        source_ms = (time.monotonic() - started) * 1000  # a loaded machine stretches the source's 3.5 s
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
    assert 2000 <= rec["duration_ms"] <= source_ms + 100, (rec, source_ms)
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


def test_live_clock_is_the_servers_utc_time(stack: Stack, api: httpx.Client) -> None:
    """The UTCTiming source the live manifests name: ISO 8601 UTC with milliseconds, never cached."""
    before = datetime.now(UTC)
    r = api.get("/live/time")
    after = datetime.now(UTC)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["access-control-allow-origin"] == "*"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r.text), r.text
    told = datetime.fromisoformat(r.text)
    assert before - timedelta(milliseconds=1) <= told <= after


def test_bad_paths_are_problems(stack: Stack, api: httpx.Client) -> None:
    """Unknown channels, bad tracks and file names are 404 problems, never errors."""
    assert_problem(api.get("/live/nobody_here/manifest.mpd"), 404, "live")
    assert_problem(api.get("/live/x/s/v0/secret.webm"), 404, "segment")
    assert_problem(api.get("/live/x/s/zz/1.webm"), 404, "segment")
    assert_problem(api.get("/vod/x/nosuch/manifest.mpd"), 404, "recording")
    assert_problem(api.get("/api/v1/channels/x/recordings?limit=0"), 400, "limit")
    assert api.get("/api/v1/channels/nobody_here/playback").json()["live"] is False


async def test_low_latency_segment_streams_while_it_is_made(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """The low-latency manifest lists the segment being made (the plain one does not); asking for it
    answers at once, before the segment is stored, with its chunks so far and then each new one, and the
    streamed body is exactly the segment stored in the end, a decodable AV1 track."""
    name, session_id, _owner = start_live(api, make_member)
    nc = await connect(stack.nats_url, name="test-source")
    bucket = await nc.jetstream().object_store(pt.BUCKET)
    feeding = asyncio.create_task(SyntheticBroadcast(nc, session_id, width=320, height=180).run(5.0))
    try:

        def making() -> tuple[int, str] | None:
            ll, plain = api.get(f"/live/{name}/manifest-ll.mpd"), api.get(f"/live/{name}/manifest.mpd")
            if ll.status_code != 200 or plain.status_code != 200:
                return None
            tpl = representations(parse_mpd(ll.text))[0].find("d:SegmentTemplate", NS)
            done = representations(parse_mpd(plain.text))[0].find("d:SegmentTemplate", NS)
            assert tpl is not None
            assert done is not None
            assert tpl.get("availabilityTimeComplete") == "false"
            last = timeline(tpl)[-1][0]
            return (last, ll.text) if last not in {n for n, _t, _d in timeline(done)} else None

        number, text = await await_for(making, 20, "a segment in the making")
        assert parse_mpd(text).find("d:ServiceDescription/d:Latency", NS) is not None
        path = f"/live/{name}/{session_id}/v0/{number}.webm"
        stored_at_first_byte = True
        body = b""
        async with (
            httpx.AsyncClient(base_url=stack.url, timeout=10) as client,
            client.stream("GET", path) as r,
        ):
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            assert r.headers["content-type"] == "video/webm"
            assert "immutable" in r.headers["cache-control"]
            async for piece in r.aiter_raw():
                if not body:
                    stored_at_first_byte = await _stored(bucket, f"{name}/{session_id}/v0/{number}.webm")
                body += piece
        assert not stored_at_first_byte, "the segment was already complete: nothing was streamed"
        stored = await await_for(lambda: api.get(path).content, 10, "the stored segment")
        assert stored == body
        init = api.get(f"/live/{name}/{session_id}/v0/init.webm").content
        codec, count, width, height, seconds = decode_track(init + body)
        assert (codec, width, height) == ("libdav1d", 320, 180)
        # Up to one 1 s segment (the first one starts at the first picture, anywhere in its slot), a
        # picture every frame interval however the loaded source kept time.
        assert 5 <= count <= 31, count
        assert abs(count - (seconds * 30 + 1)) <= 1, (count, seconds)
        await feeding
    finally:
        feeding.cancel()
        await nc.drain()


async def _stored(bucket: Any, name: str) -> bool:
    try:
        await bucket.get(name)
    except ObjectNotFoundError:
        return False
    return True


async def test_manifest_rewritten_while_read_is_still_served(stack: Stack) -> None:
    """A live manifest replaced while the gateway reads it is served all the same: nats-py's object read
    waits forever for the purged chunks of the replaced version unless the gateway reads it again."""
    nc = await connect(stack.nats_url, name="test-rewriter")
    bucket = await nc.jetstream().object_store(pt.BUCKET)
    name = unique_name("c")
    stop = asyncio.Event()

    count = 0

    async def rewrite() -> int:
        nonlocal count
        while not stop.is_set():
            await bucket.put(pt.live_manifest_object(name), f"<MPD n='{count}'/>".encode() * 50)
            count += 1
            await asyncio.sleep(0.05)  # 20 rewrites a second: ten times more often than a transcoder
        return count

    await bucket.put(pt.live_manifest_object(name), b"<MPD/>")
    writer = asyncio.create_task(rewrite())
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=8) as client:
            batches = 0
            while batches < 4 or count < 30:  # reads go on across 30 rewrites at least
                answers = await asyncio.gather(*(client.get(f"/live/{name}/manifest.mpd") for _ in range(50)))
                assert [r.status_code for r in answers] == [200] * 50
                assert all(r.content.startswith(b"<MPD") for r in answers)
                batches += 1
    finally:
        stop.set()
        rewrites = await writer
        await nc.drain()
    assert rewrites >= 30
