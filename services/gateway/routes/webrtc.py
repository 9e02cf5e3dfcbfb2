"""WHIP (RFC 9725) and WHEP signalling relayed over NATS to an ingest or edge process; the Location
names that process, so PATCH and DELETE reach the peer connection they are about. Media never passes here."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, delete, get, patch, post, route

from libs.bus import BadRequest, NotFound, ServiceUnavailable, Unauthorized
from proto import edge as pe
from proto import ingest as pi
from services.gateway.backend import Backend

__all__ = ["ROUTES"]

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
_PROCESS = re.compile(r"^[0-9a-f]{12}$")
_RESOURCE = re.compile(r"^[A-Za-z0-9_-]{32}$")
OFFER_TIMEOUT = 15.0


async def _body(request: Request[Any, Any, Any], *types: str) -> str:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in types:
        raise BadRequest(
            f'Content-Type must be {" or ".join(types)}, not "{kind}"', code="unsupported_media_type"
        )
    raw = await request.body()
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", code="invalid_sdp") from None


def _check_location(process_id: str, resource: str, what: str) -> None:
    if not _PROCESS.match(process_id) or not _RESOURCE.match(resource):
        raise NotFound(f"no {what} session at this address", code="session_not_found")


def _answer(sdp: str, location: str, links: list[str]) -> Response[bytes]:
    headers = {"Location": location, "ETag": f'"{location.rsplit("/", 1)[1][:16]}"'}
    if links:
        headers["Link"] = ", ".join(links)
    return Response(sdp.encode(), status_code=201, media_type=SDP, headers=headers)


async def _gone_process(call: Any, what: str) -> Any:
    try:
        return await call
    except ServiceUnavailable as exc:
        if exc.code == "no_responders":
            raise NotFound(f"no {what} session at this address", code="session_not_found") from None
        raise


@post("/api/v1/channels/{name:str}/whip", tags=["webrtc"], status_code=201)
async def whip_offer(request: Request[Any, Any, Any], backend: Backend, name: str) -> Response[bytes]:
    """Start (or resume) a broadcast: SDP offer in, answer out; Authorization: Bearer <stream key>."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized('WHIP needs "Authorization: Bearer <stream key>"', code="missing_stream_key")
    sdp = await _body(request, SDP)
    reply = await backend.call(
        pi.OFFER, pi.WhipOffer(channel_name=name, stream_key=key.strip(), sdp=sdp), timeout=OFFER_TIMEOUT
    )
    return _answer(reply.sdp, f"/api/v1/whip/{reply.process_id}/{reply.resource}", reply.ice_links)


@patch("/api/v1/whip/{process_id:str}/{resource:str}", tags=["webrtc"], status_code=204)
async def whip_patch(
    request: Request[Any, Any, Any], backend: Backend, process_id: str, resource: str
) -> None:
    """Trickle ICE candidates for a broadcast (the session's secret address is its authorization)."""
    _check_location(process_id, resource, "WHIP")
    fragment = await _body(request, TRICKLE)
    call = backend.call(pi.patch_rpc(process_id), pi.SessionPatch(resource=resource, fragment=fragment))
    await _gone_process(call, "WHIP")


@delete("/api/v1/whip/{process_id:str}/{resource:str}", tags=["webrtc"], status_code=200)
async def whip_delete(backend: Backend, process_id: str, resource: str) -> pi.SessionClosed:
    """End a broadcast now."""
    _check_location(process_id, resource, "WHIP")
    call = backend.call(pi.delete_rpc(process_id), pi.SessionRef(resource=resource))
    result: pi.SessionClosed = await _gone_process(call, "WHIP")
    return result


@post("/api/v1/channels/{name:str}/whep", tags=["webrtc"], status_code=201)
async def whep_offer(request: Request[Any, Any, Any], backend: Backend, name: str) -> Response[bytes]:
    """Watch a live channel: SDP offer in, answer out."""
    sdp = await _body(request, SDP)
    reply = await backend.call(pe.OFFER, pe.WhepOffer(channel_name=name, sdp=sdp), timeout=OFFER_TIMEOUT)
    return _answer(reply.sdp, f"/api/v1/whep/{reply.process_id}/{reply.resource}", reply.ice_links)


@delete("/api/v1/whep/{process_id:str}/{resource:str}", tags=["webrtc"], status_code=200)
async def whep_delete(backend: Backend, process_id: str, resource: str) -> pe.ViewerLeftReply:
    """Stop watching."""
    _check_location(process_id, resource, "WHEP")
    call = backend.call(pe.delete_rpc(process_id), pe.ViewerRef(resource=resource))
    result: pe.ViewerLeftReply = await _gone_process(call, "WHEP")
    return result


@get("/api/v1/channels/{name:str}/viewers", tags=["webrtc"])
async def viewer_count(backend: Backend, name: str) -> pe.ViewerCount:
    """How many watch the channel now."""
    return await backend.call(pe.VIEWERS, pe.CountViewers(channel_name=name))


def _options(allow: str, **accept: str) -> Response[None]:
    """RFC 9725 OPTIONS: the methods and body types a WHIP/WHEP address takes. A CORS preflight (with
    `Origin`) is answered before this by the gateway's CORS layer, for the origins in CPC_CORS_ORIGINS."""
    headers = {"Allow": allow, **{k.replace("_", "-").title(): v for k, v in accept.items()}}
    return Response(None, status_code=204, headers=headers)


@route(
    ["/api/v1/channels/{name:str}/whip", "/api/v1/channels/{name:str}/whep"],
    http_method="OPTIONS",
    tags=["webrtc"],
    include_in_schema=False,
)
async def offer_options(name: str) -> Response[None]:
    """What the WHIP and WHEP endpoints accept: an SDP offer."""
    return _options("OPTIONS, POST", accept_post=SDP)


@route(
    "/api/v1/whip/{process_id:str}/{resource:str}",
    http_method="OPTIONS",
    tags=["webrtc"],
    include_in_schema=False,
)
async def whip_session_options(process_id: str, resource: str) -> Response[None]:
    """What a WHIP session accepts (trickle ICE fragments)."""
    return _options("DELETE, OPTIONS, PATCH", accept_patch=TRICKLE)


@route(
    "/api/v1/whep/{process_id:str}/{resource:str}",
    http_method="OPTIONS",
    tags=["webrtc"],
    include_in_schema=False,
)
async def whep_session_options(process_id: str, resource: str) -> Response[None]:
    """What a WHEP session accepts."""
    return _options("DELETE, OPTIONS")


@post("/api/v1/operator/channels/{name:str}/session", tags=["operator"], status_code=201)
async def operator_start(backend: Backend, name: str, is_operator: bool) -> pi.SessionState:
    """Start a session without media (demos, tests); same rules as a broadcaster's."""
    return await backend.call(pi.OPERATOR_START, pi.OperatorSession(channel_name=name))


@delete("/api/v1/operator/channels/{name:str}/session", tags=["operator"], status_code=200)
async def operator_end(backend: Backend, name: str, is_operator: bool, drop: bool = False) -> pi.SessionState:
    """End the channel's session now, or with `?drop=true` as a lost connection (after the grace period)."""
    return await backend.call(pi.OPERATOR_END, pi.OperatorSession(channel_name=name, drop=drop))


# OPTIONS handlers first: Litestar adds its own OPTIONS to a path that has none when first registered.
ROUTES: list[Any] = [
    offer_options,
    whip_session_options,
    whep_session_options,
    whip_offer,
    whip_patch,
    whip_delete,
    whep_offer,
    whep_delete,
    viewer_count,
    operator_start,
    operator_end,
]
