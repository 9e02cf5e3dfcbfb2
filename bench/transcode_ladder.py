"""The transcoder's 3-rung AV1 ladder (1280x720 2.5 Mbps, 854x480 1.2 Mbps, 640x360 0.7 Mbps, SVT-AV1
preset 12, rtc=1 CBR, keyframes every 2 s) on natural-looking 720p30 content (moving plasma, VP8 source as
a WebRTC broadcaster sends it), through the service's own pipeline (decode once, one encoder thread per
rung, segmenter, WebM muxing) and through the `ffmpeg` command line of the imageio-ffmpeg wheel with the
same settings, in the same run; then DASH latency through a real stack fed by a source that draws its
capture time into each picture: capture of a segment's first frame to that segment being served by the
gateway, and glass-to-glass to the picture Shaka Player shows in headless Chromium (the page reads the
mark of every presented frame), plain and low-latency DASH side by side on the same stream.

    .venv/bin/python bench/transcode_ladder.py [--seconds 10] [--latency-seconds 45] [--measure-seconds 24]
        [--dash-segment-seconds 2]   (--seconds 0: latency only, --latency-seconds 0: ladder only)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import httpx
import imageio_ffmpeg

from libs.bus import connect
from libs.devstack.dash_probe import CHROMIUM, CHROMIUM_ARGS, PlayerProbe, open_probe
from libs.devstack.stack import OPERATOR_TOKEN, Stack
from libs.media.synthetic import SyntheticBroadcast, plasma
from services.transcode.domain import parse_ladder
from services.transcode.pipeline import Decoder, Ladder, Packet, RungEncoder
from services.transcode.segmenter import Chunk, Segmenter
from services.transcode.webm import mux_video

LADDER = "1280x720:2500,854x480:1200,640x360:700"
FPS, SEGMENT_S, PRESET = 30, 2, 12
DASH_SEGMENT_S = [SEGMENT_S]  # the latency phase's segment length (--dash-segment-seconds)
TARGET_LATENCY_MS = [3000]  # the low-latency manifest's latency target (--target-latency-ms)
WARMUP_S = 8.0
POLLS_FAILED = [0]  # manifest polls that timed out or failed


def make_source(path: Path, seconds: float) -> list[tuple[bytes, int]]:
    """VP8 720p30 plasma as a WebM file (for the CLI) and as packets (for the pipeline)."""
    packets: list[tuple[bytes, int]] = []
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.bit_rate = 4_000_000
        stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(plasma(1280, 720, i), format="yuv420p")
            frame.pts = i
            for p in stream.encode(frame):
                packets.append((bytes(p), i * 1000 // FPS))
                out.mux(p)
        out.mux(stream.encode(None))
    return packets


async def run_pipeline(packets: list[tuple[bytes, int]]) -> float:
    """Wall seconds for the service's pipeline to turn the packets into 3 rungs of WebM segments (muxed
    chunk by chunk, as the service does)."""
    loop = asyncio.get_running_loop()
    rungs = [RungEncoder(r, encoder="libsvtav1", fps=FPS, preset=PRESET) for r in parse_ladder(LADDER)]
    ladder = Ladder(rungs)
    decoder = Decoder("vp8")
    # Chunks of half a second, as the service cuts them for low-latency DASH.
    seg = Segmenter(segment_ms=SEGMENT_S * 1000, rungs=len(rungs), first_number=1, chunk_ms=500)
    muxer = ThreadPoolExecutor(max_workers=2)
    started = time.perf_counter()
    writes = []

    def write(chunks: list[Chunk]) -> None:
        for done in chunks:
            for i, r in enumerate(rungs):
                args = dict(width=r.rung.width, height=r.rung.height, extradata=r.extradata, fps=FPS)
                if done.video[i]:
                    writes.append(
                        loop.run_in_executor(muxer, lambda d=done, i=i, a=args: mux_video(d.video[i], **a))
                    )

    def place(done: list[list[list[Packet]]]) -> None:
        for results in done:
            for i, out in enumerate(results):
                seg.add_video(i, out)

    for data, t in packets:
        for picture in await loop.run_in_executor(decoder.pool, decoder.decode, data, t):
            ladder.submit(picture, t, seg.video_frame(t))
        place(await ladder.collect())
        write(seg.take(audio_stale=True))
    # The end of the stream, as the service does it (and as the CLI does): flush the encoders and write
    # the last segment.
    place(await ladder.flush())
    write(seg.close(packets[-1][1] + 1000 // FPS))
    await asyncio.gather(*writes)
    elapsed = time.perf_counter() - started
    for r in rungs:
        r.close()
    decoder.close()
    muxer.shutdown()
    return elapsed


def run_cli(source: Path, folder: Path) -> float:
    """Wall seconds for the ffmpeg CLI: same decode, scale and SVT-AV1 settings, 3 WebM outputs."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    rungs = parse_ladder(LADDER)
    split = f"[0:v]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs))) + ";"
    scales = ";".join(f"[s{i}]scale={r.width}:{r.height}[o{i}]" for i, r in enumerate(rungs))
    cmd = [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(source),
        "-filter_complex",
        split + scales,
    ]
    for i, r in enumerate(rungs):
        cmd += ["-map", f"[o{i}]", "-c:v", "libsvtav1", "-preset", str(PRESET), "-b:v", f"{r.kbps}k",
                "-maxrate", f"{r.kbps}k", "-svtav1-params", "rtc=1:keyint=-1",
                "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_S})", "-f", "webm", str(folder / f"r{i}.webm")]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


