"""Moderation: bans, timeouts, deletions, room modes, blocked terms, and roles through the channel service.
Each action is checked, applied and logged in one transaction with its event; the stream is trimmed and
the room told after commit (history on join filters deleted messages, so a crash in between hides them).
Rooms and moderation targets come from chat's copies of channels and users (a miss asks their owner)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import BadRequest, NotFound, encode, request, utcnow
from libs.db import Connection, Pool, add_event
from libs.obs.logging import get_logger
from libs.replica import Replica
from proto import channel as pch
from proto import chat as pc
from proto.identity import UserCopy
from services.chat import domain, store
from services.chat.domain import Outcome, Room
from services.chat.history import delete_seqs, purge_room
from services.chat.text import clean_term

__all__ = ["Moderation"]

log = get_logger("chat")

Action = Callable[[Connection, Room, pc.Moderate, str], Awaitable[Outcome]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Moderation:
    """Finds rooms and applies moderation requests (from REST or chat commands)."""

    pool: Pool
    nc: Client
    js: JetStreamContext
    users: Replica[UserCopy]
    channels: Replica[pch.ChannelCopy]

    async def room(self, conn: Connection, channel: str, *, lock: bool = False) -> Room:
        """The channel's room (`lock`: moderation in it waits for this transaction); NotFound when there
        is no such channel. A channel created a moment ago is asked of the channel service."""
        try:
            found = await self.channels.get(conn, "name", channel.strip())
        except (NotFound, BadRequest):
            raise NotFound(f'channel "{channel}" has no chat room', code="room_not_found") from None
        if lock:
            await store.lock_room(conn, room_id=found.channel_id)
        modes = await store.room_modes(conn, room_id=found.channel_id)
        return Room(room_id=found.channel_id, name=found.name, owner_id=found.owner_id, modes=modes)

    async def role(self, conn: Connection, room: Room, user_id: str) -> str:
        """A user's role in a room: "broadcaster", "moderator", "vip" or ""."""
        granted = await store.granted_role(conn, room_id=room.room_id, user_id=user_id)
        return domain.role_of(room, user_id, granted)

    async def check_moderator(self, conn: Connection, room: Room, actor_id: str, action: str) -> None:
        """Refuse unless `actor_id` may do `action` in `room`."""
        domain.check_moderator(await self.role(conn, room, actor_id), action, room.name)

    async def apply(self, req: pc.Moderate) -> pc.Moderated:
        """Check who may, apply, log, then tell the room."""
        if req.action in domain.ROLE_ACTIONS:
            return await self._set_role(req)
        async with self.pool.acquire() as conn, conn.transaction():
            room = await self.room(conn, req.channel, lock=True)
            actor_role = await self.role(conn, room, req.actor_id)
            domain.check_moderator(actor_role, req.action, room.name)
            outcome = await self._action(req.action)(conn, room, req, actor_role)
            await self._record(conn, room, req, outcome)
        await self._after_commit(room.room_id, outcome)
        return pc.Moderated(action=req.action, detail=outcome.detail)

    def _action(self, action: str) -> Action:
        if action in domain.MODE_CHANGES:
            return self._modes
        actions: dict[str, Action] = {
            "ban": self._ban,
            "timeout": self._ban,
            "unban": self._unban,
            "untimeout": self._unban,
            "delete": self._delete,
            "clear": self._clear,
            "block": self._term,
            "unblock": self._term,
        }
        return actions[action]

    async def _record(self, conn: Connection, room: Room, req: pc.Moderate, outcome: Outcome) -> None:
        event = pc.ModerationApplied(
            room_id=room.room_id,
            channel=room.name,
            actor_id=req.actor_id,
            action=req.action,
            target=outcome.target,
            detail=outcome.detail,
        )
        await store.add_log(conn, event, actor_username=req.actor_username)
        await add_event(conn, event)
        log.info("moderation_applied", room_id=room.room_id, action=req.action, target=outcome.target)

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

    async def _target_user(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> UserCopy:
        """The user a ban or timeout names (registered a moment ago: asked of identity), if they may be."""
        try:
            user = await self.users.get(conn, "username", req.target.strip())
        except (NotFound, BadRequest):
            raise NotFound(f'no user named "{req.target}"', code="user_not_found") from None
        domain.check_target(actor_role, await self.role(conn, room, user.user_id), user.username)
        return user

    async def _ban(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> Outcome:
        user = await self._target_user(conn, room, req, actor_role)
        until = domain.ban_until(req, utcnow())
        reason = req.reason[: domain.MAX_REASON]
        await store.put_ban(
            conn,
            room_id=room.room_id,
            user_id=user.user_id,
            until=until,
            reason=reason,
            actor_id=req.actor_id,
        )
        seqs = await store.delete_user_messages(conn, room_id=room.room_id, user_id=user.user_id)
        frame = pc.Purged(room_id=room.room_id, user_id=user.user_id, username=user.username, until=until)
        detail = domain.ban_detail(user.username, until, reason)
        return Outcome(detail=detail, target=user.username, frame=frame, seqs=seqs)

    async def _unban(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> Outcome:
        user = await self._target_user(conn, room, req, actor_role)
        timeout = req.action == "untimeout"
        if not await store.delete_ban(conn, room_id=room.room_id, user_id=user.user_id, timeout=timeout):
            kind = "timed out" if timeout else "banned"
            raise NotFound(f'"{user.username}" is not {kind} here', code=f"not_{kind.replace(' ', '_')}")
        return Outcome(detail=f"{user.username} may chat again", target=user.username)

    async def _delete(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> Outcome:
        found = await store.find_message(conn, message_id=req.target)
        if found is None or found.room_id != room.room_id:
            raise NotFound(f'no message "{req.target}" in this chat', code="message_not_found")
        domain.check_target(actor_role, await self.role(conn, room, found.user_id), "its author")
        await store.delete_message(conn, room_id=room.room_id, message_id=req.target)
        frame = pc.Deleted(id=req.target, room_id=room.room_id)
        return Outcome(
            detail=f"message {req.target} deleted", target=req.target, frame=frame, seqs=[found.seq]
        )

    async def _clear(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> Outcome:
        await store.clear_room(conn, room_id=room.room_id)
        return Outcome(detail="chat cleared", frame=pc.Cleared(room_id=room.room_id), purge=True)

    async def _modes(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> Outcome:
        modes = domain.MODE_CHANGES[req.action](room.modes, req.seconds)
        await store.set_modes(conn, room_id=room.room_id, modes=modes)
        frame = pc.ModesChanged(room_id=room.room_id, modes=modes)
        return Outcome(detail=f"room modes: {msgspec.json.encode(modes).decode()}", frame=frame)

    async def _term(self, conn: Connection, room: Room, req: pc.Moderate, actor_role: str) -> Outcome:
        term = clean_term(req.target)
        blocked = req.action == "block"
        changed = await store.set_term(
            conn, room_id=room.room_id, term=term, actor_id=req.actor_id, blocked=blocked
        )
        return Outcome(detail=domain.term_detail(term, blocked=blocked, changed=changed), target=term)

    async def _set_role(self, req: pc.Moderate) -> pc.Moderated:
        """/mod, /unmod, /vip, /unvip: the channel service owns roles; chat learns them from its events."""
        role, granted = domain.ROLE_ACTIONS[req.action]
        async with self.pool.acquire() as conn:
            room = await self.room(conn, req.channel)
            await self.check_moderator(conn, room, req.actor_id, req.action)
        change = await request(
            self.nc,
            pch.SET_ROLE,
            pch.SetRole(
                actor_id=req.actor_id, name=room.name, username=req.target, role=role, granted=granted
            ),
        )
        detail = domain.role_detail(change.username, role, granted=granted, changed=change.changed)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record(conn, room, req, Outcome(detail=detail, target=change.username))
        return pc.Moderated(action=req.action, detail=detail)
