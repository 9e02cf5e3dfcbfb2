"""The session lifecycle rules of ingest: pure functions over a stored Session, no I/O. They decide whether
a start is new, a resume or refused, when an unfinished session is over, which events a change sends and
what a WHIP PATCH fragment asks for."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, TypeVar

import msgspec

from libs.bus import BadRequest, Conflict, Event, Unprocessable
from proto import ingest as pi

__all__ = [
    "Session",
    "StartDecision",
    "TrickleCandidates",
    "decide_start",
    "end_events",
    "is_expired",
    "kbps",
    "live_session",
    "session_state",
    "start_or_refuse",
    "started_event",
    "trickle_candidates",
]

StartDecision = Literal["new", "resume", "conflict", "same"]
S = TypeVar("S", bound=msgspec.Struct)


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """One stored session (a row of ingest.sessions). `kind` is whip (a broadcaster) or operator (no media);
    `state` is live, grace (its broadcaster dropped and may come back until `grace_until`) or ended;
    `resource` is the secret of its WHIP address, held by process `process_id`."""

    id: str
    channel_id: str
    channel_name: str
    kind: str
    state: str
    process_id: str = ""
    resource: str = ""
    announced: bool = False
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    bitrate_kbps: int = 0
    started_at: datetime
    last_seen: datetime
    grace_until: datetime | None = None
    ended_at: datetime | None = None

    @property
    def session_id(self) -> str:
        """The id, as the contract names it."""
        return self.id


def is_expired(s: Session, now: datetime, *, grace: timedelta, stale: timedelta) -> bool:
    """Whether the session is over: its grace period passed, or its process went silent that long."""
    if s.state == "ended":
        return True
    if s.state == "grace":
        return s.grace_until is not None and s.grace_until <= now
    if s.kind == "whip":
        return s.last_seen + stale + grace <= now
    return False


def decide_start(
    s: Session | None, kind: str, now: datetime, *, grace: timedelta, stale: timedelta
) -> StartDecision:
    """What a new start of `kind` on a channel with unfinished session `s` does.

    A broadcaster who dropped (grace) or whose ingest process went silent comes back into the same
    session; a live one refuses a second broadcaster; an operator start on an operator session is a no-op.
    """
    if s is None or is_expired(s, now, grace=grace, stale=stale):
        return "new"
    if s.state == "grace":
        return "resume"
    if s.kind == "whip" and s.last_seen + stale <= now:
        return "resume"
    if s.kind == "operator" and kind == "operator":
        return "same"
    return "conflict"


def start_or_refuse(
    s: Session | None, kind: str, now: datetime, *, channel: str, grace: timedelta, stale: timedelta
) -> StartDecision:
    """decide_start, with a refused start raised as Conflict naming the channel."""
    decision = decide_start(s, kind, now, grace=grace, stale=stale)
    if decision == "conflict" or (decision == "same" and kind == "whip"):
        other = "another broadcaster" if kind == "whip" else "a broadcaster"
        raise Conflict(f'channel "{channel}" is already live with {other}', code="already_live")
    return decision


def _told(s: Session, as_: type[S]) -> S:
    """`s` as the contract's Struct `as_`: every field from the session's of the same name (its id as
    `session_id`); what the session has no field for keeps its default (event ids, versions)."""
    return msgspec.convert(s, as_, from_attributes=True)


def started_event(s: Session) -> pi.SessionStarted:
    """The started event of `s`, with what its first second of media showed (version 1)."""
    return _told(s, pi.SessionStarted)


def end_events(s: Session) -> list[Event]:
    """The events of ended session `s`: its ended event (version 2), after its started event if that
    never left (a broadcaster gone within its first second), so every session that ends was started."""
    ended = _told(msgspec.structs.replace(s, ended_at=s.ended_at or s.started_at), pi.SessionEnded)
    return [ended] if s.announced else [started_event(s), ended]


def live_session(s: Session) -> pi.LiveSession:
    """`s` as other services keep it: version 1 while live (or in grace), 2 once ended."""
    return msgspec.structs.replace(_told(s, pi.LiveSession), version=2 if s.state == "ended" else 1)


def session_state(s: Session) -> pi.SessionState:
    """The operator's view of `s`."""
    return _told(s, pi.SessionState)


class TrickleCandidates(msgspec.Struct, frozen=True):
    """What a trickle PATCH adds: the candidate values (after `a=candidate:`) of media section `mid`."""

    mid: str
    candidates: list[str]


def trickle_candidates(fragment: str, remote_sdp: str | None) -> TrickleCandidates:
    """Read a WHIP PATCH fragment (RFC 8840); an empty one is BadRequest, and an ICE restart (a ufrag the
    offer did not have) is refused: the broadcaster resumes with a new POST within its grace period."""
    lines = [line.strip() for line in fragment.splitlines() if line.strip()]
    if not lines:
        raise BadRequest("the PATCH body is empty: send an SDP fragment", code="invalid_sdp")
    ufrags = [line.split(":", 1)[1] for line in lines if line.startswith("a=ice-ufrag:")]
    if remote_sdp is not None and ufrags and f"a=ice-ufrag:{ufrags[0]}" not in remote_sdp:
        raise Unprocessable(
            "ICE restart is not supported: POST a new offer (the session continues within its grace period)",
            code="ice_restart_unsupported",
        )
    mid = next((line.split(":", 1)[1] for line in lines if line.startswith("a=mid:")), "0")
    candidates = [line[2:].split(":", 1)[1] for line in lines if line.startswith("a=candidate:")]
    return TrickleCandidates(mid, candidates)


def kbps(byte_count: int, seconds: float) -> int:
    """Bitrate in kbit/s of `byte_count` bytes over `seconds`."""
    return round(byte_count * 8 / 1000 / seconds) if seconds > 0 else 0
