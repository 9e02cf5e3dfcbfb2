"""The subjects that carry an id in their name (media, chat rooms, a user's pushes, per-process requests),
declared as parameterised channels with who publishes and who subscribes.

Events and fixed request subjects need no table: an Event subclass names its subject, an `Rpc` its
request and reply, the proto module its owner, and the AsyncAPI generator (`libs/asyncapi.py`) finds who
uses them in each service's imports. A subject built from an id is a function in its owner's proto
module; this table says what travels on it and who is on each side, since neither can be read off the
function. Add a row when you add such a function (tests/unit/test_contract.py checks every row against
its function)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proto import chat, edge, ingest, notification, transcode
from proto.base import Rpc

__all__ = ["PARAMETERISED", "SOCKETS", "Parameterised", "Socket"]


@dataclass(frozen=True, slots=True)
class Parameterised:
    """A subject family built by `subject` (a function of the `parameters` returning a str, or an Rpc).

    `payload` is the Struct (or union) carried, None for binary payloads described by `content_type`
    and `description`; an Rpc family's request and reply come from the Rpc. `stream` names the JetStream
    stream that stores it (empty: core NATS only)."""

    name: str
    subject: Callable[..., str | Rpc[Any, Any]]
    parameters: dict[str, str]
    description: str
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    payload: object = None
    content_type: str = "application/json"
    stream: str = ""

    def _built(self) -> str | Rpc[Any, Any]:
        return self.subject(**{name: "{" + name + "}" for name in self.parameters})

    @property
    def address(self) -> str:
        """The subject with `{parameter}` placeholders, as AsyncAPI writes a channel's address."""
        built = self._built()
        return built.subject if isinstance(built, Rpc) else built

    @property
    def request(self) -> object:
        """What travels on the subject: the Rpc's request, or `payload`."""
        built = self._built()
        return built.request if isinstance(built, Rpc) else self.payload

    @property
    def reply(self) -> object:
        """The reply of an Rpc family, None for the others."""
        built = self._built()
        return built.reply if isinstance(built, Rpc) else None


_SESSION = {"session_id": "the live session's id (proto.ingest.LiveSession.session_id)"}
_ROOM = {"room_id": "the chat room's id (chat.resolve answers it for a channel name)"}
_PROCESS = {"process_id": "the ingest or edge process that holds the peer connection (12 hex digits)"}


def _held_by(service: str, name: str, rpc: Callable[[str], Rpc[Any, Any]], what: str) -> Parameterised:
    """A request the gateway sends to the one `service` process that holds a peer connection."""
    return Parameterised(
        name=name,
        subject=rpc,
        parameters=_PROCESS,
        description=f"{what}, at the {service} process that holds it.",
        publishers=("gateway",),
        subscribers=(service,),
    )


PARAMETERISED: tuple[Parameterised, ...] = (
    Parameterised(
        name="mediaFrames",
        subject=ingest.media_subject,
        parameters={**_SESSION, "kind": "video or audio"},
        description="Encoded media frames of a live session, as the broadcaster sent them (not re-encoded); "
        "binary, framed by libs.media.frames (pack_frame / unpack_frame).",
        publishers=("ingest",),
        subscribers=("edge", "transcode"),
        content_type="application/octet-stream",
    ),
    Parameterised(
        name="keyframeRequests",
        subject=ingest.keyframe_subject,
        parameters=_SESSION,
        description="A viewer or transcoder needs a keyframe: the ingest process asks the broadcaster (PLI). "
        "Empty payload.",
        publishers=("edge", "transcode"),
        subscribers=("ingest",),
        content_type="application/octet-stream",
    ),
    Parameterised(
        name="chatRoomMessages",
        subject=chat.room_subject,
        parameters=_ROOM,
        description="A room's messages, stored (the last proto.chat.ROOM_HISTORY) and forwarded to its "
        "sockets as they are.",
        publishers=("chat",),
        subscribers=("gateway",),
        payload=chat.ChatMessage,
        stream=chat.ROOM_STREAM.name,
    ),
    Parameterised(
        name="chatRoomControl",
        subject=chat.control_subject,
        parameters=_ROOM,
        description="A room's control frames (deleted, cleared, purged, modes), not stored: history is "
        "authoritative on join.",
        publishers=("chat",),
        subscribers=("gateway",),
        payload=chat.ControlFrame,
    ),
    Parameterised(
        name="userNotifications",
        subject=notification.user_subject,
        parameters={"user_id": "the user the notification is for"},
        description="A user's new notifications, pushed live (the gateway's server-sent events).",
        publishers=("notification",),
        subscribers=("gateway",),
        payload=notification.Notification,
    ),
    Parameterised(
        name="dashChunks",
        subject=transcode.chunk_subject,
        parameters={**_SESSION, "track": "v0, v1, ... or a", "number": "the segment's number"},
        description="Chunks of the live segment being made (WebM bytes), streamed to players before the "
        "segment is stored.",
        publishers=("transcode",),
        subscribers=("gateway",),
        content_type="video/webm",
        stream=transcode.CHUNK_STREAM.name,
    ),
    _held_by("ingest", "whipPatch", ingest.patch_rpc, "Trickle ICE for a WHIP session"),
    _held_by("ingest", "whipDelete", ingest.delete_rpc, "End a WHIP session"),
    _held_by("edge", "whepDelete", edge.delete_rpc, "End a WHEP session"),
)


@dataclass(frozen=True, slots=True)
class Socket:
    """A WebSocket of the gateway: `path` with `{name}` parameters; `client` and `server` are the tagged
    unions of the frames each side sends (JSON, one object a line)."""

    name: str
    path: str
    parameters: dict[str, str]
    description: str
    client: object
    server: object


SOCKETS: tuple[Socket, ...] = (
    Socket(
        name="chatSocket",
        path="/api/v1/channels/{name}/chat",
        parameters={"name": "the channel's name"},
        description="A channel's chat for browsers (docs/chat.md): the client sends Hello, then SendFrame "
        "lines; the server sends RoomState, the room's frames, and Ack or Error frames to the sender.",
        client=chat.ClientFrame,
        server=chat.ServerFrame,
    ),
)
