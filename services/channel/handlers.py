"""One handler per request subject and per event the channel service takes; the rules are in domain.py."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

import asyncpg
from nats.errors import Error as NatsError

from libs.bus import (
    BadRequest,
    Conflict,
    NotFound,
    Route,
    ServiceUnavailable,
    Unauthorized,
    new_id,
    request,
    route,
)
from libs.db import add_event
from libs.obs.logging import get_logger
from proto import channel as pc
from proto.identity import FIND_USER, FindUserRequest, UserRegistered
from proto.ingest import SessionEnded, SessionStarted
from services.channel import domain, store
from services.channel.images import Processed, process_image

__all__ = ["ChannelHandlers"]

log = get_logger("channel")

Q_MAX = 100


def _image_event(row: Any, kind: str, img: Processed) -> pc.ImageUpdated:
    return pc.ImageUpdated(
        channel_id=row["id"],
        channel_name=row["name"],
        kind=kind,
        etag=img.etag,
        content_type=img.content_type,
        width=img.width,
        height=img.height,
    )


def _missing(name: str) -> NotFound:
    return NotFound(f'channel "{name}" does not exist', code="channel_not_found")


class ChannelHandlers:
    """The channel service's endpoints and event handlers over its pool, image bucket and image workers."""

    def __init__(self, pool: Any, images: Any, executor: Executor, nc: Any = None) -> None:
        self.pool = pool
        self.images = images  # the JetStream object store bucket proto.channel.IMAGE_BUCKET
        self.executor = executor
        self.nc = nc  # asks identity for a user registered a moment ago (see _user)

    def routes(self) -> list[Route[Any, Any]]:
        """Every request endpoint of the service."""
        return [
            route(pc.CREATE, self.create),
            route(pc.LIST, self.list),
            route(pc.GET, self.get),
            route(pc.UPDATE, self.update),
            route(pc.ROTATE_KEY, self.rotate_key),
            route(pc.CHECK_KEY, self.check_key),
            route(pc.SET_IMAGE, self.set_image),
            route(pc.SET_ROLE, self.set_role),
            route(pc.LIST_ROLES, self.list_roles),
        ]

    async def _owned(self, conn: Any, name: str, actor_id: str, action: str, *, lock: bool = True) -> Any:
        """The channel `actor_id` owns, locked until commit; NotFound or Forbidden otherwise."""
        row = await store.fetch_channel(conn, name=name.lower(), lock=lock)
        if row is None:
            raise _missing(name)
        domain.check_owner(row["owner_id"], actor_id, channel=row["name"], action=action)
        return row

    async def _user(self, conn: Any, username: str) -> Any:
        """The user by name from our copy; one registered a moment ago is asked of identity once."""
        user = await store.find_user(conn, username=username)
        if user is None and self.nc is not None:
            found = await request(self.nc, FIND_USER, FindUserRequest(username=username))
            await store.upsert_user(conn, user_id=found.id, username=found.username)
            user = await store.find_user(conn, username=found.username)
        if user is None:
            raise NotFound(f'no user named "{username}"', code="user_not_found")
        return user

    async def create(self, req: pc.CreateChannel) -> pc.Channel:
        """channel.create: one channel per user, under a free name."""
        name = domain.clean_name(req.name)
        fields = domain.new_fields(req)
        async with self.pool.acquire() as conn, conn.transaction():
            owned = await store.owned_channel(conn, owner_id=req.owner_id)
            if owned is not None:
                raise Conflict(f'you already own channel "{owned}"; one channel per user', code="has_channel")
            if req.owner_username:
                await store.upsert_user(conn, user_id=req.owner_id, username=req.owner_username)
            channel_id = new_id()
            try:
                await store.insert_channel(
                    conn, channel_id=channel_id, owner_id=req.owner_id, name=name, fields=fields
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "channels_one_per_owner":
                    raise Conflict(
                        "you already own a channel; one channel per user", code="has_channel"
                    ) from None
                raise Conflict(f'channel name "{name}" is taken', code="name_taken") from None
            row = await store.reload_channel(conn, channel_id=channel_id)
            await add_event(
                conn,
                pc.ChannelCreated(
                    channel_id=channel_id,
                    name=name,
                    owner_id=req.owner_id,
                    title=fields.title,
                    category=fields.category,
                    tags=fields.tags,
                    language=fields.language,
                    created_at=row["created_at"],
                ),
            )
        log.info("channel_created", channel_id=channel_id, channel=name, owner_id=req.owner_id)
        return domain.channel_view(row, actor_id=req.owner_id)

    async def list(self, req: pc.ListChannels) -> pc.ChannelPage:
        """channel.list: search and filter, live channels first, then newest, by cursor."""
        limit = domain.check_limit(req.limit)
        after = domain.decode_cursor(req.cursor) if req.cursor else None
        q = req.q.strip()
        if len(q) > Q_MAX:
            raise BadRequest(f"q is {len(q)} characters long; at most {Q_MAX}", code="invalid_query")
        async with self.pool.acquire() as conn:
            rows = await store.list_channels(
                conn,
                pattern=domain.like_pattern(q) if q else "",
                category=domain.clean_category(req.category) if req.category.strip() else "",
                tag=req.tag.strip(),
                live=req.live,
                after=after,
                limit=limit + 1,
            )
        items = [domain.channel_view(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = domain.encode_cursor(domain.Cursor(last.live, last.created_at, last.id))
        return pc.ChannelPage(items=items, next_cursor=next_cursor)

    async def get(self, req: pc.GetChannel) -> pc.Channel:
        """channel.get: one channel by name (case-insensitive)."""
        async with self.pool.acquire() as conn:
            row = await store.fetch_channel(conn, name=req.name.lower())
        if row is None:
            raise _missing(req.name)
        return domain.channel_view(row, actor_id=req.actor_id)

    async def update(self, req: pc.UpdateChannel) -> pc.Channel:
        """channel.update: the owner changes some fields; an event names those that moved."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, req.name, req.actor_id, "edit it")
            fields, changed = domain.apply_update(domain.fields_of(row), req)
            if not changed:
                return domain.channel_view(row, actor_id=req.actor_id)
            await store.update_fields(conn, channel_id=row["id"], fields=fields)
            await add_event(
                conn,
                pc.ChannelUpdated(
                    channel_id=row["id"], name=row["name"], changed=changed, **domain.fields_dict(fields)
                ),
            )
            row = await store.reload_channel(conn, channel_id=row["id"])
        log.info("channel_updated", channel_id=row["id"], changed=changed)
        return domain.channel_view(row, actor_id=req.actor_id)

    async def rotate_key(self, req: pc.RotateKey) -> pc.StreamKey:
        """channel.rotate_key: a new stream key, shown once; the old one stops working at commit."""
        key, prefix, key_hash = domain.new_stream_key()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, req.name, req.actor_id, "get its stream key")
            await store.set_stream_key(conn, channel_id=row["id"], key_hash=key_hash, prefix=prefix)
            await add_event(conn, pc.KeyRotated(channel_id=row["id"], name=row["name"], prefix=prefix))
        log.info("stream_key_rotated", channel_id=row["id"], prefix=prefix)
        return pc.StreamKey(stream_key=key, prefix=prefix, channel_id=row["id"])

    async def check_key(self, req: pc.CheckKey) -> pc.KeyOwner:
        """channel.check_key: which channel a stream key opens (ingest asks this), or Unauthorized."""
        async with self.pool.acquire() as conn:
            row = await store.fetch_key(conn, name=req.name.lower())
        if row is None or not domain.stream_key_matches(req.stream_key, row["stream_key_hash"]):
            raise Unauthorized(f'stream key is not valid for channel "{req.name}"', code="invalid_stream_key")
        return pc.KeyOwner(channel_id=row["id"], owner_id=row["owner_id"], name=row["name"])

    async def set_image(self, req: pc.SetImage) -> pc.Image:
        """channel.set_image: check and re-encode in a worker thread, store, then switch the row over."""
        async with self.pool.acquire() as conn:  # refuse early, before spending CPU on the image
            await self._owned(conn, req.name, req.actor_id, f"change its {req.kind}", lock=False)
        loop = asyncio.get_running_loop()
        img = await loop.run_in_executor(self.executor, process_image, req.data, req.kind, req.content_type)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, req.name, req.actor_id, f"change its {req.kind}")
            # Stored under a new name before the row points at it: a failure anywhere leaves the old
            # image served, and no reader sees a row naming bytes that are not there yet.
            await self._store_object(pc.image_object_name(row["id"], req.kind, img.etag), img.data)
            updated_at = await store.put_image(
                conn,
                channel_id=row["id"],
                kind=req.kind,
                etag=img.etag,
                content_type=img.content_type,
                width=img.width,
                height=img.height,
            )
            await add_event(conn, _image_event(row, req.kind, img))
        await self._drop_old_image(row["id"], req.kind, row[f"{req.kind}_etag"], img.etag)
        log.info("image_updated", channel_id=row["id"], kind=req.kind, etag=img.etag, bytes=len(img.data))
        return pc.Image(
            etag=img.etag,
            content_type=img.content_type,
            width=img.width,
            height=img.height,
            updated_at=updated_at,
        )

    async def _store_object(self, name: str, data: bytes) -> None:
        try:
            await self.images.put(name, data)
        except (NatsError, TimeoutError) as exc:
            log.warning("image_store_failed", object=name, error=str(exc))
            raise ServiceUnavailable(
                "the image store is not reachable; try again", code="image_store"
            ) from None

    async def _drop_old_image(self, channel_id: str, kind: str, old: str | None, new: str) -> None:
        if old is None or old == new:
            return
        try:
            await self.images.delete(pc.image_object_name(channel_id, kind, old))
        except Exception as exc:  # an orphan costs a few KB; the upload itself succeeded
            log.warning("old_image_not_deleted", channel_id=channel_id, kind=kind, etag=old, error=str(exc))

    async def set_role(self, req: pc.SetRole) -> pc.RoleChange:
        """channel.set_role: the owner grants or revokes moderator or VIP by username."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, req.name, req.actor_id, f"change its {req.role}s")
            user = await self._user(conn, req.username)
            change = pc.RoleChange(
                user_id=user["id"],
                username=user["username"],
                role=req.role,
                granted=req.granted,
                changed=await self._apply_role(conn, row, user, req),
            )
        log.info(
            "role_set",
            channel_id=row["id"],
            user_id=change.user_id,
            role=req.role,
            granted=req.granted,
            changed=change.changed,
        )
        return change

    async def _apply_role(self, conn: Any, row: Any, user: Any, req: pc.SetRole) -> bool:
        channel_id, user_id = row["id"], user["id"]
        held = await store.fetch_role(conn, channel_id=channel_id, user_id=user_id)
        domain.check_role_change(
            owner_id=row["owner_id"],
            user_id=user_id,
            username=user["username"],
            channel=row["name"],
            role=req.role,
            held=held,
            granted=req.granted,
        )
        if req.granted:
            if held is not None:
                return False
            await store.put_role(conn, channel_id=channel_id, user_id=user_id, role=req.role)
        elif not await store.delete_role(conn, channel_id=channel_id, user_id=user_id, role=req.role):
            return False
        event_type = pc.RoleGranted if req.granted else pc.RoleRevoked
        event = event_type(
            channel_id=channel_id,
            channel_name=row["name"],
            user_id=user_id,
            username=user["username"],
            role=req.role,
        )
        await add_event(conn, event)
        return True

    async def list_roles(self, req: pc.ListRoles) -> pc.RoleList:
        """channel.list_roles: the moderators (or VIPs) of a channel, oldest first."""
        async with self.pool.acquire() as conn:
            row = await store.fetch_channel(conn, name=req.name.lower())
            if row is None:
                raise _missing(req.name)
            rows = await store.list_roles(conn, channel_id=row["id"], role=req.role)
        return pc.RoleList(
            items=[
                pc.RoleMember(
                    user_id=r["user_id"], username=r["username"], role=r["role"], granted_at=r["granted_at"]
                )
                for r in rows
            ]
        )

    async def on_user_registered(self, event: UserRegistered) -> None:
        """identity.user.registered: keep the local user projection (idempotent upsert)."""
        async with self.pool.acquire() as conn:
            await store.upsert_user(conn, user_id=event.user_id, username=event.username)

    async def on_session(self, event: SessionStarted | SessionEnded) -> None:
        """stream.session.started/ended: the channel is live while it has an open session."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Locked: two replicas handling a start and an end of one channel must not interleave.
            if not await store.lock_channel(conn, channel_id=event.channel_id):
                log.warning(
                    "session_for_unknown_channel", channel_id=event.channel_id, session_id=event.session_id
                )
                return
            if isinstance(event, SessionStarted):
                await store.record_session_start(
                    conn,
                    session_id=event.session_id,
                    channel_id=event.channel_id,
                    started_at=event.started_at,
                )
            else:
                await store.record_session_end(
                    conn,
                    session_id=event.session_id,
                    channel_id=event.channel_id,
                    started_at=event.started_at,
                    ended_at=event.ended_at,
                )
            live = await store.refresh_live(conn, channel_id=event.channel_id)
        log.info(
            "channel_live_state",
            channel_id=event.channel_id,
            session_id=event.session_id,
            live=live["live_session_id"] is not None,
        )
