"""chat: rooms, messages, bans and timeouts, room modes, blocked terms. Owned by services/chat.

A room's messages are stored frames on `chatroom.<room_id>.m` in ROOM_STREAM (the last ROOM_HISTORY per
room); gateways subscribe to `chatroom.<room_id>.*` and forward the bytes as they are. Control frames
(deleted, cleared, purged, modes) go out on `chatroom.<room_id>.c` without being stored: history is
authoritative on join. Moderation is recorded as `chat.moderation.applied` events on STREAM."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from proto.base import Event, Rpc, StreamSpec

# The last messages of a room kept for joiners; deletions remove them from here.
ROOM_HISTORY = 100

ROOM_STREAM = StreamSpec(
    name="CHATROOM",
    subjects=("chatroom.*.m",),
    max_msgs_per_subject=ROOM_HISTORY,
    max_age_seconds=7 * 24 * 3600,
    duplicate_window_seconds=600,
    description="the last messages of each chat room (frames as clients get them)",
)

STREAM = StreamSpec(
    name="CHAT",
    subjects=("chat.*.*",),
    max_age_seconds=365 * 24 * 3600,
    description="chat moderation events",
)


def room_subject(room_id: str) -> str:
    """Where a room's messages are stored and fanned out."""
    return f"chatroom.{room_id}.m"


def control_subject(room_id: str) -> str:
    """Where a room's control frames (not stored) go out."""
    return f"chatroom.{room_id}.c"


def room_wildcard(room_id: str) -> str:
    """What a gateway subscribes to for one room."""
    return f"chatroom.{room_id}.*"


BadgeKind = Literal["broadcaster", "moderator", "vip", "subscriber", "admin"]


class Badge(msgspec.Struct, frozen=True, kw_only=True):
    kind: BadgeKind
    tier: int = 0
    months: int = 0


class EmoteImage(msgspec.Struct, frozen=True, kw_only=True):
    """An emote as a message shows it; `urls` maps "1x", "2x", "4x" to image paths."""

    id: str
    code: str
    urls: dict[str, str]
    animated: bool = False


class Text(msgspec.Struct, frozen=True, kw_only=True, tag="text", tag_field="type"):
    text: str


class EmoteFragment(msgspec.Struct, frozen=True, kw_only=True, tag="emote", tag_field="type"):
    text: str
    emote: EmoteImage


class Mention(msgspec.Struct, frozen=True, kw_only=True, tag="mention", tag_field="type"):
    text: str
    username: str


class Link(msgspec.Struct, frozen=True, kw_only=True, tag="link", tag_field="type"):
    text: str
    url: str


Fragment = Text | EmoteFragment | Mention | Link


class Sender(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    username: str
    badges: list[Badge]


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="type"):
    """A message frame; `action` is a `/me` message."""

    id: str
    room_id: str
    sender: Sender
    fragments: list[Fragment]
    sent_at: datetime
    action: bool = False


class Modes(msgspec.Struct, frozen=True, kw_only=True):
    """`followers_only_minutes` None is off; 0 means any follower."""

    slow_seconds: int = 0
    followers_only_minutes: int | None = None
    subscribers_only: bool = False
    emote_only: bool = False


class Deleted(msgspec.Struct, frozen=True, kw_only=True, tag="deleted", tag_field="type"):
    id: str
    room_id: str


class Cleared(msgspec.Struct, frozen=True, kw_only=True, tag="cleared", tag_field="type"):
    room_id: str


class Purged(msgspec.Struct, frozen=True, kw_only=True, tag="purged", tag_field="type"):
    """A user's messages were removed (ban or timeout); `until` None is a ban."""

    room_id: str
    user_id: str
    username: str
    until: datetime | None


class ModesChanged(msgspec.Struct, frozen=True, kw_only=True, tag="modes", tag_field="type"):
    room_id: str
    modes: Modes


ControlFrame = Deleted | Cleared | Purged | ModesChanged


# Requests and replies ---------------------------------------------------------------------------------


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    rate_messages: int
    rate_window_seconds: int
    slow_seconds: int
    max_length: int


class Viewer(msgspec.Struct, frozen=True, kw_only=True):
    """The joining user's standing; `blocked` says why they cannot send (empty when they can)."""

    user_id: str
    username: str
    badges: list[Badge]
    limits: Limits
    blocked: str = ""
    blocked_until: datetime | None = None


class Resolve(msgspec.Struct, frozen=True, kw_only=True):
    channel: str


class Room(msgspec.Struct, frozen=True, kw_only=True):
    room_id: str
    channel: str


