"""Wires the chat service: config, schema, streams, endpoints, projections of other services' events."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from libs.bus import ConsumerSpec, utcnow
from libs.obs.logging import get_logger
from libs.runtime import Runtime, ServiceConfig
from proto import channel as pch
from proto import chat as pc
from proto import identity, social
from services.chat import store
from services.chat.handlers import ChatHandlers, Settings
from services.chat.moderation import Moderation

__all__ = ["ChatConfig", "run"]

log = get_logger("chat")

MIGRATIONS = Path(__file__).parent / "migrations"


class ChatConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the chat service."""

    # Messages per user per room per window; broadcaster and moderators get the privileged rate.
    chat_rate_messages: int = 20
    chat_privileged_rate_messages: int = 100
    chat_rate_window_seconds: int = 30
    # Usernames (comma-separated) shown with the platform admin badge.
    platform_admins: str = ""


async def _prune(pool: Any, every: float = 3600.0) -> None:
    """Forget message rows older than the room stream keeps them."""
    while True:
        before = utcnow() - timedelta(seconds=pc.ROOM_STREAM.max_age_seconds)
        async with pool.acquire() as conn:
            removed = await store.prune_messages(conn, before=before)
        log.info("messages_pruned", removed=removed)
        await asyncio.sleep(every)


async def run(config: ChatConfig) -> None:
    """Run the chat service until a stop signal."""
    # Other services own CHANNEL, SOCIAL and IDENTITY; declaring them too (same spec from proto/) lets our
    # durable consumers bind whichever service starts first.
    streams = [pc.STREAM, pc.ROOM_STREAM, pch.STREAM, social.STREAM, identity.STREAM]
    async with Runtime("chat", config, schema="chat", migrations=MIGRATIONS, streams=streams) as rt:
        settings = Settings(
            rate=config.chat_rate_messages,
            privileged_rate=config.chat_privileged_rate_messages,
            window=config.chat_rate_window_seconds,
            admins=config.platform_admins,
        )
        handlers = ChatHandlers(
            rt.pool, rt.bus, rt.jetstream, Moderation(rt.pool, rt.bus, rt.jetstream), settings
        )
        await rt.serve(handlers.routes())
        rt.consume(
            ConsumerSpec(
                stream=identity.STREAM.name, durable="chat-users", events=(identity.UserRegistered,)
            ),
            handlers.on_user,
        )
        channel_events = (
            pch.ChannelCreated,
            pch.RoleGranted,
            pch.RoleRevoked,
            pch.EmoteAdded,
            pch.EmoteRemoved,
        )
        rt.consume(
            ConsumerSpec(stream=pch.STREAM.name, durable="chat-channels", events=channel_events, batch=1),
            handlers.on_channel,
        )
        social_events = (
            social.Followed,
            social.Unfollowed,
            social.Subscribed,
            social.SubscriptionRenewed,
            social.SubscriptionChanged,
            social.SubscriptionEnded,
        )
        rt.consume(
            ConsumerSpec(stream=social.STREAM.name, durable="chat-social", events=social_events, batch=1),
            handlers.on_social,
        )
        rt.spawn(_prune(rt.pool), name="prune-messages")
        await rt.wait()
