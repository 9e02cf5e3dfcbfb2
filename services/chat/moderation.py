"""Moderation: bans, timeouts, deletions, room modes, blocked terms, and roles through the channel service.
Each action is checked, applied and logged in one transaction with its event; the stream is trimmed and
the room told after commit (history on join filters deleted messages, so a crash in between hides them)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import BadRequest, NotFound, encode, request, utcnow
from libs.db import add_event
from libs.obs.logging import get_logger
from proto import channel as pch
from proto import chat as pc
from proto.identity import FIND_USER, FindUserRequest
from services.chat import domain, store
from services.chat.history import delete_seqs, purge_room

__all__ = ["Moderation", "role_of"]

log = get_logger("chat")

ROLE_ACTIONS: dict[str, tuple[pch.RoleName, bool]] = {
    "mod": ("moderator", True),
    "unmod": ("moderator", False),
    "vip": ("vip", True),
    "unvip": ("vip", False),
}
MODE_ACTIONS = {
    "slow",
    "slowoff",
    "followers",
    "followersoff",
    "subscribers",
    "subscribersoff",
    "emoteonly",
    "emoteonlyoff",
}


def role_of(room: Any, user_id: str, role: str | None) -> str:
    """ "broadcaster" for the room's owner, else the granted role or ""."""
    return "broadcaster" if room["owner_id"] == user_id else (role or "")


class Outcome(msgspec.Struct, kw_only=True):
    """What an action did: the answer, the frame for the room, stream messages to remove."""

    detail: str
    target: str = ""
    frame: pc.ControlFrame | None = None
    seqs: list[int] = []
    purge: bool = False


def _new_modes(modes: pc.Modes, req: pc.Moderate) -> pc.Modes:
    a = req.action
    if a == "slow" and not 1 <= (req.seconds or 30) <= domain.MAX_SLOW_SECONDS:
        raise BadRequest(f"slow mode seconds must be 1 to {domain.MAX_SLOW_SECONDS}", code="bad_command")
    if a == "followers" and not 0 <= (req.seconds or 0) <= domain.MAX_FOLLOW_MINUTES:
        raise BadRequest(
            f"followers-only minutes must be 0 to {domain.MAX_FOLLOW_MINUTES}", code="bad_command"
        )
    if a in ("slow", "slowoff"):
        return msgspec.structs.replace(modes, slow_seconds=req.seconds or 30 if a == "slow" else 0)
    if a in ("followers", "followersoff"):
        return msgspec.structs.replace(
            modes, followers_only_minutes=req.seconds or 0 if a == "followers" else None
        )
    if a in ("subscribers", "subscribersoff"):
        return msgspec.structs.replace(modes, subscribers_only=a == "subscribers")
    return msgspec.structs.replace(modes, emote_only=a == "emoteonly")


