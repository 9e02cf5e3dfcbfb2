"""Wires the chat service: runtime (NATS, schema, outbox relay), its copies of users and channels, the
request handlers, consumers of roles, emotes, follows and subscriptions, and the message prune worker.
Settings: services/chat/config.py."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from libs.bus import ConsumerSpec, routes_of
from libs.runtime import Runtime
from proto import channel as pch
from proto import chat as pc
from proto import identity, social
from services.chat import events, history
from services.chat.config import PRUNE_SECONDS, ChatConfig
from services.chat.handlers import ChatHandlers
from services.chat.moderation import Moderation

__all__ = ["ChatConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: ChatConfig) -> None:
    """Run the chat service until a stop signal."""
    # social owns SOCIAL; declaring it too (same spec from proto/) lets our durable consumer bind whichever
    # service starts first (keep_copy declares the identity and channel streams).
    streams = [pc.STREAM, pc.ROOM_STREAM, social.STREAM]
    async with Runtime("chat", config, schema="chat", migrations=MIGRATIONS, streams=streams) as rt:
        users = await rt.keep_copy(identity.USER)
        channels = await rt.keep_copy(pch.CHANNEL)
        versions = await rt.keep_versions()
        moderation = Moderation(pool=rt.pool, nc=rt.bus, js=rt.jetstream, users=users, channels=channels)
        handlers = ChatHandlers(
            pool=rt.pool, nc=rt.bus, js=rt.jetstream, moderation=moderation, settings=config.settings()
        )
        await rt.serve(routes_of(handlers))
        rt.consume(
            ConsumerSpec(
                stream=pch.STREAM.name, durable="chat-channels", events=events.CHANNEL_EVENTS, batch=1
            ),
            partial(events.on_channel, rt.pool, versions),
        )
        rt.consume(
            ConsumerSpec(
                stream=social.STREAM.name, durable="chat-social", events=events.SOCIAL_EVENTS, batch=1
            ),
            partial(events.on_social, rt.pool, versions),
        )
        rt.worker("chat-prune", partial(history.prune, rt.pool), every=PRUNE_SECONDS)
        await rt.wait()
