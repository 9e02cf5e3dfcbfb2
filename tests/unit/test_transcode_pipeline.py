"""The rung pipeline: every picture reaches every rung in order, the end flushes each encoder once, and
segments mux with the rung's size."""

from __future__ import annotations

import io

import av

from services.transcode.domain import Rung
from services.transcode.pipeline import Ladder, RungEncoder
from services.transcode.webm import mux_video


def _picture(width: int = 320, height: int = 240) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame


async def test_ladder_returns_every_picture_in_order_and_flushes_each_rung() -> None:
    rungs = [RungEncoder(Rung(width=w, height=h, kbps=300), encoder="libsvtav1", fps=30, preset=12)
             for w, h in ((320, 240), (160, 120))]  # fmt: skip
    ladder = Ladder(rungs, depth=2)
    done = []
    for i in range(12):
        ladder.submit(_picture(), i * 33, i == 0)
        done += await ladder.collect()
        assert len(ladder.pending) <= 2
    done += await ladder.flush()
    per_rung = [[p for results in done for p in results[i]] for i in range(len(rungs))]
    for packets in per_rung:
        assert [p[1] for p in packets] == [i * 33 for i in range(12)]
        assert [p[2] for p in packets].count(True) == 1
    assert all(r.flushed for r in rungs)
    assert rungs[0].encode(None, 0, False) == []  # a second end is a no-op
    for r in rungs:
        r.close()


def test_mux_video_keeps_the_rung_size() -> None:
    rung = RungEncoder(Rung(width=320, height=240, kbps=300), encoder="libsvtav1", fps=30, preset=12)
    packets = [p for i in range(3) for p in rung.encode(_picture(), i * 33, i == 0)]
    packets += rung.encode(None, 0, False)
    rung.close()
    muxed = mux_video(packets, width=320, height=240, extradata=rung.extradata, fps=30)

    with av.open(io.BytesIO(muxed.init + muxed.media)) as f:
        stream = f.streams.video[0]
        assert (stream.width, stream.height) == (320, 240)
        assert sum(1 for p in f.demux(stream) if p.size) == 3
