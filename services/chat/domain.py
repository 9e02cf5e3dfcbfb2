"""The chat rules: who may send and what they see (standing, badges, limits, room modes, emotes), who may
moderate whom, and what each moderation action leaves. No I/O. The text of a line (cleaning, commands,
fragments, blocked terms) is services/chat/text.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from libs.bus import BadRequest, Forbidden, TooManyRequests
from proto import channel as pch
from proto import chat as pc

__all__ = [
    "MAX_LENGTH",
    "MODE_CHANGES",
    "ROLE_ACTIONS",
    "Emote",
    "Outcome",
    "Room",
    "Settings",
    "Standing",
    "badges",
    "ban_detail",
    "ban_until",
    "bounded",
    "check_moderator",
    "check_send",
    "check_target",
    "emote_lookup",
    "emote_table",
    "in_room",
    "role_detail",
    "role_of",
    "term_detail",
]

MAX_LENGTH = 500
MAX_TIMEOUT_SECONDS = 14 * 24 * 3600
MAX_SLOW_SECONDS = 120
MAX_FOLLOW_MINUTES = 90 * 24 * 60
MAX_REASON = 200

_replace = msgspec.structs.replace


def bounded(value: int | str, what: str, low: int, high: int) -> int:
    """`value` as a whole number from `low` to `high`; BadRequest naming `what` and the value otherwise."""
    text = str(value)
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadRequest(
            f'{what} must be a whole number from {low} to {high}, not "{text}"', code="bad_command"
        )
    return int(text)


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules need to know about a sender in one room, read in the send transaction."""

    role: str  # "broadcaster", "moderator", "vip" or ""
    admin: bool = False
    sub_tier: int = 0
    sub_months: int = 0
    followed_at: datetime | None = None
    banned: bool = False
    ban_reason: str = ""
    timeout_until: datetime | None = None
    last_sent_at: datetime | None = None
    sent_in_window: int = 0
    oldest_in_window: datetime | None = None

    @property
    def privileged(self) -> bool:
        """Broadcaster or moderator: exempt from room modes, higher rate limit."""
        return self.role in ("broadcaster", "moderator")


def badges(s: Standing) -> list[pc.Badge]:
    """The sender's badges, most important first."""
    out: list[pc.Badge] = []
    if s.admin:
        out.append(pc.Badge(kind="admin"))
    if s.role in ("broadcaster", "moderator", "vip"):
        out.append(pc.Badge(kind=s.role))  # type: ignore[arg-type]
    if s.sub_tier:
        out.append(pc.Badge(kind="subscriber", tier=s.sub_tier, months=s.sub_months))
    return out


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def blocked_reason(s: Standing, now: datetime) -> tuple[str, datetime | None]:
    """Why the user may not send at all ("" when they may), and until when."""
    if s.banned:
        return (f"you are banned from this chat{': ' + s.ban_reason if s.ban_reason else ''}", None)
    if s.timeout_until is not None and s.timeout_until > now:
        reason = f"{': ' + s.ban_reason if s.ban_reason else ''}"
        return (f"you are timed out until {_iso(s.timeout_until)}{reason}", s.timeout_until)
    return ("", None)


def check_send(s: Standing, modes: pc.Modes, limits: pc.Limits, now: datetime) -> None:
    """Refuse with the reason (and when sending opens again) unless `s` may send now."""
    reason, until = blocked_reason(s, now)
    if reason:
        retry = (until - now).total_seconds() if until else None
        raise Forbidden(reason, code="banned" if until is None else "timed_out", retry_after=retry)
    if s.sent_in_window >= limits.rate_messages and s.oldest_in_window is not None:
        opens = s.oldest_in_window + timedelta(seconds=limits.rate_window_seconds)
        raise TooManyRequests(
            f"rate limit: {limits.rate_messages} messages per {limits.rate_window_seconds} s;"
            f" sending opens again at {opens.isoformat(timespec='milliseconds')}",
            code="rate_limited",
            retry_after=max(0.001, (opens - now).total_seconds()),
        )
    if s.privileged:
        return
    _check_modes(s, modes, now)


