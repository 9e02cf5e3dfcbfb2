"""DASH playback out of the transcoder's bucket (`/live/...`, `/vod/...`: public, cacheable, CORS-open like
any CDN origin), the channel's playback state, and its recordings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from litestar import Response, delete, get
from litestar.response import Stream
from nats.js.errors import NotFoundError as JsNotFound
from nats.js.errors import ObjectNotFoundError

from libs.bus import NotFound, ServiceUnavailable
from proto import transcode as pt
from services.gateway.auth import AuthUser
from services.gateway.backend import Backend
from services.gateway.chunks import open_segment

__all__ = ["ROUTES"]

_CHANNEL = re.compile(r"^[a-z0-9_]{1,40}$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TRACK = re.compile(r"^(v[0-9]{1,2}|a)$")
_FILE = re.compile(r"^(init|[0-9]{1,9})\.webm$")
MANIFEST_TYPE = "application/dash+xml"
IMMUTABLE = "public, max-age=31536000, immutable"
# About a segment: a player polls the live manifest (minimumUpdatePeriod) and every cache stays close to it.
LIVE_MANIFEST_CACHE = "public, max-age=1"
VOD_MANIFEST_CACHE = "public, max-age=60"
CORS = {"Access-Control-Allow-Origin": "*"}
READ_ATTEMPTS = 4
# A manifest is a few kB: a read that takes longer is one that lost a race with a rewrite (see _object).
MANIFEST_READ_SECONDS = 1.0


class _Replaced(Exception):
    """The object was replaced between reading its info and its chunk."""


async def _read(js: Any, bucket: Any, name: str) -> bytes:
    info = await bucket.get_info(name)  # ObjectNotFoundError when there is none
    if not info.size:
        return b""
    if info.chunks != 1:
        result = await bucket.get(name)
        return bytes(result.data or b"")
    # One chunk (every manifest, small segments): fetch it by subject in one request, where nats-py's get
    # would create and delete a consumer per read. A rewrite purges the chunk the info named: read again.
    try:
        msg = await js.get_last_msg(f"OBJ_{pt.BUCKET}", f"$O.{pt.BUCKET}.C.{info.nuid}")
    except JsNotFound:
        raise _Replaced from None
    data = bytes(msg.data or b"")
    digest = info.digest.split("=", 1)[1] if info.digest else ""
    if hashlib.sha256(data).digest() != base64.urlsafe_b64decode(digest):
        raise _Replaced
    return data


async def _object(backend: Backend, name: str, what: str, *, seconds: float = 10.0) -> bytes:
    bucket = await backend.object_store(pt.BUCKET)
    for _attempt in range(READ_ATTEMPTS):
        try:
            return await asyncio.wait_for(_read(backend.js, bucket, name), seconds)
        except ObjectNotFoundError:
            raise NotFound(f"{what} does not exist (or is no longer kept)", code="media_not_found") from None
        except (_Replaced, TimeoutError):
            # Replaced mid-read. (nats-py 2.x reads a many-chunk object with no deadline: when the old
            # chunks are purged under it, it waits forever; the deadline ends that.) The info now names the
            # new chunks.
            continue
    raise ServiceUnavailable(f"{what} could not be read, try again", code="media_unavailable", retry_after=1)


def _check(channel: str, session: str = "s", track: str = "a", file: str = "init.webm") -> None:
    if not _CHANNEL.match(channel):
        raise NotFound(f'no media for channel "{channel[:64]}"', code="media_not_found")
    if not (_SESSION.match(session) and _TRACK.match(track) and _FILE.match(file)):
        raise NotFound(f'no segment "{track[:8]}/{file[:32]}" in this stream', code="media_not_found")


def _media(data: bytes, media_type: str, cache: str) -> Response[bytes]:
    return Response(data, media_type=media_type, headers={"Cache-Control": cache, **CORS})


@get("/live/time", tags=["dash"], sync_to_thread=False)
def live_clock() -> Response[bytes]:
    """The server's UTC time in ISO 8601 with milliseconds: the live manifests' UTCTiming source
    (urn:mpeg:dash:utc:http-iso:2014), so players place the live edge by the server's clock, not theirs."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Response(now.encode(), media_type="text/plain", headers={"Cache-Control": "no-store", **CORS})


