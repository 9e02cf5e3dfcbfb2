"""The media wire format, the viewer queue rules and the aiortc hooks the extension relies on."""

from __future__ import annotations

from fractions import Fraction

import pytest

from libs.media.aiortc_ext import check_hooks
from libs.media.frames import MediaFrame, pack_frame, unpack_frame
from services.edge.domain import ViewerQueue


def test_aiortc_hooks_are_where_the_extension_expects_them() -> None:
    """Fails loudly when an aiortc upgrade moves the internals libs/media/aiortc_ext.py patches."""
    check_hooks()


def test_frame_round_trip_and_bad_payloads() -> None:
    frame = MediaFrame(
        codec="vp8", keyframe=True, pts=3000, time_base=Fraction(1, 90000), capture_us=5, seq=7, data=b"x"
    )
    assert unpack_frame(pack_frame(frame)) == frame
    with pytest.raises(ValueError, match="shorter"):
        unpack_frame(b"CF")
    with pytest.raises(ValueError, match="magic"):
        unpack_frame(b"XX" + pack_frame(frame)[2:])


def test_slow_viewer_skips_to_the_next_keyframe() -> None:
    q: ViewerQueue[int] = ViewerQueue(3)
    assert not q.offer(0, False)  # a viewer starts at a keyframe
    assert q.offer(1, True)
    assert q.offer(2, False)
    assert q.offer(3, False)
    assert not q.offer(4, False)  # full: drop the rest of this GOP
    assert q.take() is None
    assert not q.offer(5, False)
    assert q.offer(6, True)
    assert q.take() == 6