PlayerResult = tuple[list[float], dict[str, object]]


async def dash_latency(seconds: float, measure: float) -> tuple[list[float], dict[str, PlayerResult]]:
    """Per segment: seconds from the capture of its first frame to the gateway serving it; per manifest
    (plain, low-latency): each shown frame's glass-to-glass seconds and Shaka's stats (real stack)."""
    root = Path(tempfile.mkdtemp(prefix="cpc-bench-"))
    env = {
        "CPC_TRANSCODE_LADDER": LADDER,
        "CPC_SEGMENT_SECONDS": str(DASH_SEGMENT_S[0]),
        "CPC_TARGET_LATENCY_MS": str(TARGET_LATENCY_MS[0]),
    }
    stack = await asyncio.to_thread(Stack(root, env=env).start)
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as api:
            name = await _live_channel(api)
            op = {"X-Operator-Token": OPERATOR_TOKEN}
            session = (await api.post(f"/api/v1/operator/channels/{name}/session", headers=op)).json()[
                "session_id"
            ]
            nc = await connect(stack.nats_url, name="bench")
            # 640x360 source (one rung) keeps the source encoder off the transcoder's two cores.
            source = SyntheticBroadcast(nc, session, width=640, height=360, marks=True)
            feed = asyncio.create_task(source.run(seconds))
            served = asyncio.create_task(_watch(api, name, feed))
            players = await _players(api, stack.url, name, measure) if CHROMIUM.exists() else {}
            latencies = await served
            await feed
            await nc.drain()
            return latencies, players
    finally:
        await asyncio.to_thread(stack.stop)


async def _players(api: httpx.AsyncClient, base: str, name: str, measure: float) -> dict[str, PlayerResult]:
    """Both manifests played at once in one Chromium, with the web app's Shaka settings for live."""
    from playwright.async_api import async_playwright

    for path in ("manifest.mpd", "manifest-ll.mpd"):
        for _ in range(200):
            if (await _get(api, f"/live/{name}/{path}")) == 200:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(
        2 * DASH_SEGMENT_S[0]
    )  # a few segments behind the live edge, as for a viewer who joins
    out: dict[str, PlayerResult] = {}
    async with async_playwright() as p:
        launch = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        browser = await asyncio.wait_for(launch, 60)
        probes: dict[str, PlayerProbe] = {}
        for mode, path in (("plain", "manifest.mpd"), ("low-latency", "manifest-ll.mpd")):
            probes[mode] = await open_probe(browser, base)
            # Bounded: a player that never starts is reported (no frames), it does not hang the run.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probes[mode].play(f"{base}/live/{name}/{path}", low_latency=True), 60)
        await asyncio.sleep(WARMUP_S)  # Shaka settles on its live delay (and catches up, when it does)
        for probe in probes.values():
            await probe.mark()
        await asyncio.sleep(measure)
        for mode, probe in probes.items():
            out[mode] = (await probe.latencies(), await probe.stats())
        await browser.close()
    return out


async def _get(api: httpx.AsyncClient, path: str) -> int:
    """Status of a GET, 0 when it timed out or failed (a loaded machine must not end the run)."""
    try:
        return (await api.get(path)).status_code
    except httpx.TransportError:
        return 0


async def _live_channel(api: httpx.AsyncClient) -> str:
    import secrets

    name = f"bench_{secrets.token_hex(3)}"
    await api.post("/api/v1/auth/register", json={"username": name, "password": "bench pass phrase 42",
                                                 "email": f"{name}@example.test"})  # fmt: skip
    token = (
        await api.post("/api/v1/auth/login", json={"username": name, "password": "bench pass phrase 42"})
    ).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    await api.post("/api/v1/channels", json={"name": name, "title": "bench", "category": "Art"}, headers=auth)
    return name


