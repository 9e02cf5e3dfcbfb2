"""The chat rules: cleaning text, fragments, commands, badges, who may send and who may moderate. No I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec

from libs.bus import BadRequest, Forbidden, TooManyRequests
from proto import chat as pc

__all__ = [
    "MAX_LENGTH",
    "Standing",
    "badges",
    "check_moderator",
    "check_send",
    "check_target",
    "clean_text",
    "fragments",
    "is_emote_only",
    "matched_term",
    "parse_command",
]

MAX_LENGTH = 500
MAX_TIMEOUT_SECONDS = 14 * 24 * 3600
MAX_SLOW_SECONDS = 120
MAX_FOLLOW_MINUTES = 90 * 24 * 60
MAX_REASON = 200
MAX_TERM = 100

# Bidi embeddings, overrides and isolates, marks, and the BOM: they can make a line read as something else.
_BIDI = dict.fromkeys([0x200E, 0x200F, 0x061C, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)], None)
_MENTION = re.compile(r"^@([A-Za-z0-9_]{3,25})$")
_SPLIT = re.compile(r"(\s+)")
_USERNAME = re.compile(r"^@?([A-Za-z0-9_]{3,25})$")


def clean_text(raw: str) -> str:
    """NFC, control and bidi characters removed, line breaks as spaces; refuses empty or too long."""
    text = unicodedata.normalize("NFC", raw).translate(_BIDI)
    text = "".join(
        " " if ch in "\t\n\r\v\f" else ch
        for ch in text
        if ch in "\t\n\r\v\f" or unicodedata.category(ch) != "Cc"
    ).strip()
    if not text:
        raise BadRequest("message is empty", code="empty_message")
    if len(text) > MAX_LENGTH:
        raise BadRequest(
            f"message is {len(text)} characters long; at most {MAX_LENGTH}", code="message_too_long"
        )
    return text


def parse_command(text: str) -> tuple[str, list[str]] | None:
    """("ban", ["user", "reason", ...]) for "/ban user reason ..."; None for a plain message or /me."""
    if not text.startswith("/") or text.startswith("/me ") or text == "/me":
        return None
    name, *args = text[1:].split()
    return name.lower(), args


_NO_ARGS = {
    "clear",
    "slowoff",
    "followersoff",
    "subscribers",
    "subscribersoff",
    "emoteonly",
    "emoteonlyoff",
}
_ONE_USER = {"unban", "untimeout", "mod", "unmod", "vip", "unvip"}


def _int_arg(value: str, what: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(
            f'{what} must be a whole number from {low} to {high}, not "{value}"', code="bad_command"
        )
    return int(value)


def _user_arg(args: list[str], command: str) -> str:
    if not args:
        raise BadRequest(f"/{command} needs a username", code="bad_command")
    match = _USERNAME.match(args[0])
    if match is None:
        raise BadRequest(f'"{args[0]}" is not a username', code="bad_command")
    return match.group(1)


def command_request(name: str, args: list[str], *, channel: str, actor_id: str, actor: str) -> pc.Moderate:
    """The moderation request a chat command stands for; refuses unknown commands and bad arguments."""

    def make(action: str, target: str = "", seconds: int | None = None, reason: str = "") -> pc.Moderate:
        return pc.Moderate(
            channel=channel,
            actor_id=actor_id,
            actor_username=actor,
            action=cast(pc.ModAction, action),
            target=target,
            seconds=seconds,
            reason=reason[:MAX_REASON],
        )

    if name in _NO_ARGS:
        return make(name)
    if name in _ONE_USER:
        return make(name, _user_arg(args, name))
    if name == "ban":
        return make("ban", _user_arg(args, name), reason=" ".join(args[1:]))
    if name == "timeout":
        user = _user_arg(args, name)
        seconds = _int_arg(args[1] if len(args) > 1 else "", "timeout seconds", 1, MAX_TIMEOUT_SECONDS)
        return make("timeout", user, seconds, " ".join(args[2:]))
    if name == "delete":
        if not args:
            raise BadRequest("/delete needs a message id", code="bad_command")
        return make("delete", args[0])
    if name == "slow":
        return make(
            "slow", seconds=_int_arg(args[0] if args else "30", "slow mode seconds", 1, MAX_SLOW_SECONDS)
        )
    if name == "followers":
        minutes = _int_arg(args[0] if args else "0", "followers-only minutes", 0, MAX_FOLLOW_MINUTES)
        return make("followers", seconds=minutes)
    if name in ("block", "unblock"):
        if not args:
            raise BadRequest(f"/{name} needs a term", code="bad_command")
        return make(name, " ".join(args))
    raise BadRequest(f'unknown command "/{name}"', code="unknown_command")


def clean_term(term: str) -> str:
    """A blocked term as stored: NFC, lower case, trimmed, 1 to MAX_TERM characters."""
    cleaned = unicodedata.normalize("NFC", term).casefold().strip()
    if not cleaned or len(cleaned) > MAX_TERM:
        raise BadRequest(f"a blocked term has 1 to {MAX_TERM} characters", code="bad_term")
    return cleaned


def matched_term(text: str, terms: list[str]) -> str | None:
    """The first blocked term the text contains (case-insensitive), or None."""
    folded = text.casefold()
    return next((t for t in terms if t in folded), None)


def _link(token: str) -> str | None:
    if not token.lower().startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(token)
    except ValueError:
        return None
    return token if parts.scheme in ("http", "https") and parts.hostname else None


def fragments(text: str, emote_for: Callable[[str], pc.EmoteImage | None]) -> list[pc.Fragment]:
    """Split a message into text, emotes the sender may use, mentions and links."""
    out: list[pc.Fragment] = []
    pending = ""
    for token in _SPLIT.split(text):
        if not token:
            continue
        found: pc.Fragment | None = None
        if not token.isspace():
            emote = emote_for(token)
            mention = _MENTION.match(token)
            url = _link(token)
            if emote is not None:
                found = pc.EmoteFragment(text=token, emote=emote)
            elif mention is not None:
                found = pc.Mention(text=token, username=mention.group(1).lower())
            elif url is not None:
                found = pc.Link(text=token, url=url)
        if found is None:
            pending += token
            continue
        if pending:
            out.append(pc.Text(text=pending))
            pending = ""
        out.append(found)
    if pending:
        out.append(pc.Text(text=pending))
    return out


def is_emote_only(parts: list[pc.Fragment]) -> bool:
    """True when every fragment is an emote or blank space."""
    return all(
        isinstance(f, pc.EmoteFragment) or (isinstance(f, pc.Text) and f.text.isspace()) for f in parts
    )


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


def modes_of(room: Mapping[str, Any]) -> pc.Modes:
    """A room row's modes."""
    return pc.Modes(
        slow_seconds=room["slow_seconds"],
        followers_only_minutes=room["followers_only_minutes"],
        subscribers_only=room["subscribers_only"],
        emote_only=room["emote_only"],
    )


def emote_usable(tier: int, channel_id: str, room_id: str, s: Standing) -> bool:
    """Global emotes and ungated channel emotes for all; tier-gated ones for subscribers of that tier."""
    if not channel_id:
        return True
    if channel_id != room_id:
        return False
    return tier == 0 or s.role == "broadcaster" or s.sub_tier >= tier


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
