"""/api/v1/channels/{name}/chat: the chat WebSocket (protocol in docs/chat.md), and moderation over REST.
The chat service checks every rule; this module only relays, and fans room frames out to local sockets."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

import msgspec
from litestar import WebSocket, get, post, websocket
from litestar.datastructures import State

from libs.bus import ServiceError, Unauthorized, encode, utcnow
from libs.obs.logging import get_logger
from proto import chat as pc
from services.gateway.auth import AuthUser, TokenVerifier
from services.gateway.backend import Backend
from services.gateway.bodies import Body
from services.gateway.config import GatewayConfig
from services.gateway.fanout import Fanout, Outbox
from services.gateway.wire import wire_writer

__all__ = ["ROUTES"]

log = get_logger("gateway")

MAX_CLIENT_FRAME = 4096
# A socket's identity is checked once; the room name -> id mapping never changes, so it is cached.
_room_ids: dict[str, str] = {}


_client_frames = msgspec.json.Decoder(pc.ClientFrame)


class ModerationBody(
    Body, frozen=True, request=pc.Moderate, without=("channel", "actor_id", "actor_username")
):
    """POST /api/v1/channels/{name}/chat/moderation body: the same actions as the chat commands."""


def _fanout(state: State, backend: Backend) -> Fanout:
    fanout: Fanout | None = state.get("fanout")
    if fanout is None:
        config: GatewayConfig = state.config
        fanout = Fanout(
            backend.nc,
            coalesce_seconds=config.chat_coalesce_ms / 1000,
            write_budget=config.chat_write_budget,
            coalesce_max_seconds=config.chat_coalesce_max_ms / 1000,
        )
        state.fanout = fanout
    return fanout


def _error(
    code: str, detail: str, *, nonce: str = "", status: int = 400, retry_after: float | None = None
) -> str:
    frame = pc.ErrorFrame(status=status, code=code, detail=detail, nonce=nonce)
    if retry_after is not None:
        retry_at = (utcnow() + timedelta(seconds=retry_after)).isoformat(timespec="milliseconds")
        frame = msgspec.structs.replace(frame, retry_after=round(retry_after, 3), retry_at=retry_at)
    return encode(frame).decode()


def _service_error(exc: ServiceError, nonce: str = "") -> str:
    return _error(exc.code, exc.detail, nonce=nonce, status=exc.status, retry_after=exc.retry_after)


async def _room_id(backend: Backend, name: str) -> str:
    key = name.lower()
    room_id = _room_ids.get(key)
    if room_id is None:
        room = await backend.call(pc.RESOLVE, pc.Resolve(channel=name))
        room_id = _room_ids[key] = room.room_id
    return room_id


async def _receive(socket: WebSocket[Any, Any, Any]) -> str | None:
    """The next client text (binary frames decoded as UTF-8); None when the client went away."""
    message = await socket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        raw = bytes(message.get("bytes") or b"")  # type: ignore[call-overload]
        text = raw.decode(errors="replace")
    return str(text)


async def _hello(socket: WebSocket[Any, Any, Any], timeout: float) -> AuthUser | None:
    """Read the hello frame and verify its token; raises Unauthorized saying what is wrong."""
    try:
        text = await asyncio.wait_for(_receive(socket), timeout=timeout)
    except TimeoutError:
        raise Unauthorized(f"send a hello frame within {timeout:g} s", code="hello_timeout") from None
    if text is None:
        return None
    try:
        frame = _client_frames.decode(text)
    except msgspec.MsgspecError as exc:
        raise Unauthorized(f"the first frame must be a hello frame: {exc}", code="hello_expected") from None
    if not isinstance(frame, pc.Hello):
        raise Unauthorized("the first frame must be a hello frame", code="hello_expected")
    if not frame.token:
        return None
    verifier: TokenVerifier = socket.app.state.verifier
    return await verifier.verify(frame.token)


async def _relay_send(backend: Backend, channel: str, user: AuthUser | None, frame: pc.SendFrame) -> str:
    """Ask the chat service to take one line; the ack or error frame for the sender."""
    if user is None:
        return _error(
            "sign_in_required",
            "sign in to chat: send a hello frame with a token",
            nonce=frame.nonce,
            status=401,
        )
    if not 1 <= len(frame.nonce) <= 64:
        return _error("invalid_nonce", "nonce must have 1 to 64 characters", nonce=frame.nonce)
    # The id is the sender's nonce scoped to the sender: a retry of the same nonce is the same message.
    message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"cpc-chat:{user.id}:{frame.nonce}"))
    send = pc.Send(
        channel=channel, user_id=user.id, username=user.username, message_id=message_id, text=frame.text
    )
    try:
        sent = await backend.call(pc.SEND, send)
    except ServiceError as exc:
        return _service_error(exc, frame.nonce)
    ack = pc.AckFrame(
        nonce=frame.nonce, id=sent.id, kind=sent.kind, detail=sent.detail, duplicate=sent.duplicate
    )
    return encode(ack).decode()


async def _serve_socket(
    socket: WebSocket[Any, Any, Any], backend: Backend, name: str, outbox: Outbox, user: AuthUser | None
) -> None:
    fanout = _fanout(socket.app.state, backend)
    room_id = await _room_id(backend, name)
    await fanout.join(room_id, outbox)  # subscribed before history is read: nothing falls in between
    try:
        state = await backend.call(
            pc.JOIN,
            pc.Join(channel=name, user_id=user.id if user else "", username=user.username if user else ""),
        )
        outbox.pending.insert(0, encode(state).decode())
        outbox.start()
        while (text := await _receive(socket)) is not None:
            if len(text) > MAX_CLIENT_FRAME:
                outbox.push(
                    _error("frame_too_large", f"a client frame has at most {MAX_CLIENT_FRAME} characters")
                )
                continue
            try:
                frame = _client_frames.decode(text)
            except msgspec.MsgspecError as exc:
                outbox.push(_error("invalid_frame", f"unreadable frame: {exc}"))
                continue
            if isinstance(frame, pc.SendFrame):
                outbox.push(await _relay_send(backend, name, user, frame))
    finally:
        await fanout.leave(room_id, outbox)
        await outbox.stop()


@websocket("/api/v1/channels/{name:str}/chat")
async def chat_socket(
    socket: WebSocket[Any, Any, Any], backend: Backend, config: GatewayConfig, name: str
) -> None:
    """A channel's chat room: read as anyone, send when the hello frame carries an access token."""
    await socket.accept()

    async def send(text: str) -> None:
        await socket.send({"type": "websocket.send", "text": text, "bytes": None})

    async def close(code: int, reason: str) -> None:
        await socket.close(code=code, reason=reason)

    outbox = Outbox(
        send,
        close,
        max_pending=config.chat_max_pending,
        wire=wire_writer(socket.scope),
        max_buffer=config.chat_max_buffer_bytes,
    )
    try:
        user = await _hello(socket, config.chat_hello_timeout_seconds)
        await _serve_socket(socket, backend, name, outbox, user)
    except ServiceError as exc:
        with contextlib.suppress(Exception):
            await send(_service_error(exc))
            await socket.close(code=4000 + exc.status if exc.status < 1000 else 4000, reason=exc.code[:100])
    except Exception as exc:  # the peer vanished mid-send, and the like
        log.info("chat_socket_ended", error=type(exc).__name__)


