"""Wires the notification service: its schema, its copies of channels and live sessions, VAPID keys,
endpoints, consumers, and the fan-out, Web Push and webhook workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from libs.bus import ConsumerSpec, routes_of
from libs.runtime import Runtime
from proto import channel, ingest, social
from services.notification import store
from services.notification.config import NotificationConfig
from services.notification.events import EventHandlers
from services.notification.fanout import FanOut
from services.notification.handlers import Handlers
from services.notification.webhooks import WebhookSender
from services.notification.webpush import PushSender, load_vapid

__all__ = ["NotificationConfig", "run"]

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(config: NotificationConfig) -> None:
    """Run the notification service until a stop signal."""
    executor = ThreadPoolExecutor(max_workers=config.push_workers, thread_name_prefix="webpush")
    # social owns this stream; declaring it too (same spec from proto/) lets our durable consumers bind
    # whichever service starts first (keep_copy declares the channel and ingest streams).
    try:
        async with (
            httpx.AsyncClient(timeout=config.webhook_timeout_seconds, follow_redirects=False) as client,
            Runtime(
                "notification", config, schema="notification", migrations=MIGRATIONS, streams=[social.STREAM]
            ) as rt,
        ):
            vapid, public_key = await load_vapid(rt.pool)
            pushes = PushSender(
                pool=rt.pool, vapid=vapid, executor=executor, subject=config.vapid_subject,
                retries=config.push_retries(),
            )  # fmt: skip
            webhooks = WebhookSender(
                pool=rt.pool, client=client, retries=config.webhook_retries(),
                lease_seconds=config.webhook_timeout_seconds + 30,
            )  # fmt: skip
            push_worker = rt.worker("webpush", pushes.step, every=config.push_poll_seconds)
            webhook_worker = rt.worker("webhooks", webhooks.step, every=config.webhook_poll_seconds)
            fanout = FanOut(pool=rt.pool, nc=rt.bus, batch=config.fanout_batch, wake_push=push_worker.wake)
            fanout_worker = rt.worker("fanout", fanout.step, every=config.fanout_poll_seconds)

            channels = await rt.keep_copy(channel.CHANNEL)
            events = EventHandlers(
                pool=rt.pool, nc=rt.bus, channels=channels, versions=await rt.keep_versions(),
                grace_seconds=config.grace_seconds,
                wake_fanout=fanout_worker.wake, wake_webhooks=webhook_worker.wake,
            )  # fmt: skip
            await rt.keep_copy(
                ingest.LIVE_SESSION, on_change=events.session_changed, after_change=events.session_committed
            )
            async with rt.pool.acquire() as conn:
                await store.index_copies(conn)
            handlers = Handlers(
                pool=rt.pool, channels=channels, vapid_public_key=public_key,
                allow_private=config.allow_private_callbacks, ticket_ttl=config.ticket_ttl_seconds,
                wake_webhooks=webhook_worker.wake,
            )  # fmt: skip
            await rt.serve(routes_of(handlers))
            _consume(rt, events)
            await rt.wait()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _consume(rt: Runtime, events: EventHandlers) -> None:
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
