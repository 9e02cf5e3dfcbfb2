"""chat's request handlers: resolve, join, send, and moderation's endpoints. Thin: the rules are in
`domain` and `text`, SQL in `store`, moderation actions in `moderation`, the room stream in `history`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import BadRequest, Forbidden, answers, encode, publish_encoded, utcnow
from libs.db import Connection, Pool
from libs.faults import failpoint
from proto import chat as pc
from services.chat import domain, store, text
from services.chat.domain import Room
from services.chat.history import read_history
from services.chat.moderation import Moderation

__all__ = ["ChatHandlers"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatHandlers:
    """One method per chat request, marked with the Rpc it answers (`routes_of` collects them)."""

    pool: Pool
    nc: Client
    js: JetStreamContext
    moderation: Moderation
    settings: domain.Settings

    async def _standing(self, conn: Connection, room: Room, user_id: str, username: str) -> domain.Standing:
        window_start = utcnow() - timedelta(seconds=self.settings.window)
        stored = await store.standing(conn, room_id=room.room_id, user_id=user_id, window_start=window_start)
        return domain.in_room(stored, room, user_id, username, self.settings)

    @answers(pc.RESOLVE)
    async def resolve(self, req: pc.Resolve) -> pc.Room:
        """A channel name's room id (never changes, so gateways cache it)."""
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
        return pc.Room(room_id=room.room_id, channel=room.name)

    @answers(pc.JOIN)
    async def join(self, req: pc.Join) -> pc.RoomState:
        """History without deleted messages, the room's modes, the user's standing."""
        me = None
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
            if req.user_id:
                s = await self._standing(conn, room, req.user_id, req.username)
                reason, until = domain.blocked_reason(s, utcnow())
                me = pc.Viewer(
                    user_id=req.user_id,
                    username=req.username,
                    badges=domain.badges(s),
                    limits=self.settings.limits(s, room.modes),
                    blocked=reason,
                    blocked_until=until,
                )
        history = await read_history(self.nc, room.room_id)
        if history:
            async with self.pool.acquire() as conn:
                gone = await store.deleted_among(conn, ids=[m.id for m in history])
            history = [m for m in history if m.id not in gone]
        return pc.RoomState(room_id=room.room_id, channel=room.name, modes=room.modes, history=history, me=me)

    @answers(pc.SEND)
    async def send(self, req: pc.Send) -> pc.Sent:
        """A command is applied; a message is checked, stored in the room stream, then acked."""
        line = text.clean_text(req.text)
        command = text.parse_command(line)
        if command is not None:
            mod = text.command_request(
                *command, channel=req.channel, actor_id=req.user_id, actor=req.username
            )
            done = await self.moderation.apply(mod)
            return pc.Sent(id=req.message_id, kind="command", detail=done.detail)
        action = line.startswith("/me")
        body = line[3:].strip() if action else line
        if not body:
            raise BadRequest("/me needs a message", code="empty_message")
        if not 8 <= len(req.message_id) <= 64:
            raise BadRequest("message_id must have 8 to 64 characters", code="invalid_message_id")
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
            async with conn.transaction():
                return await self._store_message(conn, room, req, body, action)

    async def _store_message(
        self, conn: Connection, room: Room, req: pc.Send, body: str, action: bool
    ) -> pc.Sent:
        room_id = room.room_id
        await store.lock_sender(conn, room_id=room_id, user_id=req.user_id)
        if await store.find_message(conn, message_id=req.message_id) is not None:
            return pc.Sent(id=req.message_id, kind="message", duplicate=True)
        now = utcnow()
        s = await self._standing(conn, room, req.user_id, req.username)
        domain.check_send(s, room.modes, self.settings.limits(s, room.modes), now)
        emotes = domain.emote_table(await store.room_emotes(conn, room_id=room_id))
        parts = text.fragments(body, domain.emote_lookup(emotes, room_id, s))
        if not s.privileged:
            if room.modes.emote_only and not text.is_emote_only(parts):
                raise Forbidden("this chat is in emote-only mode: send emotes only", code="emote_only")
            terms = [t.term for t in await store.blocked_terms(conn, room_id=room_id)]
            if text.matched_term(body, terms) is not None:
                raise Forbidden("message contains a term blocked in this chat", code="blocked_term")
        message = pc.ChatMessage(
            id=req.message_id,
            room_id=room_id,
            sender=pc.Sender(id=req.user_id, username=req.username, badges=domain.badges(s)),
            fragments=parts,
            sent_at=now,
            action=action,
        )
        # Stored in the stream (deduplicated by id) before the row and the ack: an acked message is
        # never lost, and a retry after a crash here finds the first copy instead of adding a second.
        ack = await publish_encoded(self.js, pc.room_subject(room_id), encode(message), msg_id=req.message_id)
        failpoint("chat.after_publish")
        await store.insert_message(
            conn, message_id=req.message_id, room_id=room_id, user_id=req.user_id, seq=ack.seq, sent_at=now
        )
        return pc.Sent(id=req.message_id, kind="message", duplicate=bool(ack.duplicate))

    @answers(pc.MODERATE)
    async def moderate(self, req: pc.Moderate) -> pc.Moderated:
        """A moderation action from REST (chat commands come through `send`)."""
        return await self.moderation.apply(req)

    @answers(pc.MOD_LOG)
    async def mod_log(self, req: pc.ModLogQuery) -> pc.ModLog:
        """The room's moderation actions, newest first (broadcaster only)."""
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
            await self.moderation.check_moderator(conn, room, req.actor_id, "mod")
            entries = await store.list_log(conn, room_id=room.room_id, limit=max(1, min(req.limit, 500)))
        return pc.ModLog(items=entries)

    @answers(pc.BLOCKED_TERMS)
    async def blocked_terms(self, req: pc.TermsQuery) -> pc.TermList:
        """The room's blocked terms (broadcaster and moderators)."""
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
            await self.moderation.check_moderator(conn, room, req.actor_id, "block")
            terms = await store.blocked_terms(conn, room_id=room.room_id)
        return pc.TermList(items=terms)
