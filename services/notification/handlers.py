"""Event handlers of the notification service: channel and follower projections, go-live, follows and
subscriptions for the channel owner. Requests are in endpoints.py; the rules in domain.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client

from libs.bus import RetryLater
from libs.obs.logging import get_logger
from proto.channel import ChannelCreated
from proto.ingest import SessionEnded, SessionStarted
from proto.notification import user_subject
from proto.social import Followed, Subscribed, Unfollowed
from services.notification import delivery_store as ds
from services.notification import store
from services.notification.domain import is_reconnect, notification_view
from services.notification.messages import event_body, message_id, wrap

__all__ = ["EventHandlers"]

log = get_logger("notification")

_encoder = msgspec.json.Encoder()


async def queue_webhooks(conn: Any, event: Any, channel_id: str) -> int:
    """Queue the event to the channel's enabled webhooks of its type; returns how many."""
    kind, body = event_body(event)
    hooks = await ds.enabled_webhooks(conn, channel_id=channel_id, kind=kind)
    for hook in hooks:
        await ds.add_delivery(
            conn,
            webhook_id=hook["id"],
            message_id=message_id(event.event_id, hook["id"]),
            message_type="notification",
            body=wrap(hook["id"], kind, channel_id, body),
        )
    return len(hooks)


class EventHandlers:
    """Consumers' handlers over the pool; `wake_*` nudge the background workers after a commit."""

    def __init__(
        self, pool: Any, nc: Client, *, grace_seconds: float, wake_fanout: Callable[[], None],
        wake_webhooks: Callable[[], None],
    ) -> None:  # fmt: skip
        self.pool = pool
        self.nc = nc
        self.grace = grace_seconds
        self.wake_fanout = wake_fanout
        self.wake_webhooks = wake_webhooks

    async def on_channel_created(self, event: ChannelCreated) -> None:
        """channel.channel.created: remember the channel's name and owner."""
        async with self.pool.acquire() as conn:
            await store.upsert_channel(
                conn, channel_id=event.channel_id, name=event.name, owner_id=event.owner_id
            )

    async def on_session(self, event: SessionStarted | SessionEnded) -> None:
        """stream.session.started/ended: queue a fan-out for a real new session (not a reconnect within
        the grace period) and the stream.online/offline webhooks."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.upsert_channel(
                conn, channel_id=event.channel_id, name=event.channel_name, owner_id=None
            )
            await store.lock_channel_sessions(conn, channel_id=event.channel_id)
            if isinstance(event, SessionEnded):
                notify, hooks = False, await self._ended(conn, event)
            else:
                started = await self._started(conn, event)
                if started is None:
                    return
                notify, hooks = started
        log.info(
            "session_seen",
            session_id=event.session_id,
            channel_id=event.channel_id,
            kind=type(event).subject,
            notify=notify,
            webhooks=hooks,
        )
        if notify:
            self.wake_fanout()
        if hooks:
            self.wake_webhooks()

    async def _ended(self, conn: Any, event: SessionEnded) -> int:
        ended = await store.end_session(
            conn,
            session_id=event.session_id,
            channel_id=event.channel_id,
            started_at=event.started_at,
            ended_at=event.ended_at,
        )
        return await queue_webhooks(conn, event, event.channel_id) if ended else 0

    async def _started(self, conn: Any, event: SessionStarted) -> tuple[bool, int] | None:
        """(notify, webhooks queued), or None for a session seen already."""
        if await store.session_known(conn, session_id=event.session_id):
            return None
        prev = await store.previous_session(conn, channel_id=event.channel_id, before=event.started_at)
        notify = not is_reconnect(
            prev["started_at"] if prev else None,
            prev["ended_at"] if prev else None,
            event.started_at,
            self.grace,
        )
        await store.insert_session(
            conn, session_id=event.session_id, channel_id=event.channel_id, started_at=event.started_at,
            notified=notify,
        )  # fmt: skip
        if notify:
            await store.add_fanout_job(
                conn, session_id=event.session_id, channel_id=event.channel_id,
                channel_name=event.channel_name, started_at=event.started_at,
            )  # fmt: skip
        return notify, await queue_webhooks(conn, event, event.channel_id)

    async def on_follow(self, event: Followed | Unfollowed) -> None:
        """social.channel.followed/unfollowed: keep the follower projection; tell the owner of a follow."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.upsert_channel(
                conn, channel_id=event.channel_id, name=event.channel_name, owner_id=None
            )
            if isinstance(event, Unfollowed):
                await store.remove_follow(
                    conn, channel_id=event.channel_id, user_id=event.user_id, before=event.occurred_at
                )
                return
            await store.add_follow(
                conn, channel_id=event.channel_id, user_id=event.user_id, followed_at=event.followed_at
            )
        await self._tell_owner(event, "follow", tier=0)

    async def on_subscribed(self, event: Subscribed) -> None:
        """social.subscription.started: tell the channel's owner."""
        await self._tell_owner(event, "subscribe", tier=event.tier)

    async def _tell_owner(self, event: Followed | Subscribed, kind: str, *, tier: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await store.channel_by_id(conn, channel_id=event.channel_id)
            if channel is None or channel["owner_id"] is None:
                # channel.channel.created not seen yet (another stream): try again shortly.
                raise RetryLater(f'owner of channel "{event.channel_id}" not known yet', delay=1.0)
            row = await store.add_notification(
                conn,
                user_id=channel["owner_id"],
                kind=kind,
                dedup_key=f"{kind}:{event.event_id}",
                channel_id=event.channel_id,
                channel_name=event.channel_name,
                actor_username=event.username,
                tier=tier,
            )
            hooks = await queue_webhooks(conn, event, event.channel_id)
        if row is not None:
            payload = _encoder.encode(notification_view(row))
            await self.nc.publish(user_subject(channel["owner_id"]), payload)
        if hooks:
            self.wake_webhooks()
