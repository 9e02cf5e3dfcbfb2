"""One handler per request subject and per event the chat service takes; the rules are in domain.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import BadRequest, Forbidden, Route, encode, publish_encoded, route, utcnow
from libs.faults import failpoint
from libs.obs.logging import get_logger
from proto import channel as pch
from proto import chat as pc
from proto import social
from proto.identity import UserRegistered
from services.chat import domain, store
from services.chat.history import read_history
from services.chat.moderation import Moderation, role_of

__all__ = ["ChatHandlers", "Settings"]

log = get_logger("chat")


class Settings:
    """The chat rules' numbers, from the service config."""

    def __init__(self, *, rate: int, privileged_rate: int, window: int, admins: str) -> None:
        self.rate = rate
        self.privileged_rate = privileged_rate
        self.window = window
        self.admins = {a.strip().lower() for a in admins.split(",") if a.strip()}

    def limits(self, s: domain.Standing, modes: pc.Modes) -> pc.Limits:
        """The rate limit and slow mode that apply to `s`."""
        return pc.Limits(
            rate_messages=self.privileged_rate if s.privileged else self.rate,
            rate_window_seconds=self.window,
            slow_seconds=0 if s.privileged or s.role == "vip" else modes.slow_seconds,
            max_length=domain.MAX_LENGTH,
        )


def _emote_table(rows: list[Any]) -> dict[str, tuple[pc.EmoteImage, int, str]]:
    table: dict[str, tuple[pc.EmoteImage, int, str]] = {}
    for r in sorted(rows, key=lambda r: r["room_id"]):  # a channel emote wins over a global one
        image = pc.EmoteImage(
            id=r["emote_id"], code=r["code"], urls=pch.emote_urls(r["emote_id"]), animated=r["animated"]
        )
        table[r["code"]] = (image, r["tier"], r["room_id"])
    return table


