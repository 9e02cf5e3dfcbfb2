"""Checks of a WHIP or WHEP offer before it reaches aiortc, so bad input gets a clear 4xx."""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from libs.bus import BadRequest, Unprocessable

__all__ = ["MAX_SDP_BYTES", "MEDIA_CODECS", "check_offer"]

MAX_SDP_BYTES = 64 * 1024
# What we forward per kind (lower case); AV1 joins the video list with its issue.
MEDIA_CODECS: dict[str, tuple[str, ...]] = {"video": ("vp8", "h264"), "audio": ("opus",)}


def check_offer(sdp: str) -> dict[str, list[str]]:
    """The offered forwardable codecs per media kind, in the offer's order; raises a 4xx naming the flaw."""
    if not sdp.strip():
        raise BadRequest("the offer is empty: send an SDP offer as application/sdp", code="invalid_sdp")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise BadRequest(f"the offer is larger than {MAX_SDP_BYTES} bytes", code="invalid_sdp")
    if not sdp.lstrip().startswith("v=0"):
        raise BadRequest('the offer is not SDP: it must start with "v=0"', code="invalid_sdp")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError...
        raise BadRequest(
            f"the offer is not valid SDP: {type(exc).__name__} {exc}", code="invalid_sdp"
        ) from None
    media = [m for m in parsed.media if m.kind in MEDIA_CODECS]
    if not media:
        raise BadRequest("the offer has no audio or video section", code="no_media")
    found: dict[str, list[str]] = {}
    for m in media:
        if m.kind in found:
            raise BadRequest(f"the offer has more than one {m.kind} section", code="too_many_tracks")
        if (
            m.ice is None
            or not m.ice.usernameFragment
            or not m.ice.password
            or not m.dtls
            or not m.dtls.fingerprints
        ):
            raise BadRequest(
                f"the {m.kind} section lacks ICE credentials or a DTLS fingerprint", code="invalid_sdp"
            )
        offered = [c.name.lower() for c in m.rtp.codecs]
        usable = [c for c in offered if c in MEDIA_CODECS[m.kind]]
        if not usable:
            raise Unprocessable(
                f"no supported {m.kind} codec offered ({', '.join(offered) or 'none'}); "
                f"use one of {', '.join(MEDIA_CODECS[m.kind])}",
                code="unsupported_codec",
            )
        found[m.kind] = list(dict.fromkeys(usable))
    return found
