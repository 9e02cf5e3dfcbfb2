"""WebRTC session lifecycle against the shared stack: a dropped broadcaster resumes its session within the
grace period, and refused offers or DELETEs leave no session and no UDP socket behind in ingest or edge."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from nats.js.api import DeliverPolicy

from libs.bus import NotFound, connect, decode, request
from libs.devstack.stack import Stack
from libs.media.testpattern import PatternTrack
from proto import ingest as pi
from proto.base import Lookup
from tests.conftest import assert_problem
from tests.integration.test_webrtc import broadcast, live_channel, publish, wait_live, watch


def udp_sockets(pid: int) -> int:
    """How many UDP sockets process `pid` holds (its socket fds found in /proc/net/udp and udp6)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            inodes.update(line.split()[9] for line in list(f)[1:])
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


async def started_events(stack: Stack, channel: str) -> list[pi.SessionStarted]:
    """Every stream.session.started event of `channel` in the STREAM stream."""
    nc = await connect(stack.nats_url, name="test-events")
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            pi.SessionStarted.subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        events = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            event = decode(msg.data, pi.SessionStarted)
            if event.channel_name == channel:
                events.append(event)
        return events
    finally:
        await nc.drain()


async def offer_until_accepted(
    client: httpx.AsyncClient, name: str, key: str
) -> tuple[RTCPeerConnection, str]:
    """WHIP with a new peer, repeating the POST while ingest still sees the old connection as live (409)."""
    pc = RTCPeerConnection()
    pc.addTrack(PatternTrack())
    await pc.setLocalDescription(await pc.createOffer())
    deadline = time.monotonic() + 10
    while True:
        r = await client.post(
            f"/api/v1/channels/{name}/whip",
            content=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
        )
        if r.status_code != 409 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return pc, r.headers["location"]


async def test_dropped_broadcaster_resumes_the_same_session(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """A broadcaster whose connection dies (no DELETE) and who comes back within the grace period
    continues the same session: same start time, one started event, the channel never went offline."""
    name, key = live_channel(api, make_member)
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        first, _pattern, first_location = await broadcast(client, name, key)
        await wait_live(client, name, True)
        live_since = (await client.get(f"/api/v1/channels/{name}")).json()["live_since"]
        await first.close()  # gone without DELETE
        second, location = await offer_until_accepted(client, name, key)
        assert location != first_location
        for _ in range(100):
            if second.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        assert second.connectionState == "connected"
        await asyncio.sleep(1.5)  # past the first second of media, when a new session would announce
        channel = (await client.get(f"/api/v1/channels/{name}")).json()
        assert channel["live"] is True
        assert channel["live_since"] == live_since
        events = await started_events(stack, name)
        assert len(events) == 1, events
        assert_problem(await client.delete(first_location), 404)
        assert (await client.delete(location)).status_code == 200
        await second.close()
        await wait_live(client, name, False)


def _h264_only_viewer() -> RTCPeerConnection:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType in ("video/H264", "video/rtx")])
    return pc


