"""The social service's copies of others' data: channels (owner, name) and users (name), kept from their
events; a channel or user not seen yet is asked of its owner once and then kept."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from libs.bus import NotFound, request
from libs.obs.logging import get_logger
from proto import channel as pc
from proto.identity import FIND_USER, FindUserRequest, UserRegistered
from services.social import store

__all__ = ["Directory"]

log = get_logger("social")


class Directory:
    """Channel and user look-ups over the service's own projection tables."""

    def __init__(self, pool: Any, nc: Client) -> None:
        self.pool = pool
        self.nc = nc

    async def channel(self, conn: Any, name: str) -> Any:
        """The channel row (id, name, owner_id, follower_count) by name, or NotFound."""
        canonical = name.strip().lower()
        row = await store.fetch_channel(conn, name=canonical)
        if row is not None:
            return row
        # Created a moment ago and its event not handled yet (or never created): ask its owner once.
        try:
            found = await request(self.nc, pc.GET, pc.GetChannel(name=canonical))
        except NotFound:
            raise NotFound(f'channel "{name}" does not exist', code="channel_not_found") from None
        await store.upsert_channel(conn, channel_id=found.id, name=found.name, owner_id=found.owner_id)
        log.info("channel_learned_on_miss", channel_id=found.id, channel=found.name)
        return await store.fetch_channel(conn, name=found.name)

    async def user(self, conn: Any, username: str) -> Any:
        """The user row (id, username) by name, or NotFound."""
        row = await store.find_user(conn, username=username.strip())
        if row is not None:
            return row
        # Registered a moment ago and its event not handled yet (or never registered): ask identity once.
        found = await request(self.nc, FIND_USER, FindUserRequest(username=username.strip()))
        await store.upsert_user(conn, user_id=found.id, username=found.username)
        log.info("user_learned_on_miss", user_id=found.id, username=found.username)
        return await store.find_user(conn, username=found.username)

    async def on_user_registered(self, event: UserRegistered) -> None:
        """identity.user.registered: keep the users projection (idempotent upsert)."""
        async with self.pool.acquire() as conn:
            await store.upsert_user(conn, user_id=event.user_id, username=event.username)

    async def on_channel_created(self, event: pc.ChannelCreated) -> None:
        """channel.channel.created: keep the channels projection (idempotent)."""
        async with self.pool.acquire() as conn:
            await store.upsert_channel(
                conn, channel_id=event.channel_id, name=event.name, owner_id=event.owner_id
            )
