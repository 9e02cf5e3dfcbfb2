"""Two transcoder replicas share the work; killing the one that transcodes a stream hands the stream to the
other, which continues the same timeline and segment numbering."""

from __future__ import annotations

import asyncio
import io
import secrets
import time

import av

from libs.bus import connect, publish, utcnow
from libs.devstack.processes import ServiceProcess
from libs.media.synthetic import SyntheticBroadcast
from proto import ingest
from proto import transcode as pt
from tests.conftest import Isolated
from tests.integration.transcode_helpers import NS, parse_mpd, timeline

ENV = {
    "CPC_TRANSCODE_LADDER": "256x144:150",
    "CPC_SEGMENT_SECONDS": "1",
    "CPC_TAKEOVER_SECONDS": "2",
    "CPC_TRANSCODE_CAPACITY": "1",
    "CPC_LOG_JSON": "true",
}


def _replica(iso: Isolated, n: int) -> ServiceProcess:
    base = {"CPC_NATS_URL": iso.nats_url, "CPC_DATABASE_URL": iso.database_url, "CPC_METRICS_PORT": "0"}
    proc = ServiceProcess("transcode", {**base, **ENV}, log_path=iso.folder / f"transcode-{n}.log").start()
    iso.procs.append(proc)
    return proc


def _took(proc: ServiceProcess, session_id: str) -> bool:
    assert proc.log_path is not None
    text = proc.log_path.read_text() if proc.log_path.exists() else ""
    return any("transcode_started" in line and session_id in line for line in text.splitlines())


async def _numbers(bucket: object, channel: str) -> list[int]:
    try:
        mpd = parse_mpd((await bucket.get(pt.live_manifest_object(channel))).data.decode())  # type: ignore[attr-defined]
    except Exception:
        return []
    template = mpd.find("d:Period/d:AdaptationSet/d:Representation/d:SegmentTemplate", NS)
    return [n for n, _t, _d in timeline(template)] if template is not None else []


async def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_killed_transcoder_is_replaced(isolated: Isolated) -> None:
    """SIGKILL the replica holding the stream: the other takes it within the takeover time and goes on."""
    replicas = [_replica(isolated, 0), _replica(isolated, 1)]
    for proc in replicas:
        await isolated.wait_answering(proc)
    nc = await connect(isolated.nats_url, name="test-source")
    js = nc.jetstream()
    session_id, channel = secrets.token_hex(8), f"c_{secrets.token_hex(4)}"
    await publish(
        js,
        ingest.SessionStarted(
            session_id=session_id,
            channel_id=secrets.token_hex(8),
            channel_name=channel,
            started_at=utcnow(),
            video_codec="vp8",
            audio_codec="opus",
        ),
    )
    feeding = asyncio.create_task(SyntheticBroadcast(nc, session_id, width=256, height=144).run(60.0))
    try:
        bucket = await _until(lambda: _bucket(js), 10, "the bucket")
        before = await _until(lambda: _numbers(bucket, channel), 40, "first segments")
        owner = next(p for p in replicas if _took(p, session_id))
        other = next(p for p in replicas if p is not owner)
        owner.kill()
        killed_at = time.monotonic()
        await _until(
            lambda: asyncio.to_thread(_took, other, session_id), 10, "the other replica to take over"
        )
        assert time.monotonic() - killed_at < 8
        after = await _until(lambda: _grown(bucket, channel, max(before) + 2), 30, "new segments")
        assert after == sorted(set(after)), after
        assert after == list(range(after[0], after[-1] + 1)), after
        newest = (await bucket.get(pt.media_object(channel, session_id, "v0", f"{after[-1]}.webm"))).data
        init = (await bucket.get(pt.media_object(channel, session_id, "v0", "init.webm"))).data
        with av.open(io.BytesIO(init + newest), format="webm") as c:
            frames = list(c.decode(video=0))
        assert frames
        assert (frames[0].width, frames[0].height) == (256, 144)
    finally:
        feeding.cancel()
        await nc.drain()


async def _bucket(js: object) -> object | None:
    try:
        return await js.object_store(pt.BUCKET)  # type: ignore[attr-defined]
    except Exception:
        return None


async def _grown(bucket: object, channel: str, beyond: int) -> list[int] | None:
    numbers = await _numbers(bucket, channel)
    return numbers if numbers and numbers[-1] >= beyond else None