class Moderation:
    """Applies moderation requests (from REST or chat commands)."""

    def __init__(self, pool: Any, nc: Client, js: JetStreamContext) -> None:
        self.pool = pool
        self.nc = nc
        self.js = js

    async def _role(self, conn: Any, room: Any, user_id: str) -> str:
        role = await conn.fetchval(
            "SELECT role FROM roles WHERE room_id = $1 AND user_id = $2", room["room_id"], user_id
        )
        return role_of(room, user_id, role)

    async def room(self, conn: Any, channel: str, *, lock: bool = False) -> Any:
        """The channel's room. A channel created a moment ago, whose event we have not handled yet, is asked
        of the channel service once and its room opened; NotFound when there is no such channel."""
        room = await store.room_by_name(conn, name=channel, lock=lock)
        if room is not None:
            return room
        try:
            found = await request(self.nc, pch.GET, pch.GetChannel(name=channel.strip().lower()))
        except (NotFound, BadRequest):
            raise NotFound(f'channel "{channel}" has no chat room', code="room_not_found") from None
        await store.upsert_room(conn, room_id=found.id, name=found.name, owner_id=found.owner_id)
        log.info("room_learned_on_miss", room_id=found.id, channel=found.name)
        room = await store.room_by_name(conn, name=found.name, lock=lock)
        if room is None:  # a room of that name for another channel id: not this one
            raise NotFound(f'channel "{channel}" has no chat room', code="room_not_found")
        return room

    async def apply(self, req: pc.Moderate) -> pc.Moderated:
        """chat.moderate: check who may, apply, log, then tell the room."""
        if req.action in ROLE_ACTIONS:
            return await self._set_role(req)
        async with self.pool.acquire() as conn, conn.transaction():
            room = await self.room(conn, req.channel, lock=True)
            actor_role = await self._role(conn, room, req.actor_id)
            domain.check_moderator(actor_role, req.action, room["name"])
            outcome = await self._dispatch(req.action)(conn, room, req, actor_role)
            await self._record(conn, room, req, outcome)
        await self._after_commit(room["room_id"], outcome)
        return pc.Moderated(action=req.action, detail=outcome.detail)

    def _dispatch(self, action: str) -> Callable[[Any, Any, pc.Moderate, str], Awaitable[Outcome]]:
        if action in MODE_ACTIONS:
            return self._modes
        handlers = {
            "ban": self._ban,
            "timeout": self._ban,
            "unban": self._unban,
            "untimeout": self._unban,
            "delete": self._delete,
            "clear": self._clear,
            "block": self._term,
            "unblock": self._term,
        }
        return handlers[action]

    async def _record(self, conn: Any, room: Any, req: pc.Moderate, outcome: Outcome) -> None:
        await store.add_log(
            conn,
            room_id=room["room_id"],
            actor_id=req.actor_id,
            actor_username=req.actor_username,
            action=req.action,
            target=outcome.target,
            detail=outcome.detail,
        )
        event = pc.ModerationApplied(
            room_id=room["room_id"],
            channel=room["name"],
            actor_id=req.actor_id,
            action=req.action,
            target=outcome.target,
            detail=outcome.detail,
        )
        await add_event(conn, event)
        log.info("moderation_applied", room_id=room["room_id"], action=req.action, target=outcome.target)

    async def _after_commit(self, room_id: str, outcome: Outcome) -> None:
        try:
            if outcome.purge:
                await purge_room(self.js, room_id)
            elif outcome.seqs:
                await delete_seqs(self.js, outcome.seqs)
        except Exception as exc:  # join filters deleted messages anyway; the stream copy ages out
            log.warning("stream_trim_failed", room_id=room_id, error=str(exc))
        if outcome.frame is not None:
            with contextlib.suppress(Exception):
                await self.nc.publish(pc.control_subject(room_id), encode(outcome.frame))

    async def _target_user(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Any:
        user = await store.find_user(conn, username=req.target)
        if user is None:
            # Registered a moment ago and its event not handled yet (or never registered): ask identity once.
            try:
                found = await request(self.nc, FIND_USER, FindUserRequest(username=req.target.strip()))
            except (NotFound, BadRequest):
                raise NotFound(f'no user named "{req.target}"', code="user_not_found") from None
            await store.upsert_user(conn, user_id=found.id, username=found.username)
            log.info("user_learned_on_miss", user_id=found.id, username=found.username)
            user = await store.find_user(conn, username=found.username)
        if user is None:
            raise NotFound(f'no user named "{req.target}"', code="user_not_found")
        domain.check_target(actor_role, await self._role(conn, room, user["id"]), user["username"])
        return user

    async def _ban(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Outcome:
        user = await self._target_user(conn, room, req, actor_role)
        until = utcnow() + timedelta(seconds=req.seconds or 600) if req.action == "timeout" else None
        if req.action == "timeout" and not 1 <= (req.seconds or 600) <= domain.MAX_TIMEOUT_SECONDS:
            raise BadRequest(f"timeout seconds must be 1 to {domain.MAX_TIMEOUT_SECONDS}", code="bad_command")
        reason = req.reason[: domain.MAX_REASON]
        await store.put_ban(
            conn,
            room_id=room["room_id"],
            user_id=user["id"],
            until=until,
            reason=reason,
            actor_id=req.actor_id,
        )
        seqs = await store.delete_user_messages(conn, room_id=room["room_id"], user_id=user["id"])
        what = "banned" if until is None else f"timed out until {until.isoformat(timespec='seconds')}"
        frame = pc.Purged(room_id=room["room_id"], user_id=user["id"], username=user["username"], until=until)
        detail = f"{user['username']} is {what}{': ' + reason if reason else ''}"
        return Outcome(detail=detail, target=user["username"], frame=frame, seqs=seqs)

    async def _unban(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Outcome:
        user = await self._target_user(conn, room, req, actor_role)
        timeout = req.action == "untimeout"
        if not await store.delete_ban(conn, room_id=room["room_id"], user_id=user["id"], timeout=timeout):
            kind = "timed out" if timeout else "banned"
            raise NotFound(f'"{user["username"]}" is not {kind} here', code=f"not_{kind.replace(' ', '_')}")
        return Outcome(detail=f"{user['username']} may chat again", target=user["username"])

    async def _delete(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Outcome:
        found = await store.find_message(conn, message_id=req.target)
        if found is None or found["room_id"] != room["room_id"]:
            raise NotFound(f'no message "{req.target}" in this chat', code="message_not_found")
        domain.check_target(actor_role, await self._role(conn, room, found["user_id"]), "its author")
        await store.delete_message(conn, room_id=room["room_id"], message_id=req.target)
        frame = pc.Deleted(id=req.target, room_id=room["room_id"])
        return Outcome(
            detail=f"message {req.target} deleted", target=req.target, frame=frame, seqs=[found["seq"]]
        )

    async def _clear(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Outcome:
        await store.clear_room(conn, room_id=room["room_id"])
        return Outcome(detail="chat cleared", frame=pc.Cleared(room_id=room["room_id"]), purge=True)

    async def _modes(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Outcome:
        modes = _new_modes(domain.modes_of(room), req)
        await store.set_modes(conn, room_id=room["room_id"], modes=modes)
        frame = pc.ModesChanged(room_id=room["room_id"], modes=modes)
        return Outcome(detail=f"room modes: {msgspec.json.encode(modes).decode()}", frame=frame)

    async def _term(self, conn: Any, room: Any, req: pc.Moderate, actor_role: str) -> Outcome:
        term = domain.clean_term(req.target)
        blocked = req.action == "block"
        changed = await store.set_term(
            conn, room_id=room["room_id"], term=term, actor_id=req.actor_id, blocked=blocked
        )
        state = (
            ("blocked" if blocked else "unblocked")
            if changed
            else ("already blocked" if blocked else "not blocked")
        )
        return Outcome(detail=f'term "{term}" {state}', target=term)

    async def _set_role(self, req: pc.Moderate) -> pc.Moderated:
        """/mod, /unmod, /vip, /unvip: the channel service owns roles; chat learns them from its events."""
        role, granted = ROLE_ACTIONS[req.action]
        async with self.pool.acquire() as conn:
            room = await self.room(conn, req.channel)
            domain.check_moderator(await self._role(conn, room, req.actor_id), req.action, room["name"])
        change = await request(
            self.nc,
            pch.SET_ROLE,
            pch.SetRole(
                actor_id=req.actor_id, name=room["name"], username=req.target, role=role, granted=granted
            ),
        )
        detail = f"{change.username} is {'now' if granted else 'no longer'} a {role}"
        if not change.changed:
            detail = f"{change.username} {'already was' if granted else 'was not'} a {role}"
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record(conn, room, req, Outcome(detail=detail, target=change.username))
        return pc.Moderated(action=req.action, detail=detail)

    async def mod_log(self, req: pc.ModLogQuery) -> pc.ModLog:
        """chat.mod_log: the room's moderation actions, newest first (broadcaster only)."""
        async with self.pool.acquire() as conn:
            room = await self.room(conn, req.channel)
            domain.check_moderator(await self._role(conn, room, req.actor_id), "mod", room["name"])
            rows = await store.list_log(conn, room_id=room["room_id"], limit=max(1, min(req.limit, 500)))
        return pc.ModLog(items=[pc.ModLogEntry(**dict(r)) for r in rows])

    async def blocked_terms(self, req: pc.TermsQuery) -> pc.TermList:
        """chat.blocked_terms: the room's blocked terms (broadcaster and moderators)."""
        async with self.pool.acquire() as conn:
            room = await self.room(conn, req.channel)
            domain.check_moderator(await self._role(conn, room, req.actor_id), "block", room["name"])
            rows = await store.blocked_terms(conn, room_id=room["room_id"])
        return pc.TermList(items=[pc.BlockedTerm(**dict(r)) for r in rows])