@get("/live/{channel:str}/manifest.mpd", tags=["dash"], include_in_schema=True)
async def live_manifest(backend: Backend, channel: str) -> Response[bytes]:
    """The live DASH manifest of a channel while it is transcoded."""
    _check(channel)
    what = f'a live DASH stream of "{channel}"'
    data = await _object(backend, pt.live_manifest_object(channel), what, seconds=MANIFEST_READ_SECONDS)
    return _media(data, MANIFEST_TYPE, LIVE_MANIFEST_CACHE)


@get("/live/{channel:str}/manifest-ll.mpd", tags=["dash"])
async def live_manifest_ll(backend: Backend, channel: str) -> Response[bytes]:
    """The low-latency live DASH manifest: it lists the segment being made, whose chunks stream as they
    come (availabilityTimeOffset, ServiceDescription latency target)."""
    _check(channel)
    name = pt.ll_manifest_object(channel)
    what = f'a low-latency live DASH stream of "{channel}"'
    data = await _object(backend, name, what, seconds=MANIFEST_READ_SECONDS)
    return _media(data, MANIFEST_TYPE, LIVE_MANIFEST_CACHE)


async def _segment(backend: Backend, channel: str, session: str, track: str, file: str, *, live: bool) -> Any:
    _check(channel, session, track, file)
    media_type = "audio/webm" if track == "a" else "video/webm"
    try:
        data = await _object(
            backend, pt.media_object(channel, session, track, file), f'segment "{track}/{file}"'
        )
    except NotFound:
        if not live or file.startswith("init"):
            raise
        # Still being made: its chunks so far, then each one as the transcoder publishes it. The bytes are
        # those the stored segment will have, so the response is as immutable as a stored one.
        body = await open_segment(backend.js, session, track, int(file.split(".")[0]))
        if body is None:
            raise
        return Stream(body, media_type=media_type, headers={"Cache-Control": IMMUTABLE, **CORS})
    return _media(data, media_type, IMMUTABLE)


@get("/live/{channel:str}/{session:str}/{track:str}/{file:str}", tags=["dash"])
async def live_segment(
    backend: Backend, channel: str, session: str, track: str, file: str
) -> Response[bytes]:
    """An init or media segment of a live stream (immutable); one still being made streams as it grows."""
    result: Response[bytes] = await _segment(backend, channel, session, track, file, live=True)
    return result


@get("/vod/{channel:str}/{session:str}/manifest.mpd", tags=["dash"])
async def vod_manifest(backend: Backend, channel: str, session: str) -> Response[bytes]:
    """The static DASH manifest of a recording."""
    _check(channel, session)
    data = await _object(backend, pt.vod_manifest_object(channel, session), f'recording "{session}"')
    return _media(data, MANIFEST_TYPE, VOD_MANIFEST_CACHE)


@get("/vod/{channel:str}/{session:str}/{track:str}/{file:str}", tags=["dash"])
async def vod_segment(backend: Backend, channel: str, session: str, track: str, file: str) -> Response[bytes]:
    """An init or media segment of a recording (immutable)."""
    result: Response[bytes] = await _segment(backend, channel, session, track, file, live=False)
    return result


@get("/api/v1/channels/{name:str}/playback", tags=["dash"])
async def playback(backend: Backend, name: str) -> pt.Playback:
    """Whether the channel is live, whether a transcoder took it, and its DASH manifest when there is one."""
    return await backend.call(pt.PLAYBACK, pt.GetPlayback(channel_name=name))


@get("/api/v1/channels/{name:str}/recordings", tags=["dash"])
async def recordings(backend: Backend, name: str, limit: int = 20) -> pt.RecordingList:
    """A channel's recordings, newest first, each with its static manifest."""
    return await backend.call(pt.LIST_RECORDINGS, pt.ListRecordings(channel_name=name, limit=limit))


@delete("/api/v1/channels/{name:str}/recordings/{recording_id:str}", tags=["dash"],
        status_code=200)  # fmt: skip
async def delete_recording(backend: Backend, name: str, recording_id: str, user: AuthUser) -> pt.Recording:
    """The channel owner deletes a recording and its media."""
    req = pt.DeleteRecording(channel_name=name, recording_id=recording_id, actor_id=user.id)
    return await backend.call(pt.DELETE_RECORDING, req)


ROUTES = [
    live_clock,
    live_manifest,
    live_manifest_ll,
    live_segment,
    vod_manifest,
    vod_segment,
    playback,
    recordings,
    delete_recording,
]