def _check_modes(s: Standing, modes: pc.Modes, now: datetime) -> None:
    if modes.subscribers_only and not s.sub_tier:
        raise Forbidden("this chat is in subscribers-only mode", code="subscribers_only")
    if modes.followers_only_minutes is not None and s.role != "vip":
        needed = timedelta(minutes=modes.followers_only_minutes)
        if s.followed_at is None:
            raise Forbidden(
                "this chat is in followers-only mode: follow the channel first", code="followers_only"
            )
        if now - s.followed_at < needed:
            opens = s.followed_at + needed
            raise Forbidden(
                f"this chat is in followers-only mode ({modes.followers_only_minutes} minutes);"
                f" you may chat from {_iso(opens)}",
                code="followers_only",
                retry_after=(opens - now).total_seconds(),
            )
    if modes.slow_seconds and s.role != "vip" and s.last_sent_at is not None:
        opens = s.last_sent_at + timedelta(seconds=modes.slow_seconds)
        if opens > now:
            raise TooManyRequests(
                f"slow mode: one message every {modes.slow_seconds} s; sending opens again at"
                f" {opens.isoformat(timespec='milliseconds')}",
                code="slow_mode",
                retry_after=(opens - now).total_seconds(),
            )


def check_moderator(actor_role: str, action: str, channel: str) -> None:
    """Only the broadcaster and moderators moderate; roles (mod, vip) are the broadcaster's alone."""
    if action in ("mod", "unmod", "vip", "unvip"):
        if actor_role != "broadcaster":
            raise Forbidden(f'only the broadcaster of "{channel}" can /{action}', code="not_owner")
        return
    if actor_role not in ("broadcaster", "moderator"):
        raise Forbidden(
            f'only the broadcaster and moderators of "{channel}" can /{action}', code="not_moderator"
        )


def check_target(actor_role: str, target_role: str, target: str) -> None:
    """Nobody acts on the broadcaster; a moderator does not act on another moderator."""
    if target_role == "broadcaster":
        raise Forbidden(f'"{target}" is the broadcaster and cannot be moderated', code="protected_user")
    if target_role == "moderator" and actor_role != "broadcaster":
        raise Forbidden(f'"{target}" is a moderator; only the broadcaster can do that', code="protected_user")


def emote_usable(tier: int, channel_id: str, room_id: str, s: Standing) -> bool:
    """Global emotes and ungated channel emotes for all; tier-gated ones for subscribers of that tier."""
    if not channel_id:
        return True
    if channel_id != room_id:
        return False
    return tier == 0 or s.role == "broadcaster" or s.sub_tier >= tier


class Emote(msgspec.Struct, frozen=True, kw_only=True):
    """An emote a room may use; `room_id` '' for the global set."""

    emote_id: str
    room_id: str
    code: str
    tier: int = 0
    animated: bool = False


def emote_table(emotes: list[Emote]) -> dict[str, tuple[pc.EmoteImage, int, str]]:
    """Code -> (image, tier, room id); a channel emote wins over a global one of the same code."""
    table: dict[str, tuple[pc.EmoteImage, int, str]] = {}
    for e in sorted(emotes, key=lambda e: e.room_id):
        image = pc.EmoteImage(
            id=e.emote_id, code=e.code, urls=pch.emote_urls(e.emote_id), animated=e.animated
        )
        table[e.code] = (image, e.tier, e.room_id)
    return table


def emote_lookup(
    emotes: Mapping[str, tuple[pc.EmoteImage, int, str]], room_id: str, s: Standing
) -> Callable[[str], pc.EmoteImage | None]:
    """A code -> emote function limited to what `s` may use in `room_id`."""

    def find(code: str) -> pc.EmoteImage | None:
        found = emotes.get(code)
        if found is None:
            return None
        image, tier, channel_id = found
        return image if emote_usable(tier, channel_id, room_id, s) else None

    return find