@post("/api/v1/channels/{name:str}/chat/moderation", tags=["chat"], status_code=200)
async def moderate(backend: Backend, name: str, data: ModerationBody, user: AuthUser) -> pc.Moderated:
    """Apply a moderation action (ban, timeout, delete, clear, modes, roles, blocked terms)."""
    req = data.to(pc.Moderate, channel=name, actor_id=user.id, actor_username=user.username)
    return await backend.call(pc.MODERATE, req)


@get("/api/v1/channels/{name:str}/chat/moderation", tags=["chat"])
async def moderation_log(backend: Backend, name: str, user: AuthUser, limit: int = 100) -> pc.ModLog:
    """The channel's moderation log, newest first (broadcaster only)."""
    return await backend.call(pc.MOD_LOG, pc.ModLogQuery(channel=name, actor_id=user.id, limit=limit))


@get("/api/v1/channels/{name:str}/chat/blocked-terms", tags=["chat"])
async def blocked_terms(backend: Backend, name: str, user: AuthUser) -> pc.TermList:
    """The channel's blocked terms (broadcaster and moderators)."""
    return await backend.call(pc.BLOCKED_TERMS, pc.TermsQuery(channel=name, actor_id=user.id))


ROUTES: list[Any] = [chat_socket, moderate, moderation_log, blocked_terms]
