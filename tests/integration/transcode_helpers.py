"""Helpers for transcoder tests: a live channel fed by a synthetic source on ingest's media subjects."""

from __future__ import annotations

import asyncio
import io
import time
import xml.etree.ElementTree as ET
from typing import Any

import av
import httpx

from libs.devstack.stack import OPERATOR_TOKEN
from tests.conftest import unique_name

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
OP = {"X-Operator-Token": OPERATOR_TOKEN}


def start_live(api: httpx.Client, make_member: Any) -> tuple[str, str, Any]:
    """A new channel with a session started through ingest (no WebRTC): (channel, session id, owner)."""
    member = make_member()
    name = unique_name("c")
    r = api.post(
        "/api/v1/channels", json={"name": name, "title": "t", "category": "Art"}, headers=member.headers
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/operator/channels/{name}/session", headers=OP)
    assert r.status_code == 201, r.text
    return name, r.json()["session_id"], member


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def await_for(check: Any, timeout: float, what: str) -> Any:
    """Async `wait_for`: `check()` runs in a thread so the event loop keeps publishing frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def parse_mpd(text: str) -> ET.Element:
    """The MPD root element."""
    return ET.fromstring(text)


def timeline(template: ET.Element) -> list[tuple[int, int, int]]:
    """(number, t, d) of each segment a SegmentTemplate lists."""
    number = int(template.get("startNumber", "1"))
    out = []
    for s in template.findall("d:SegmentTimeline/d:S", NS):
        out.append((number, int(s.get("t", "0")), int(s.get("d", "0"))))
        number += 1
    return out


def representations(mpd: ET.Element) -> list[ET.Element]:
    """Every Representation of the first Period."""
    return mpd.findall("d:Period/d:AdaptationSet/d:Representation", NS)


def fetch_track(api: httpx.Client, base: str, rep: ET.Element) -> tuple[bytes, list[int]]:
    """Init plus every listed media segment of one representation, and the numbers fetched."""
    template = rep.find("d:SegmentTemplate", NS)
    assert template is not None
    r = api.get(base + template.get("initialization", ""))
    assert r.status_code == 200, r.text
    data = r.content
    numbers = []
    for number, _t, _d in timeline(template):
        r = api.get(base + template.get("media", "").replace("$Number$", str(number)))
        assert r.status_code == 200, (number, r.text)
        assert "immutable" in r.headers["cache-control"]
        data += r.content
        numbers.append(number)
    return data, numbers


def decode_track(data: bytes) -> tuple[str, int, int, int, float]:
    """(decoder name, frames or samples, width, height, seconds covered) of a WebM track."""
    with av.open(io.BytesIO(data), format="webm") as container:
        stream = container.streams[0]
        first = last = None
        count = width = height = 0
        for frame in container.decode(stream):
            count += 1
            first = frame.time if first is None else first
            last = frame.time
            width, height = getattr(frame, "width", 0), getattr(frame, "height", 0)
        name = stream.codec_context.name
    return name, count, width, height, (last or 0) - (first or 0)