async def _watch(api: httpx.AsyncClient, name: str, feed: asyncio.Task[None]) -> list[float]:
    import xml.etree.ElementTree as ET
    from datetime import datetime

    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    seen: set[int] = set()
    out = []
    while not feed.done():
        try:
            r = await api.get(f"/live/{name}/manifest.mpd", timeout=3)
        except httpx.TransportError:  # a timeout on a loaded machine: this poll is lost, not the run
            POLLS_FAILED[0] += 1
            await asyncio.sleep(0.05)
            continue
        now = time.time()
        if r.status_code == 200:
            mpd = ET.fromstring(r.text)
            ast = datetime.fromisoformat(
                mpd.get("availabilityStartTime", "").replace("Z", "+00:00")
            ).timestamp()
            tpl = mpd.find("d:Period/d:AdaptationSet/d:Representation/d:SegmentTemplate", ns)
            number = int(tpl.get("startNumber", "1")) if tpl is not None else 1
            for s in tpl.findall("d:SegmentTimeline/d:S", ns) if tpl is not None else []:
                if number not in seen and seen:
                    out.append(now - (ast + int(s.get("t", "0")) / 1000))
                seen.add(number)
                number += 1
        await asyncio.sleep(0.05)
    return out


def main() -> None:
    """Run both ladders and the latency measurement; print the figures and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-seconds", type=float, default=45.0)
    parser.add_argument("--measure-seconds", type=float, default=24.0)
    parser.add_argument("--dash-segment-seconds", type=int, default=SEGMENT_S)
    parser.add_argument("--target-latency-ms", type=int, default=3000, help="CPC_TARGET_LATENCY_MS")
    args = parser.parse_args()
    DASH_SEGMENT_S[0] = args.dash_segment_seconds
    TARGET_LATENCY_MS[0] = args.target_latency_ms
    # The latency phase first: Playwright's driver once hung at start after the ladder phase in the same
    # process (no browser started, the driver spinning), never when it came first.
    measured = (
        asyncio.run(dash_latency(args.latency_seconds, args.measure_seconds))
        if args.latency_seconds > 0
        else None
    )
    if args.seconds > 0:
        ladder(args.seconds)
    if measured is not None:
        report_latency(*measured, args.measure_seconds)


def ladder(seconds: float) -> None:
    """The pipeline and the CLI on the same source; print both and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        packets = make_source(folder / "source.webm", seconds)
        media = len(packets) / FPS
        cli = run_cli(folder / "source.webm", folder)
        ours = asyncio.run(run_pipeline(packets))
    print(f"3-rung AV1 ladder, {media:.1f} s of 720p30 plasma (VP8 source), SVT-AV1 preset {PRESET} rtc CBR")
    print(f"  service pipeline: {ours:6.2f} s wall  realtime factor {media / ours:5.2f}x")
    print(f"  ffmpeg CLI      : {cli:6.2f} s wall  realtime factor {media / cli:5.2f}x")
    print(f"  pipeline / CLI speed ratio: {cli / ours:4.2f}x   (goals: >= 2x realtime, >= 1.0x the CLI)")


def report_latency(latencies: list[float], players: dict[str, PlayerResult], measure: float) -> None:
    """Print the served and the player-picture latencies."""
    if latencies:
        p50 = statistics.median(latencies)
        print(f"DASH capture -> segment served, {DASH_SEGMENT_S[0]} s segments, {len(latencies)} segments:"
              f" p50 {p50:.2f} s, max {max(latencies):.2f} s ({POLLS_FAILED[0]} manifest polls failed)")  # fmt: skip
    print(f"DASH glass-to-glass to the player picture (Shaka {_shaka_version()} in headless Chromium,"
          f" 640x360 AV1, {DASH_SEGMENT_S[0]} s segments, low-latency target {TARGET_LATENCY_MS[0]} ms, {measure:.0f} s after {WARMUP_S:.0f} s warm-up):")  # fmt: skip
    p50s = {}
    for mode, (values, stats) in players.items():
        if not values:
            print(f"  {mode:12s}: no marked frames were shown  {stats}")
            continue
        p50s[mode] = statistics.median(values)
        p99 = statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]
        print(f"  {mode:12s}: p50 {p50s[mode]:.2f} s  p99 {p99:.2f} s  ({len(values)} frames, stalls"
              f" {stats['stalls']}, Shaka live latency {float(stats['latency'] or 0):.2f} s,"
              f" {float(stats['behindSeekEnd'] or 0):.2f} s behind its seek range end at rate {stats['rate']},"
              f" Shaka low-latency mode {'on' if stats['lowLatency'] else 'off'}, errors {stats['errors']})")  # fmt: skip
    if len(p50s) == 2:
        print(
            f"  low-latency / plain p50 ratio: {p50s['low-latency'] / p50s['plain']:.2f}x   (goal p50 <= 3 s)"
        )


def _shaka_version() -> str:
    import json

    from libs.devstack.dash_probe import SHAKA

    return str(json.loads((SHAKA.parents[1] / "package.json").read_text())["version"])


if __name__ == "__main__":
    main()
