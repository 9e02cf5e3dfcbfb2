"""One handler per request subject of the channel service (emotes: emotes.py); rules in domain.py, SQL in
store.py."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

import asyncpg
from nats.js.object_store import ObjectStore

from libs import paging
from libs.bus import Conflict, NotFound, Unauthorized, answers, new_id
from libs.db import Connection, Pool, add_event
from libs.obs.logging import get_logger
from libs.replica import Replica
from proto import channel as pc
from proto.base import Lookup
from proto.identity import UserCopy
from services.channel import domain, store
from services.channel.buckets import drop_objects, put_objects
from services.channel.domain import StoredChannel
from services.channel.images import process_image

__all__ = ["ChannelHandlers", "named", "owned"]

log = get_logger("channel")


async def named(conn: Connection, name: str, *, lock: bool = False) -> StoredChannel:
    """The channel called `name` in any case (its row locked until commit if told), or NotFound."""
    channel = await store.fetch_channel(conn, name=name.lower(), lock=lock)
    if channel is None:
        raise NotFound(f'channel "{name}" does not exist', code="channel_not_found")
    return channel


async def owned(
    conn: Connection, name: str, actor_id: str, action: str, *, lock: bool = True
) -> StoredChannel:
    """The channel `actor_id` owns (its row locked until commit unless told); NotFound or Forbidden."""
    channel = await named(conn, name, lock=lock)
    domain.check_owner(channel.owner_id, actor_id, channel=channel.name, action=action)
    return channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelHandlers:
    """One method per channel request (emotes: emotes.py), marked with the Rpc it answers."""

    pool: Pool
    images: ObjectStore  # the JetStream object store bucket proto.channel.IMAGE_BUCKET
    executor: Executor  # the image workers
    users: Replica[UserCopy]  # a user registered a moment ago is asked of identity (Replica.get)

    @answers(pc.CREATE)
    async def create(self, req: pc.CreateChannel) -> pc.Channel:
        """channel.create: one channel per user, under a free name."""
        name = domain.clean_name(req.name)
        fields = domain.new_fields(req)
        async with self.pool.acquire() as conn, conn.transaction():
            owned_name = await store.owned_channel(conn, owner_id=req.owner_id)
            if owned_name is not None:
                raise Conflict(
                    f'you already own channel "{owned_name}"; one channel per user', code="has_channel"
                )
            # The owner's name is shown at once, even before the copy has their registration.
            await self.users.get(conn, "user_id", req.owner_id)
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
            channel = await store.reload_channel(conn, channel_id=channel_id)
            await add_event(conn, domain.created_event(channel))
        log.info("channel_created", channel_id=channel_id, channel=name, owner_id=req.owner_id)
        return domain.channel_view(channel, actor_id=req.owner_id)

    @answers(pc.LOOKUP_CHANNEL)
    async def lookup_channel(self, req: Lookup) -> pc.ChannelCopy:
        """A channel as other services keep a copy of it, by channel_id or name (libs.replica asks this)."""
        by = domain.lookup_field(req.by)
        async with self.pool.acquire() as conn:
            found = await store.channel_copy(conn, by=by, value=req.value.strip())
        if found is None:
            raise NotFound(f'no channel with {by} "{req.value}"', code="channel_not_found")
        return found

    @answers(pc.LIST)
    async def list_channels(self, req: pc.ListChannels) -> pc.ChannelPage:
        """channel.list: search and filter, live channels first, then newest, by cursor."""
        limit = paging.check_limit(req.limit)
        after = paging.decode_cursor(req.cursor, domain.Cursor)
        q = domain.clean_query(req.q)
        async with self.pool.acquire() as conn:
            channels = await store.list_channels(
                conn,
                pattern=domain.like_pattern(q) if q else "",
                category=domain.clean_category(req.category) if req.category.strip() else "",
                tag=req.tag.strip(),
                live=req.live,
                after=after,
                limit=limit + 1,
            )
        page, next_cursor = paging.page(channels, limit, domain.cursor_after)
        return pc.ChannelPage(items=[domain.channel_view(c) for c in page], next_cursor=next_cursor)

    @answers(pc.GET)
    async def get(self, req: pc.GetChannel) -> pc.Channel:
        """channel.get: one channel by name (case-insensitive)."""
        async with self.pool.acquire() as conn:
            channel = await named(conn, req.name)
        return domain.channel_view(channel, actor_id=req.actor_id)

    @answers(pc.UPDATE)
    async def update(self, req: pc.UpdateChannel) -> pc.Channel:
        """channel.update: the owner changes some fields; an event names those that moved."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await owned(conn, req.name, req.actor_id, "edit it")
            fields, changed = domain.apply_update(domain.fields_of(channel), req)
            if not changed:
                return domain.channel_view(channel, actor_id=req.actor_id)
            await store.update_fields(conn, channel_id=channel.id, fields=fields)
            channel = await store.reload_channel(conn, channel_id=channel.id)
            await add_event(conn, domain.updated_event(channel, changed))
        log.info("channel_updated", channel_id=channel.id, changed=changed, version=channel.version)
        return domain.channel_view(channel, actor_id=req.actor_id)

    @answers(pc.ROTATE_KEY)
    async def rotate_key(self, req: pc.RotateKey) -> pc.StreamKey:
        """channel.rotate_key: a new stream key, shown once; the old one stops working at commit."""
        key, prefix, key_hash = domain.new_stream_key()
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await owned(conn, req.name, req.actor_id, "get its stream key")
            await store.set_stream_key(conn, channel_id=channel.id, key_hash=key_hash, prefix=prefix)
            await add_event(conn, pc.KeyRotated(channel_id=channel.id, name=channel.name, prefix=prefix))
        log.info("stream_key_rotated", channel_id=channel.id, prefix=prefix)
        return pc.StreamKey(stream_key=key, prefix=prefix, channel_id=channel.id)

    @answers(pc.CHECK_KEY)
    async def check_key(self, req: pc.CheckKey) -> pc.KeyOwner:
        """channel.check_key: which channel a stream key opens (ingest asks this), or Unauthorized."""
        async with self.pool.acquire() as conn:
            found = await store.fetch_key(conn, name=req.name.lower())
        if found is None or not domain.stream_key_matches(req.stream_key, found.stream_key_hash):
            raise Unauthorized(f'stream key is not valid for channel "{req.name}"', code="invalid_stream_key")
        return pc.KeyOwner(channel_id=found.id, owner_id=found.owner_id, name=found.name)

    @answers(pc.SET_IMAGE)
    async def set_image(self, req: pc.SetImage) -> pc.Image:
        """channel.set_image: check and re-encode in a worker thread, store, then switch the row over."""
        action = f"change its {req.kind}"
        async with self.pool.acquire() as conn:  # refuse early, before spending CPU on the image
            await owned(conn, req.name, req.actor_id, action, lock=False)
        loop = asyncio.get_running_loop()
        img = await loop.run_in_executor(self.executor, process_image, req.data, req.kind, req.content_type)
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await owned(conn, req.name, req.actor_id, action)
            # Stored under a new name before the row points at it: a failure anywhere leaves the old
            # image served, and no reader sees a row naming bytes that are not there yet.
            await put_objects(self.images, {pc.image_object_name(channel.id, req.kind, img.etag): img.data})
            image = await store.put_image(conn, channel_id=channel.id, kind=req.kind, image=img)
            await add_event(conn, domain.image_event(channel, req.kind, image))
        old = channel.image(req.kind)
        if old is not None and old.etag != img.etag:
            await drop_objects(self.images, [pc.image_object_name(channel.id, req.kind, old.etag)])
        log.info("image_updated", channel_id=channel.id, kind=req.kind, etag=img.etag, bytes=len(img.data))
        return image

    @answers(pc.SET_ROLE)
    async def set_role(self, req: pc.SetRole) -> pc.RoleChange:
        """channel.set_role: the owner grants or revokes moderator or VIP by username."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await owned(conn, req.name, req.actor_id, f"change its {req.role}s")
            user = await self.users.get(conn, "username", req.username.strip())
            change = pc.RoleChange(
                user_id=user.user_id,
                username=user.username,
                role=req.role,
                granted=req.granted,
                changed=await self._apply_role(conn, channel, user, req),
            )
        log.info(
            "role_set",
            channel_id=channel.id,
            user_id=change.user_id,
            role=req.role,
            granted=req.granted,
            changed=change.changed,
        )
        return change

    async def _apply_role(
        self, conn: Connection, channel: StoredChannel, user: UserCopy, req: pc.SetRole
    ) -> bool:
        held = await store.fetch_role(conn, channel_id=channel.id, user_id=user.user_id)
        domain.check_role_change(
            owner_id=channel.owner_id,
            user_id=user.user_id,
            username=user.username,
            channel=channel.name,
            role=req.role,
            held=held,
            granted=req.granted,
        )
        channel_id, user_id = channel.id, user.user_id
        if req.granted:
            if held is not None:
                return False
            await store.put_role(conn, channel_id=channel_id, user_id=user_id, role=req.role)
        elif not await store.delete_role(conn, channel_id=channel_id, user_id=user_id, role=req.role):
            return False
        event_type = pc.RoleGranted if req.granted else pc.RoleRevoked
        version = await store.next_version(conn, aggregate=pc.role_aggregate(channel_id, user_id))
        event = event_type(
            channel_id=channel_id,
            channel_name=channel.name,
            user_id=user_id,
            username=user.username,
            role=req.role,
            version=version,
        )
        await add_event(conn, event)
        return True

    @answers(pc.LIST_ROLES)
    async def list_roles(self, req: pc.ListRoles) -> pc.RoleList:
        """channel.list_roles: the moderators (or VIPs) of a channel, oldest first."""
        async with self.pool.acquire() as conn:
            channel = await named(conn, req.name)
            members = await store.list_roles(conn, channel_id=channel.id, role=req.role)
        return pc.RoleList(items=members)
