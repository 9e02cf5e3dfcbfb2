"""DASH playback out of the transcoder's bucket (`/live/...`, `/vod/...`: public, cacheable, CORS-open like
any CDN origin), the channel's playback state, and its recordings."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, delete, get
from litestar.di import Provide
from nats.js.errors import ObjectNotFoundError

from libs.bus import NotFound
from proto import transcode as pt
from services.gateway.auth import AuthUser, current_user
from services.gateway.backend import Backend

__all__ = ["ROUTES"]

SIGNED_IN = {"user": Provide(current_user)}
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


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def _object(request: Request[Any, Any, Any], name: str, what: str) -> bytes:
    bucket = await _backend(request).object_store(pt.BUCKET)
    try:
        result = await bucket.get(name)
    except ObjectNotFoundError:
        raise NotFound(f"{what} does not exist (or is no longer kept)", code="media_not_found") from None
    return bytes(result.data or b"")


def _check(channel: str, session: str = "s", track: str = "a", file: str = "init.webm") -> None:
    if not _CHANNEL.match(channel):
        raise NotFound(f'no media for channel "{channel[:64]}"', code="media_not_found")
    if not (_SESSION.match(session) and _TRACK.match(track) and _FILE.match(file)):
        raise NotFound(f'no segment "{track[:8]}/{file[:32]}" in this stream', code="media_not_found")


def _media(data: bytes, media_type: str, cache: str) -> Response[bytes]:
    return Response(data, media_type=media_type, headers={"Cache-Control": cache, **CORS})


@get("/live/{channel:str}/manifest.mpd", tags=["dash"], include_in_schema=True)
async def live_manifest(request: Request[Any, Any, Any], channel: str) -> Response[bytes]:
    """The live DASH manifest of a channel while it is transcoded."""
    _check(channel)
    data = await _object(request, pt.live_manifest_object(channel), f'a live DASH stream of "{channel}"')
    return _media(data, MANIFEST_TYPE, LIVE_MANIFEST_CACHE)


async def _segment(request: Request[Any, Any, Any], channel: str, session: str, track: str, file: str) -> Any:
    _check(channel, session, track, file)
    data = await _object(request, pt.media_object(channel, session, track, file), f'segment "{track}/{file}"')
    return _media(data, "audio/webm" if track == "a" else "video/webm", IMMUTABLE)


@get("/live/{channel:str}/{session:str}/{track:str}/{file:str}", tags=["dash"])
async def live_segment(
    request: Request[Any, Any, Any], channel: str, session: str, track: str, file: str
) -> Response[bytes]:
    """An init or media segment of a live stream (immutable)."""
    result: Response[bytes] = await _segment(request, channel, session, track, file)
    return result


@get("/vod/{channel:str}/{session:str}/manifest.mpd", tags=["dash"])
async def vod_manifest(request: Request[Any, Any, Any], channel: str, session: str) -> Response[bytes]:
    """The static DASH manifest of a recording."""
    _check(channel, session)
    data = await _object(request, pt.vod_manifest_object(channel, session), f'recording "{session}"')
    return _media(data, MANIFEST_TYPE, VOD_MANIFEST_CACHE)


@get("/vod/{channel:str}/{session:str}/{track:str}/{file:str}", tags=["dash"])
async def vod_segment(
    request: Request[Any, Any, Any], channel: str, session: str, track: str, file: str
) -> Response[bytes]:
    """An init or media segment of a recording (immutable)."""
    result: Response[bytes] = await _segment(request, channel, session, track, file)
    return result


@get("/api/v1/channels/{name:str}/playback", tags=["dash"])
async def playback(request: Request[Any, Any, Any], name: str) -> pt.Playback:
    """Whether the channel is live, whether a transcoder took it, and its DASH manifest when there is one."""
    return await _backend(request).call(pt.PLAYBACK, pt.GetPlayback(channel_name=name))


@get("/api/v1/channels/{name:str}/recordings", tags=["dash"])
async def recordings(request: Request[Any, Any, Any], name: str, limit: int = 20) -> pt.RecordingList:
    """A channel's recordings, newest first, each with its static manifest."""
    return await _backend(request).call(pt.LIST_RECORDINGS, pt.ListRecordings(channel_name=name, limit=limit))


@delete("/api/v1/channels/{name:str}/recordings/{recording_id:str}", dependencies=SIGNED_IN, tags=["dash"],
        status_code=200)  # fmt: skip
async def delete_recording(
    request: Request[Any, Any, Any], name: str, recording_id: str, user: AuthUser
) -> pt.Recording:
    """The channel owner deletes a recording and its media."""
    req = pt.DeleteRecording(channel_name=name, recording_id=recording_id, actor_id=user.id)
    return await _backend(request).call(pt.DELETE_RECORDING, req)


ROUTES = [
    live_manifest,
    live_segment,
    vod_manifest,
    vod_segment,
    playback,
    recordings,
    delete_recording,
]
