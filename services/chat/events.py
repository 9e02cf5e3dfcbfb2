"""What chat keeps of others' events besides its copies of users and channels (those the runtime keeps):
moderators and VIPs and the emotes a room may use from the channel service, follows and subscriptions from
the social service. Versioned: each applies only an event newer than the last applied for its role,
emote, follow or subscription (libs.replica.Versions), so a repeat or a late, older event changes nothing."""

from __future__ import annotations

from libs.db import Pool
from libs.replica import Versions
from proto import channel as pch
from proto import social
from proto.base import Event
from services.chat import store
from services.chat.domain import Emote

__all__ = ["CHANNEL_EVENTS", "SOCIAL_EVENTS", "on_channel", "on_social"]

CHANNEL_EVENTS: tuple[type[Event], ...] = (
    pch.RoleGranted,
    pch.RoleRevoked,
    pch.EmoteAdded,
    pch.EmoteRemoved,
)
SOCIAL_EVENTS: tuple[type[Event], ...] = (
    social.Followed,
    social.Unfollowed,
    social.Subscribed,
    social.SubscriptionRenewed,
    social.SubscriptionChanged,
    social.SubscriptionEnded,
)


async def on_channel(pool: Pool, versions: Versions, event: Event) -> None:
    """channel.role.*: who moderates and who is a VIP; channel.emote.*: the emotes of a room (or all).
    An event older than the newest applied for its role or emote is ignored (a late grant after a revoke)."""
    async with pool.acquire() as conn, conn.transaction():
        match event:
            case pch.RoleGranted() | pch.RoleRevoked():
                if await versions.admit(conn, event) != "new":
                    return
                granted = isinstance(event, pch.RoleGranted)
                await store.set_role(
                    conn, room_id=event.channel_id, user_id=event.user_id, role=event.role, granted=granted
                )
            case pch.EmoteAdded():
                if await versions.admit(conn, event) != "new":
                    return
                emote = Emote(
                    emote_id=event.emote_id,
                    room_id=event.channel_id,
                    code=event.code,
                    tier=event.tier,
                    animated=event.animated,
                )
                await store.put_emote(conn, emote)
            case pch.EmoteRemoved():
                if await versions.admit(conn, event) == "new":
                    await store.delete_emote(conn, emote_id=event.emote_id)


async def on_social(pool: Pool, versions: Versions, event: Event) -> None:
    """social follows and subscriptions: followers-only mode, subscriber badges and emote tiers. An event
    older than the newest applied for its follow or subscription is ignored."""
    async with pool.acquire() as conn, conn.transaction():
        match event:
            case social.Followed() | social.Unfollowed():
                if await versions.admit(conn, event) != "new":
                    return
                followed_at = event.followed_at if isinstance(event, social.Followed) else None
                await store.set_follow(
                    conn, room_id=event.channel_id, user_id=event.user_id, followed_at=followed_at
                )
            case social.SubscriptionState():
                if await versions.admit(conn, event) != "new":
                    return
                await store.set_subscription(
                    conn,
                    room_id=event.channel_id,
                    user_id=event.user_id,
                    tier=event.tier,
                    months=event.cumulative_months,
                    period_end=event.period_end,
                    active=not isinstance(event, social.SubscriptionEnded),
                )
