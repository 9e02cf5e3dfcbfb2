"""Wires the notification service: config, schema, streams, VAPID keys, endpoints, consumers, and the
fan-out, Web Push and webhook workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from libs.bus import ConsumerSpec
from libs.runtime import Runtime, ServiceConfig
from proto import channel, ingest, social
from services.notification.endpoints import RequestHandlers
from services.notification.fanout import FanOut
from services.notification.handlers import EventHandlers
from services.notification.webhooks import WebhookSender
from services.notification.webpush import PushSender, load_vapid

__all__ = ["NotificationConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


class NotificationConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the notification service."""

    # A new session within this many seconds of the channel's previous end is a reconnect: no new
    # go-live notification.
    grace_seconds: float = 600.0
    fanout_batch: int = 5000
    # Allow http and loopback/private hosts for webhook callbacks and push endpoints (tests, closed nets).
    allow_private_callbacks: bool = False
    webhook_max_attempts: int = 6
    webhook_retry_base_seconds: float = 2.0
    webhook_timeout_seconds: float = 5.0
    push_workers: int = 4
    push_max_attempts: int = 3
    push_retry_base_seconds: float = 30.0
    vapid_subject: str = "mailto:admin@localhost"
    ticket_ttl_seconds: float = 30.0


async def run(config: NotificationConfig) -> None:
    """Run the notification service until a stop signal."""
    executor = ThreadPoolExecutor(max_workers=config.push_workers, thread_name_prefix="webpush")
    # social, ingest and channel own these streams; declaring them too (same spec from proto/) lets our
    # durable consumers bind whichever service starts first.
    streams = [social.STREAM, ingest.STREAM, channel.STREAM]
    try:
        async with Runtime(
            "notification", config, schema="notification", migrations=MIGRATIONS, streams=streams
        ) as rt:
            vapid, public_key = await load_vapid(rt.pool)
            fanout = FanOut(rt.pool, rt.bus, batch=config.fanout_batch)
            webhooks = WebhookSender(
                rt.pool,
                max_attempts=config.webhook_max_attempts,
                retry_base_seconds=config.webhook_retry_base_seconds,
                timeout=config.webhook_timeout_seconds,
            )
            pushes = PushSender(
                rt.pool,
                vapid,
                executor,
                subject=config.vapid_subject,
                max_attempts=config.push_max_attempts,
                retry_base_seconds=config.push_retry_base_seconds,
            )
            events = EventHandlers(
                rt.pool,
                rt.bus,
                grace_seconds=config.grace_seconds,
                wake_fanout=fanout.wake,
                wake_webhooks=webhooks.wake,
            )
            endpoints = RequestHandlers(
                rt.pool,
                rt.bus,
                vapid_public_key=public_key,
                allow_private=config.allow_private_callbacks,
                ticket_ttl=config.ticket_ttl_seconds,
                wake_webhooks=webhooks.wake,
            )
            rt.spawn(fanout.run(), name="fanout")
            rt.spawn(webhooks.run(), name="webhooks")
            rt.spawn(pushes.run(), name="webpush")
            await rt.serve(endpoints.routes())
            _consume(rt, events)
            await rt.wait()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _consume(rt: Runtime, events: EventHandlers) -> None:
    rt.consume(
        ConsumerSpec(
            stream=channel.STREAM.name, durable="notification-channels", events=(channel.ChannelCreated,)
        ),
        events.on_channel_created,
    )
    rt.consume(
        ConsumerSpec(
            stream=social.STREAM.name,
            durable="notification-follows",
            events=(social.Followed, social.Unfollowed),
        ),
        events.on_follow,
    )
    rt.consume(
        ConsumerSpec(stream=social.STREAM.name, durable="notification-subs", events=(social.Subscribed,)),
        events.on_subscribed,
    )
    rt.consume(
        ConsumerSpec(
            stream=ingest.STREAM.name,
            durable="notification-live",
            events=(ingest.SessionStarted, ingest.SessionEnded),
        ),
        events.on_session,
    )