class Join(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    user_id: str = ""
    username: str = ""


class RoomState(msgspec.Struct, frozen=True, kw_only=True, tag="welcome", tag_field="type"):
    """The join frame: history oldest first, the room's modes, and the user's standing (None if anonymous)."""

    room_id: str
    channel: str
    modes: Modes
    history: list[ChatMessage]
    me: Viewer | None = None


class Send(msgspec.Struct, frozen=True, kw_only=True):
    """A line typed in chat; a line starting with "/" (other than /me) is a command."""

    channel: str
    user_id: str
    username: str
    message_id: str
    text: str


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    """`kind` "message": stored under `id`; "command": done, `detail` says what happened."""

    id: str
    kind: Literal["message", "command"]
    detail: str = ""
    duplicate: bool = False


ModAction = Literal[
    "ban",
    "unban",
    "timeout",
    "untimeout",
    "delete",
    "clear",
    "slow",
    "slowoff",
    "followers",
    "followersoff",
    "subscribers",
    "subscribersoff",
    "emoteonly",
    "emoteonlyoff",
    "mod",
    "unmod",
    "vip",
    "unvip",
    "block",
    "unblock",
]


class Moderate(msgspec.Struct, frozen=True, kw_only=True):
    """One moderation action; `target` is a username, a message id or a term depending on `action`."""

    channel: str
    actor_id: str
    actor_username: str = ""
    action: ModAction
    target: str = ""
    seconds: int | None = None
    reason: str = ""


class Moderated(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    detail: str


class ModLogQuery(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    actor_id: str
    limit: int = 100


class ModLogEntry(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    actor_username: str
    action: str
    target: str
    detail: str
    at: datetime


class ModLog(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ModLogEntry]


class TermsQuery(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    actor_id: str


class BlockedTerm(msgspec.Struct, frozen=True, kw_only=True):
    term: str
    added_by: str
    added_at: datetime


class TermList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[BlockedTerm]


RESOLVE = Rpc("chat.resolve", Resolve, Room)
JOIN = Rpc("chat.join", Join, RoomState)
SEND = Rpc("chat.send", Send, Sent)
MODERATE = Rpc("chat.moderate", Moderate, Moderated)
MOD_LOG = Rpc("chat.mod_log", ModLogQuery, ModLog)
BLOCKED_TERMS = Rpc("chat.blocked_terms", TermsQuery, TermList)


# Events -----------------------------------------------------------------------------------------------


class ModerationApplied(Event, frozen=True, kw_only=True):
    """A moderation action took effect (ban, timeout, delete, clear, a mode, a blocked term, a role)."""

    subject: ClassVar[str] = "chat.moderation.applied"

    room_id: str
    channel: str
    actor_id: str
    action: str
    target: str
    detail: str


# WebSocket frames (services/gateway/routes/chat.py; the protocol is docs/chat.md) ---------------------
# The chat socket carries NDJSON: one text frame holds one or more JSON objects, one a line, each tagged
# by "type". A client sends Hello first, then SendFrame lines. The server sends RoomState ("welcome")
# once, then room frames as the chat service published them (ChatMessage and the ControlFrame kinds,
# forwarded as they are) and, to the sender only, AckFrame or ErrorFrame.


class Hello(msgspec.Struct, frozen=True, kw_only=True, tag="hello", tag_field="type"):
    """The first client frame: with an access token the socket may send, without it only read."""

    token: str = ""


class SendFrame(msgspec.Struct, frozen=True, kw_only=True, tag="send", tag_field="type"):
    """A line typed in chat; `nonce` (1 to 64 characters) makes a retry of the same line the same message."""

    nonce: str
    text: str


ClientFrame = Hello | SendFrame


class AckFrame(msgspec.Struct, frozen=True, kw_only=True, tag="ack", tag_field="type", omit_defaults=True):
    """The sender's line was taken: stored as message `id`, or a command done (`detail` says what)."""

    nonce: str
    id: str
    kind: Literal["message", "command"]
    detail: str
    duplicate: bool = False


class ErrorFrame(
    msgspec.Struct, frozen=True, kw_only=True, tag="error", tag_field="type", omit_defaults=True
):
    """A line (or the hello) was refused; `retry_after` seconds and `retry_at` (ISO 8601, milliseconds)
    say when sending opens again, `nonce` names the refused line."""

    status: int
    code: str
    detail: str
    nonce: str = ""
    retry_after: float | None = None
    retry_at: str | None = None


ServerFrame = RoomState | ChatMessage | Deleted | Cleared | Purged | ModesChanged | AckFrame | ErrorFrame