class ChatHandlers:
    """The chat service's endpoints and projections over its pool and JetStream."""

    def __init__(
        self, pool: Any, nc: Client, js: JetStreamContext, moderation: Moderation, settings: Settings
    ) -> None:
        self.pool = pool
        self.nc = nc
        self.js = js
        self.moderation = moderation
        self.settings = settings

    def routes(self) -> list[Route[Any, Any]]:
        """Every request endpoint of the service."""
        return [
            route(pc.RESOLVE, self.resolve),
            route(pc.JOIN, self.join),
            route(pc.SEND, self.send),
            route(pc.MODERATE, self.moderation.apply),
            route(pc.MOD_LOG, self.moderation.mod_log),
            route(pc.BLOCKED_TERMS, self.moderation.blocked_terms),
        ]

    async def _standing(self, conn: Any, room: Any, user_id: str, username: str) -> domain.Standing:
        window_start = utcnow() - timedelta(seconds=self.settings.window)
        row = await store.standing(conn, room_id=room["room_id"], user_id=user_id, window_start=window_start)
        return domain.Standing(
            role=role_of(room, user_id, row["role"]),
            admin=username.lower() in self.settings.admins,
            sub_tier=row["sub_tier"] or 0,
            sub_months=row["sub_months"] or 0,
            followed_at=row["followed_at"],
            banned=bool(row["has_ban"]) and row["ban_until"] is None,
            ban_reason=row["ban_reason"] or "",
            timeout_until=row["ban_until"],
            last_sent_at=row["last_sent_at"],
            sent_in_window=row["sent_in_window"],
            oldest_in_window=row["oldest_in_window"],
        )

    async def resolve(self, req: pc.Resolve) -> pc.Room:
        """chat.resolve: a channel name's room id (never changes, so gateways cache it)."""
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
        return pc.Room(room_id=room["room_id"], channel=room["name"])

    async def join(self, req: pc.Join) -> pc.RoomState:
        """chat.join: history without deleted messages, the room's modes, the user's standing."""
        me = None
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
            if req.user_id:
                await store.upsert_user(conn, user_id=req.user_id, username=req.username)
                s = await self._standing(conn, room, req.user_id, req.username)
                reason, until = domain.blocked_reason(s, utcnow())
                me = pc.Viewer(
                    user_id=req.user_id,
                    username=req.username,
                    badges=domain.badges(s),
                    limits=self.settings.limits(s, domain.modes_of(room)),
                    blocked=reason,
                    blocked_until=until,
                )
        history = await read_history(self.nc, room["room_id"])
        if history:
            async with self.pool.acquire() as conn:
                gone = await store.deleted_among(conn, ids=[m.id for m in history])
            history = [m for m in history if m.id not in gone]
        return pc.RoomState(
            room_id=room["room_id"], channel=room["name"], modes=domain.modes_of(room), history=history, me=me
        )

    async def send(self, req: pc.Send) -> pc.Sent:
        """chat.send: a command is applied; a message is checked, stored in the room stream, then acked."""
        text = domain.clean_text(req.text)
        command = domain.parse_command(text)
        if command is not None:
            mod = domain.command_request(
                *command, channel=req.channel, actor_id=req.user_id, actor=req.username
            )
            done = await self.moderation.apply(mod)
            return pc.Sent(id=req.message_id, kind="command", detail=done.detail)
        action = text.startswith("/me")
        body = text[3:].strip() if action else text
        if not body:
            raise BadRequest("/me needs a message", code="empty_message")
        if not 8 <= len(req.message_id) <= 64:
            raise BadRequest("message_id must have 8 to 64 characters", code="invalid_message_id")
        async with self.pool.acquire() as conn:
            room = await self.moderation.room(conn, req.channel)
            async with conn.transaction():
                return await self._store_message(conn, room, req, body, action)

    async def _store_message(self, conn: Any, room: Any, req: pc.Send, body: str, action: bool) -> pc.Sent:
        room_id = room["room_id"]
        await store.lock_sender(conn, room_id=room_id, user_id=req.user_id)
        if await store.find_message(conn, message_id=req.message_id) is not None:
            return pc.Sent(id=req.message_id, kind="message", duplicate=True)
        now = utcnow()
        s = await self._standing(conn, room, req.user_id, req.username)
        modes = domain.modes_of(room)
        domain.check_send(s, modes, self.settings.limits(s, modes), now)
        emotes = _emote_table(await store.room_emotes(conn, room_id=room_id))
        parts = domain.fragments(body, domain.emote_lookup(emotes, room_id, s))
        if not s.privileged:
            if modes.emote_only and not domain.is_emote_only(parts):
                raise Forbidden("this chat is in emote-only mode: send emotes only", code="emote_only")
            term = domain.matched_term(
                body, [r["term"] for r in await store.blocked_terms(conn, room_id=room_id)]
            )
            if term is not None:
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

    # Projections of other services' events (idempotent) -------------------------------------------

    async def on_user(self, event: UserRegistered) -> None:
        """identity.user.registered: names for /ban and friends."""
        async with self.pool.acquire() as conn:
            await store.upsert_user(conn, user_id=event.user_id, username=event.username)

    async def on_channel(self, event: Any) -> None:
        """channel.channel.created, channel.role.*, channel.emote.*: rooms, roles and emotes."""
        async with self.pool.acquire() as conn:
            if isinstance(event, pch.ChannelCreated):
                await store.upsert_room(
                    conn, room_id=event.channel_id, name=event.name, owner_id=event.owner_id
                )
            elif isinstance(event, pch.RoleGranted | pch.RoleRevoked):
                granted = isinstance(event, pch.RoleGranted)
                await store.set_role(
                    conn, room_id=event.channel_id, user_id=event.user_id, role=event.role, granted=granted
                )
            elif isinstance(event, pch.EmoteAdded):
                await store.put_emote(
                    conn,
                    emote_id=event.emote_id,
                    room_id=event.channel_id,
                    code=event.code,
                    tier=event.tier,
                    animated=event.animated,
                )
            elif isinstance(event, pch.EmoteRemoved):
                await store.delete_emote(conn, emote_id=event.emote_id)

    async def on_social(self, event: Any) -> None:
        """social follows and subscriptions: followers-only mode, subscriber badges and emote tiers."""
        async with self.pool.acquire() as conn:
            if isinstance(event, social.Followed):
                await store.set_follow(
                    conn, room_id=event.channel_id, user_id=event.user_id, followed_at=event.followed_at
                )
            elif isinstance(event, social.Unfollowed):
                await store.set_follow(
                    conn, room_id=event.channel_id, user_id=event.user_id, followed_at=None
                )
            elif isinstance(event, social.SubscriptionState):
                await store.set_subscription(
                    conn,
                    room_id=event.channel_id,
                    user_id=event.user_id,
                    tier=event.tier,
                    months=event.cumulative_months,
                    period_end=event.period_end,
                    active=not isinstance(event, social.SubscriptionEnded),
                )