async def _settled(pids: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        now = {name: udp_sockets(pid) for name, pid in pids.items()}
        if all(now[n] <= before[n] for n in now) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


async def test_refused_offers_and_deletes_leak_no_session_or_port(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """After a refused viewer codec, a refused second broadcaster and DELETEs, ingest and edge hold as
    many UDP sockets as before, the channel is offline and has no viewer."""
    pids = {n: stack.procs[n].process.pid for n in ("ingest", "edge")}  # type: ignore[union-attr]
    before = await _settled(pids, {n: 1 << 30 for n in pids})
    name, key = live_channel(api, make_member)
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        source, _pattern, whip_location = await broadcast(client, name, key)
        await wait_live(client, name, True)
        viewer, _tracks, whep_location = await watch(client, name)
        during = {n: udp_sockets(pid) for n, pid in pids.items()}
        assert during["ingest"] > before["ingest"], (before, during)
        assert during["edge"] > before["edge"], (before, during)
        refused = _h264_only_viewer()
        await refused.setLocalDescription(await refused.createOffer())
        r = await client.post(
            f"/api/v1/channels/{name}/whep",
            content=refused.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        assert_problem(r, 422, "vp8")
        second = RTCPeerConnection()
        second.addTrack(PatternTrack())
        await second.setLocalDescription(await second.createOffer())
        r = await client.post(
            f"/api/v1/channels/{name}/whip",
            content=second.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
        )
        assert_problem(r, 409, "already live")
        assert (await client.delete(whep_location)).status_code == 200
        assert (await client.delete(whip_location)).status_code == 200
        for pc in (viewer, source, refused, second):
            await pc.close()
        await wait_live(client, name, False)
        assert (await client.get(f"/api/v1/channels/{name}/viewers")).json()["viewers"] == 0
    after = await _settled(pids, before)
    assert all(after[n] <= before[n] for n in after), (before, after)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_session_started_reports_the_broadcast_resolution(
    stack: Stack, api: httpx.Client, make_member, codec: str
) -> None:  # type: ignore[no-untyped-def]
    """stream.session.started carries the picture size read from the first keyframe, for H.264 (its SPS)
    as for VP8 (its frame header)."""
    name, key = live_channel(api, make_member)
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(PatternTrack(320, 240), direction="sendonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType in (f"video/{codec}", "video/rtx")])
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        location = await publish(client, name, key, pc)
        deadline = time.monotonic() + 15
        while not (events := await started_events(stack, name)) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert len(events) == 1, events
        assert (events[0].video_codec, events[0].width, events[0].height) == (codec.lower(), 320, 240)
        live = await lookup_session(stack, events[0].session_id)
        assert (live.version, live.ended_at, live.width, live.height) == (1, None, 320, 240)
        assert (await client.delete(location)).status_code == 200
        await pc.close()
        ended = await lookup_session(stack, events[0].session_id)
        assert ended.version == 2
        assert ended.ended_at is not None
        assert (ended.channel_name, ended.video_codec) == (name, codec.lower())


async def lookup_session(stack: Stack, session_id: str) -> pi.LiveSession:
    """What ingest answers a service whose copy lacks the session."""
    nc = await connect(stack.nats_url, name="test-lookup")
    try:
        return await request(nc, pi.LOOKUP_SESSION, Lookup(by="Session_ID", value=session_id))
    finally:
        await nc.drain()


async def test_lookup_of_an_unknown_session_names_it(stack: Stack) -> None:
    """ingest.lookup_session of a session ingest never had is NotFound, naming the session."""
    nc = await connect(stack.nats_url, name="test-lookup")
    try:
        with pytest.raises(NotFound, match="nosuchsession") as err:
            await request(nc, pi.LOOKUP_SESSION, Lookup(by="session_id", value="nosuchsession"))
        assert err.value.code == "session_not_found"
    finally:
        await nc.drain()


async def test_viewers_of_an_ended_broadcast_leave_without_a_delete(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """When the broadcaster ends the session, the edge lets its viewers go: none counts any more and the
    viewer's WHEP address is gone, without the viewer sending DELETE."""
    name, key = live_channel(api, make_member)
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        source, _pattern, whip_location = await broadcast(client, name, key)
        await wait_live(client, name, True)
        viewer, _tracks, whep_location = await watch(client, name)
        assert (await client.get(f"/api/v1/channels/{name}/viewers")).json()["viewers"] == 1
        assert (await client.delete(whip_location)).status_code == 200
        await source.close()
        deadline = time.monotonic() + 10
        while (await client.get(f"/api/v1/channels/{name}/viewers")).json()["viewers"]:
            assert time.monotonic() < deadline, "the viewer of the ended session still counts"
            await asyncio.sleep(0.2)
        while (r := await client.delete(whep_location)).status_code != 404:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.2)
        await viewer.close()