# --- rooms and moderation ------------------------------------------------------------------------------


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The sending rules' numbers and the platform admins (lower case), from the service config."""

    rate: int
    privileged_rate: int
    window: int
    admins: frozenset[str] = frozenset()

    def limits(self, s: Standing, modes: pc.Modes) -> pc.Limits:
        """The rate limit and slow mode that apply to `s`."""
        return pc.Limits(
            rate_messages=self.privileged_rate if s.privileged else self.rate,
            rate_window_seconds=self.window,
            slow_seconds=0 if s.privileged or s.role == "vip" else modes.slow_seconds,
            max_length=MAX_LENGTH,
        )


class Room(msgspec.Struct, frozen=True, kw_only=True):
    """A channel's chat room: the channel as chat's copy has it (the room id is the channel id), and the
    room's modes, which chat owns."""

    room_id: str
    name: str
    owner_id: str
    modes: pc.Modes = pc.Modes()


def role_of(room: Room, user_id: str, granted: str) -> str:
    """ "broadcaster" for the room's owner, else the role the channel granted ("moderator", "vip") or ""."""
    return "broadcaster" if room.owner_id == user_id else granted


def in_room(s: Standing, room: Room, user_id: str, username: str, settings: Settings) -> Standing:
    """A standing as stored (granted role only) with the owner as broadcaster and the admin flag."""
    admin = username.lower() in settings.admins
    return _replace(s, role=role_of(room, user_id, s.role), admin=admin)


# /mod, /unmod, /vip, /unvip: (role, granted); the channel service owns roles.
ROLE_ACTIONS: dict[str, tuple[pch.RoleName, bool]] = {
    "mod": ("moderator", True),
    "unmod": ("moderator", False),
    "vip": ("vip", True),
    "unvip": ("vip", False),
}


# Each room mode action and the modes it leaves (from the modes before and the request's seconds).
MODE_CHANGES: dict[str, Callable[[pc.Modes, int | None], pc.Modes]] = {
    "slow": lambda m, n: _replace(m, slow_seconds=bounded(n or 30, "slow mode seconds", 1, MAX_SLOW_SECONDS)),
    "slowoff": lambda m, _: _replace(m, slow_seconds=0),
    "followers": lambda m, n: _replace(
        m, followers_only_minutes=bounded(n or 0, "followers-only minutes", 0, MAX_FOLLOW_MINUTES)
    ),
    "followersoff": lambda m, _: _replace(m, followers_only_minutes=None),
    "subscribers": lambda m, _: _replace(m, subscribers_only=True),
    "subscribersoff": lambda m, _: _replace(m, subscribers_only=False),
    "emoteonly": lambda m, _: _replace(m, emote_only=True),
    "emoteonlyoff": lambda m, _: _replace(m, emote_only=False),
}


def ban_until(req: pc.Moderate, now: datetime) -> datetime | None:
    """When a /timeout ends (10 minutes unless given); None for a /ban, which does not end."""
    if req.action != "timeout":
        return None
    seconds = bounded(req.seconds or 600, "timeout seconds", 1, MAX_TIMEOUT_SECONDS)
    return now + timedelta(seconds=seconds)


def ban_detail(username: str, until: datetime | None, reason: str) -> str:
    """What a ban or timeout answers: who, until when, why."""
    what = "banned" if until is None else f"timed out until {_iso(until)}"
    return f"{username} is {what}{': ' + reason if reason else ''}"


def role_detail(username: str, role: str, *, granted: bool, changed: bool) -> str:
    """What /mod, /vip and their undo answer."""
    if not changed:
        return f"{username} {'already was' if granted else 'was not'} a {role}"
    return f"{username} is {'now' if granted else 'no longer'} a {role}"


def term_detail(term: str, *, blocked: bool, changed: bool) -> str:
    """What /block and /unblock answer."""
    if changed:
        state = "blocked" if blocked else "unblocked"
    else:
        state = "already blocked" if blocked else "not blocked"
    return f'term "{term}" {state}'


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a moderation action did: the answer, the frame for the room, stream messages to remove."""

    detail: str
    target: str = ""
    frame: pc.ControlFrame | None = None
    seqs: list[int] = []
    purge: bool = False
