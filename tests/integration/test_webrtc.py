"""WHIP ingest and WHEP playback through the gateway with real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from libs.devstack.stack import OPERATOR_TOKEN, Stack
from libs.media.ice import IceSettings, configure_ice
from libs.media.testpattern import PatternTrack, read_marks
from tests.conftest import assert_problem, unique_name

configure_ice(IceSettings(hosts=["127.0.0.1"]))


def live_channel(api: httpx.Client, make_member) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A new channel and its stream key."""
    member = make_member()
    name = unique_name("c")
    r = api.post(
        "/api/v1/channels",
        json={"name": name, "title": "Live test", "category": "Art"},
        headers=member.headers,
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/channels/{name}/stream-key", headers=member.headers)
    assert r.status_code == 201, r.text
    return name, r.json()["stream_key"]


async def broadcast(
    client: httpx.AsyncClient, name: str, key: str
) -> tuple[RTCPeerConnection, PatternTrack, str]:
    pc = RTCPeerConnection()
    track = PatternTrack()
    pc.addTrack(track)
    pc.addTrack(AudioStreamTrack())
    return pc, track, await publish(client, name, key, pc)


async def publish(client: httpx.AsyncClient, name: str, key: str, pc: RTCPeerConnection) -> str:
    """WHIP: offer `pc`'s tracks to the channel, apply the answer; the session's Location."""
    await pc.setLocalDescription(await pc.createOffer())
    r = await client.post(
        f"/api/v1/channels/{name}/whip",
        content=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    location: str = r.headers["location"]
    return location


async def watch(
    client: httpx.AsyncClient, name: str
) -> tuple[RTCPeerConnection, dict[str, asyncio.Future], str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks: dict[str, asyncio.Future] = {"video": asyncio.Future(), "audio": asyncio.Future()}

    @pc.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        tracks[track.kind].set_result(track)

    await pc.setLocalDescription(await pc.createOffer())
    # The edge learns of a session from its stream.session.started event, in its own time: the channel
    # may say live a moment before the edge does, so a viewer that early is told not_live and retries.
    deadline = time.monotonic() + 15
    while True:
        r = await client.post(
            f"/api/v1/channels/{name}/whep",
            content=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        if r.status_code != 404 or r.json()["code"] != "not_live" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return pc, tracks, r.headers["location"]


async def wait_live(client: httpx.AsyncClient, name: str, live: bool, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get(f"/api/v1/channels/{name}")
        if r.json()["live"] is live:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"channel {name} never became live={live}")


async def read_counters(track, count: int) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
    """The counters of the next `count` intact pictures, and how many damaged ones came in between."""
    counters, damaged = [], 0
    while len(counters) < count:
        marks = read_marks(await asyncio.wait_for(track.recv(), 10))
        if marks is None:
            damaged += 1
        else:
            counters.append(marks[0])
    return counters, damaged


async def test_two_viewers_decode_the_broadcast_in_order(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """An aiortc broadcaster's marked pattern and Opus reach two WHEP viewers forwarded, decodable, in order."""
    name, key = live_channel(api, make_member)
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        source, pattern, whip_location = await broadcast(client, name, key)
        await wait_live(client, name, True)
        viewers = [await watch(client, name) for _ in range(2)]
        r = await client.get(f"/api/v1/channels/{name}/viewers")
        assert r.json()["viewers"] == 2
        for _pc, tracks, _loc in viewers:
            video = await asyncio.wait_for(tracks["video"], 10)
            counters, damaged = await read_counters(video, 30)
            # Loopback UDP can still lose a packet on a loaded machine: a picture decoded after that is
            # damaged (and recognised as such); the rest must be the broadcaster's, in order.
            assert damaged <= 15, (damaged, counters)
            assert counters == sorted(counters), counters
            assert len(set(counters)) == 30, counters
            assert counters[-1] < pattern.counter
            # Forwarded frame by frame: at most an occasional gap, never a reordering.
            assert counters[-1] - counters[0] < 45 + damaged, counters
            audio = await asyncio.wait_for(tracks["audio"], 10)
            assert (await asyncio.wait_for(audio.recv(), 5)).sample_rate == 48000
        for pc, _tracks, location in viewers:
            assert (await client.delete(location)).status_code == 200
            await pc.close()
        r = await client.get(f"/api/v1/channels/{name}/viewers")
        assert r.json()["viewers"] == 0
        assert (await client.delete(whip_location)).status_code == 200
        await source.close()
        await wait_live(client, name, False)


async def test_whip_refuses_bad_keys_and_second_broadcaster(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """Missing or wrong keys get 401, a second broadcaster 409, and someone else's session 404."""
    name, key = live_channel(api, make_member)
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        pc = RTCPeerConnection()
        pc.addTrack(PatternTrack())
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        sdp_header = {"Content-Type": "application/sdp"}
        r = await client.post(f"/api/v1/channels/{name}/whip", content=offer, headers=sdp_header)
        assert_problem(r, 401, "stream key")
        r = await client.post(
            f"/api/v1/channels/{name}/whip",
            content=offer,
            headers={**sdp_header, "Authorization": "Bearer nope"},
        )
        assert r.status_code == 401, r.text
        await pc.close()
        source, _pattern, location = await broadcast(client, name, key)
        second = RTCPeerConnection()
        second.addTrack(PatternTrack())
        await second.setLocalDescription(await second.createOffer())
        r = await client.post(
            f"/api/v1/channels/{name}/whip",
            content=second.localDescription.sdp,
            headers={**sdp_header, "Authorization": f"Bearer {key}"},
        )
        assert_problem(r, 409, "already live")
        await second.close()
        prefix, _, resource = location.rpartition("/")
        assert_problem(await client.delete(f"{prefix}/{'A' * 32}"), 404, "no WHIP session")
        assert_problem(await client.delete(f"/api/v1/whip/000000000000/{resource}"), 404, "no WHIP session")
        assert_problem(await client.delete("/api/v1/whip/x/y"), 404)
        r = await client.patch(
            location,
            content="a=candidate:1 1 udp 1 1.2.3.4 9 typ host",
            headers={"Content-Type": "text/plain"},
        )
        assert_problem(r, 400, "Content-Type")
        assert (await client.delete(location)).status_code == 200
        assert_problem(await client.delete(location), 404)
        await source.close()


NO_MEDIA = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
PCMU_ONLY = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.mark.parametrize(
    ("body", "status", "word"),
    [
        ("hello", 400, "not SDP"),
        ("v=0\r\nm=video x\r\n", 400, "not valid SDP"),
        (NO_MEDIA, 400, "no audio or video"),
        (PCMU_ONLY, 422, "no supported audio codec"),
        ("", 400, "empty"),
    ],
)
def test_whip_bad_offers_get_clear_problems(
    api: httpx.Client, make_member, body: str, status: int, word: str
) -> None:  # type: ignore[no-untyped-def]
    """Malformed, empty, media-less and unsupported offers are refused with a problem naming the flaw."""
    name, key = live_channel(api, make_member)
    r = api.post(
        f"/api/v1/channels/{name}/whip",
        content=body,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
    )
    assert_problem(r, status, word)
    assert api.get(f"/api/v1/channels/{name}").json()["live"] is False


def test_oversized_offer_is_refused(api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    name, key = live_channel(api, make_member)
    r = api.post(
        f"/api/v1/channels/{name}/whip",
        content="v=0\r\n" + "a=x\r\n" * 40000,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
    )
    assert_problem(r, 413)


def test_operator_session_lifecycle(api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    """The operator API starts and ends a session through ingest; the channel follows."""
    name, _key = live_channel(api, make_member)
    headers = {"X-Operator-Token": OPERATOR_TOKEN}
    r = api.post(f"/api/v1/operator/channels/{name}/session", headers=headers)
    assert r.status_code == 201, r.text
    session_id = r.json()["session_id"]
    assert (
        api.post(f"/api/v1/operator/channels/{name}/session", headers=headers).json()["session_id"]
        == session_id
    )
    assert_problem(api.post(f"/api/v1/operator/channels/{name}/session"), 401)
    deadline = time.monotonic() + 10
    while not api.get(f"/api/v1/channels/{name}").json()["live"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = api.delete(f"/api/v1/operator/channels/{name}/session", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "ended"
    assert_problem(
        api.delete(f"/api/v1/operator/channels/{name}/session", headers=headers), 404, "no live session"
    )


def test_whip_and_whep_answer_options(api: httpx.Client) -> None:
    """OPTIONS names the methods and body types (RFC 9725 Accept-Post / Accept-Patch)."""
    r = api.options("/api/v1/channels/anything/whip")
    assert r.status_code == 204, r.text
    assert r.headers["accept-post"] == "application/sdp"
    assert "POST" in r.headers["allow"]
    assert api.options("/api/v1/channels/anything/whep").headers["accept-post"] == "application/sdp"
    r = api.options(f"/api/v1/whip/000000000000/{'A' * 32}")
    assert r.headers["accept-patch"] == "application/trickle-ice-sdpfrag"
    assert "DELETE" in api.options(f"/api/v1/whep/000000000000/{'A' * 32}").headers["allow"]


def test_cors_preflight_for_whip_and_whep(cors_gateway) -> None:  # type: ignore[no-untyped-def]
    """A browser page of an allowed origin may POST offers with a stream key; other origins may not."""
    preflight = {
        "Origin": cors_gateway.origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for path in ("/api/v1/channels/x/whip", "/api/v1/channels/x/whep"):
        r = httpx.options(cors_gateway.url + path, headers=preflight)
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == cors_gateway.origin
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = httpx.options(
        cors_gateway.url + f"/api/v1/whip/000000000000/{'A' * 32}",
        headers={
            **preflight,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "if-match, content-type",
        },
    )
    assert r.status_code == 204, r.text
    r = httpx.options(
        cors_gateway.url + "/api/v1/channels/x/whip", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    # The actual (refused) POST still carries the CORS headers, so the page can read the problem.
    r = httpx.post(
        cors_gateway.url + "/api/v1/channels/x/whip",
        content="v=0",
        headers={"Origin": cors_gateway.origin, "Content-Type": "application/sdp"},
    )
    assert_problem(r, 401, "stream key")
    assert r.headers["access-control-allow-origin"] == cors_gateway.origin
    assert "location" in r.headers["access-control-expose-headers"].lower()
