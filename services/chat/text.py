"""A chat line's text: cleaning, commands and the moderation requests they stand for, fragments (emotes,
mentions, links), blocked terms. No I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from libs.bus import BadRequest
from proto import chat as pc
from services.chat.domain import (
    MAX_FOLLOW_MINUTES,
    MAX_LENGTH,
    MAX_REASON,
    MAX_SLOW_SECONDS,
    MAX_TIMEOUT_SECONDS,
    bounded,
)

__all__ = [
    "clean_term",
    "clean_text",
    "command_request",
    "fragments",
    "is_emote_only",
    "matched_term",
    "parse_command",
]

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
        seconds = bounded(args[1] if len(args) > 1 else "", "timeout seconds", 1, MAX_TIMEOUT_SECONDS)
        return make("timeout", user, seconds, " ".join(args[2:]))
    if name == "delete":
        if not args:
            raise BadRequest("/delete needs a message id", code="bad_command")
        return make("delete", args[0])
    if name == "slow":
        return make(
            "slow", seconds=bounded(args[0] if args else "30", "slow mode seconds", 1, MAX_SLOW_SECONDS)
        )
    if name == "followers":
        minutes = bounded(args[0] if args else "0", "followers-only minutes", 0, MAX_FOLLOW_MINUTES)
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
