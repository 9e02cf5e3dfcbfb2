"""The transcoder's 3-rung AV1 ladder (1280x720 2.5 Mbps, 854x480 1.2 Mbps, 640x360 0.7 Mbps, SVT-AV1
preset 12, rtc=1 CBR, keyframes every 2 s) on natural-looking 720p30 content (moving plasma, VP8 source as
a WebRTC broadcaster sends it), through the service's own pipeline (decode once, one encoder thread per
rung, segmenter, WebM muxing) and through the `ffmpeg` command line of the imageio-ffmpeg wheel with the
same settings, in the same run; then DASH glass-to-glass latency through a real stack (capture of a
segment's first frame to that segment being served by the gateway), p50.

    .venv/bin/python bench/transcode_ladder.py [--seconds 10] [--latency-seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
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
from libs.devstack.stack import OPERATOR_TOKEN, Stack
from libs.media.synthetic import SyntheticBroadcast, plasma
from services.transcode.domain import parse_ladder
from services.transcode.pipeline import Decoder, Ladder, Packet, RungEncoder
from services.transcode.segmenter import SegmentBuffer, Segmenter
from services.transcode.webm import mux_video

LADDER = "1280x720:2500,854x480:1200,640x360:700"
FPS, SEGMENT_S, PRESET = 30, 2, 12


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
    """Wall seconds for the service's pipeline to turn the packets into 3 rungs of WebM segments."""
    loop = asyncio.get_running_loop()
    rungs = [RungEncoder(r, encoder="libsvtav1", fps=FPS, preset=PRESET) for r in parse_ladder(LADDER)]
    ladder = Ladder(rungs)
    decoder = Decoder("vp8")
    seg = Segmenter(segment_ms=SEGMENT_S * 1000, rungs=len(rungs), first_number=1)
    muxer = ThreadPoolExecutor(max_workers=2)
    started = time.perf_counter()
    writes = []

    def write(segments: list[SegmentBuffer]) -> None:
        for done in segments:
            for i, r in enumerate(rungs):
                args = dict(width=r.rung.width, height=r.rung.height, extradata=r.extradata, fps=FPS)
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
        write(seg.ready(audio_stale=True))
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


async def dash_latency(seconds: float) -> list[float]:
    """Per segment: seconds from the capture of its first frame to the gateway serving it (real stack)."""
    root = Path(tempfile.mkdtemp(prefix="cpc-bench-"))
    env = {"CPC_TRANSCODE_LADDER": LADDER, "CPC_SEGMENT_SECONDS": str(SEGMENT_S)}
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
            feed = asyncio.create_task(SyntheticBroadcast(nc, session, width=640, height=360).run(seconds))
            latencies = await _watch(api, name, feed)
            await nc.drain()
            return latencies
    finally:
        await asyncio.to_thread(stack.stop)


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
        r = await api.get(f"/live/{name}/manifest.mpd")
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
    parser.add_argument("--latency-seconds", type=float, default=12.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        packets = make_source(folder / "source.webm", args.seconds)
        media = len(packets) / FPS
        cli = run_cli(folder / "source.webm", folder)
        ours = asyncio.run(run_pipeline(packets))
    print(f"3-rung AV1 ladder, {media:.1f} s of 720p30 plasma (VP8 source), SVT-AV1 preset {PRESET} rtc CBR")
    print(f"  service pipeline: {ours:6.2f} s wall  realtime factor {media / ours:5.2f}x")
    print(f"  ffmpeg CLI      : {cli:6.2f} s wall  realtime factor {media / cli:5.2f}x")
    print(f"  pipeline / CLI speed ratio: {cli / ours:4.2f}x   (goals: >= 2x realtime, >= 1.0x the CLI)")
    latencies = asyncio.run(dash_latency(args.latency_seconds)) if args.latency_seconds > 0 else []
    if latencies:
        p50 = statistics.median(latencies)
        print(f"DASH glass-to-glass (capture -> segment served), {SEGMENT_S} s segments, {len(latencies)} segments:"
              f" p50 {p50:.2f} s, max {max(latencies):.2f} s   (goal <= 3 s)")  # fmt: skip


if __name__ == "__main__":
    main()
