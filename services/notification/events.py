"""What the notification service does on other services' events, thin: a live session's start and end
(keep_copy's on_change of the live-session copy, in the copy's transaction), the follower projection, and
follows and subscriptions told to the channel's owner. Requests are in handlers.py; the rules in domain.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client

from libs.bus import Event, NotFound, RetryLater, ServiceUnavailable
from libs.db import Connection, Pool
from libs.obs.logging import get_logger
from libs.replica import Replica, Versions
from proto.channel import ChannelCopy
from proto.ingest import LiveSession, SessionEnded, SessionStarted
from proto.notification import user_subject
from proto.social import Followed, Subscribed, Unfollowed
from services.notification import delivery_store as ds
from services.notification import store
from services.notification.domain import goes_live
from services.notification.webhooks import NOTIFICATION, Relayed, event_body, message_id, wrap

__all__ = ["EventHandlers", "queue_webhooks"]

log = get_logger("notification")

_encoder = msgspec.json.Encoder()


async def queue_webhooks(conn: Connection, event: Relayed, channel_id: str) -> int:
    """Queue the event to the channel's enabled webhooks of its type; returns how many."""
    kind, body = event_body(event)
    hooks = await ds.enabled_webhooks(conn, channel_id=channel_id, kind=kind)
    for hook_id in hooks:
        await ds.add_delivery(
            conn,
            webhook_id=hook_id,
            message_id=message_id(event.event_id, hook_id),
            message_type=NOTIFICATION,
            body=wrap(hook_id, kind, channel_id, body),
        )
    return len(hooks)


@dataclass(frozen=True, kw_only=True, slots=True)
class EventHandlers:
    """Consumers' handlers over the pool and the channel copy; `wake_*` nudge the background workers after
    a commit."""

    pool: Pool
    nc: Client
    channels: Replica[ChannelCopy]
    versions: Versions
    grace_seconds: float
    wake_fanout: Callable[[], None]
    wake_webhooks: Callable[[], None]

    async def session_changed(self, conn: Connection, live: LiveSession, event: Event) -> None:
        """The live-session copy changed: for a start that is a real new session (not a reconnect within
        the grace period) queue the followers' fan-out, and queue the stream.online/offline webhooks;
        each start and end once (session_reactions), whatever the copy's replay brings again."""
        if not isinstance(event, SessionStarted | SessionEnded):
            return
        await store.lock_channel_sessions(conn, channel_id=live.channel_id)
        notify = False
        if isinstance(event, SessionEnded):
            if not await store.claim_end(conn, session_id=live.session_id):
                return
        else:
            previous = await store.previous_session(
                conn, channel_id=live.channel_id, session_id=live.session_id, before=live.started_at
            )
            notify = goes_live(previous, live.started_at, self.grace_seconds)
            if not await store.claim_start(conn, session_id=live.session_id, notified=notify):
                return
            if notify:
                await store.add_fanout_job(
                    conn, session_id=live.session_id, channel_id=live.channel_id,
                    channel_name=live.channel_name, started_at=live.started_at,
                )  # fmt: skip
        hooks = await queue_webhooks(conn, event, live.channel_id)
        log.info(
            "session_seen",
            session_id=live.session_id,
            channel_id=live.channel_id,
            kind=type(event).subject,
            notify=notify,
            webhooks=hooks,
        )

    def session_committed(self, live: LiveSession, event: Event) -> None:
        """After the copy's commit: wake the workers for what `session_changed` may have queued (a wake
        with nothing queued costs one query)."""
        if isinstance(event, SessionStarted):
            self.wake_fanout()
        self.wake_webhooks()

    async def on_follow(self, event: Followed | Unfollowed) -> None:
        """social.channel.followed/unfollowed: keep the follower projection, applying only an event newer
        than the last applied for the pair (a late, older one is ignored); tell the owner of a follow."""
        async with self.pool.acquire() as conn, conn.transaction():
            admission = await self.versions.admit(conn, event)
            if isinstance(event, Unfollowed):
                if admission == "new":
                    await store.remove_follow(
                        conn, channel_id=event.channel_id, user_id=event.user_id, before=event.occurred_at
                    )
                return
            if admission == "stale":
                return
            if admission == "new":
                await store.add_follow(
                    conn, channel_id=event.channel_id, user_id=event.user_id, followed_at=event.followed_at
                )
        # Told again on a repeat too: the first delivery may have committed the follow and then failed here.
        await self._tell_owner(event, "follow", tier=0)

    async def on_subscribed(self, event: Subscribed) -> None:
        """social.subscription.started: tell the channel's owner."""
        await self._tell_owner(event, "subscribe", tier=event.tier)

    async def _owner_of(self, conn: Connection, channel_id: str) -> str:
        """The channel's owner, from the copy or the channel service; RetryLater while neither knows."""
        try:
            channel = await self.channels.get(conn, "channel_id", channel_id)
        except (NotFound, ServiceUnavailable) as exc:
            raise RetryLater(f'owner of channel "{channel_id}" not known yet: {exc}', delay=1.0) from None
        return channel.owner_id

    async def _tell_owner(self, event: Followed | Subscribed, kind: str, *, tier: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            owner_id = await self._owner_of(conn, event.channel_id)
            row = await store.add_notification(
                conn,
                user_id=owner_id,
                kind=kind,
                dedup_key=f"{kind}:{event.event_id}",
                channel_id=event.channel_id,
                channel_name=event.channel_name,
                actor_username=event.username,
                tier=tier,
            )
            hooks = await queue_webhooks(conn, event, event.channel_id)
        if row is not None:
            await self.nc.publish(user_subject(owner_id), _encoder.encode(row))
        if hooks:
            self.wake_webhooks()
