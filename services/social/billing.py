"""Subscriptions: start, renew, stack, change tier, cancel at period end, end, gift; from the operator
API, a payment provider's signed webhooks and the expiry sweep. The rules are in domain.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from libs.bus import BadRequest, Conflict, Forbidden, NotFound, Route, Unauthorized, new_id, route, utcnow
from libs.db import add_event
from libs.obs.logging import get_logger
from proto import social as ps
from services.social import domain, payments, store
from services.social.directory import Directory
from services.social.domain import SubState

__all__ = ["Billing", "BillingSettings"]

log = get_logger("social")

Decide = Callable[[SubState | None], SubState | None]


class BillingSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the subscription rules need from the service's config."""

    period: timedelta
    webhook_secrets: list[str]
    webhook_tolerance_seconds: float
    grace: timedelta


class Billing:
    """The subscription endpoints, the webhook and the sweep over the service's pool."""

    def __init__(self, pool: Any, directory: Directory, settings: BillingSettings) -> None:
        self.pool = pool
        self.directory = directory
        self.settings = settings

    def routes(self) -> list[Route[Any, Any]]:
        """The request endpoints answered here."""
        return [
            route(ps.SUBSCRIPTIONS, self.subscriptions),
            route(ps.GIFT, self.gift),
            route(ps.GRANT, self.grant),
            route(ps.CHANGE, self.change),
            route(ps.WEBHOOK, self.webhook),
        ]

    async def apply(
        self,
        conn: Any,
        user: Mapping[str, Any],
        channel: Mapping[str, Any],
        decide: Decide,
        gifter: Any = None,
    ) -> SubState | None:
        """Change one subscription under its row lock and record the event; returns the state after."""
        ids = {"user_id": user["id"], "channel_id": channel["id"]}
        old = await store.lock_subscription(conn, **ids)
        new = decide(old)
        if new is None:
            return old
        if old is None and not await store.insert_subscription(conn, **ids, state=new):
            # Another request created it between our look and our insert: decide against that row.
            old = await store.lock_subscription(conn, **ids)
            new = decide(old)
            if new is None:
                return old
        if old is not None and new != old:
            await store.update_subscription(conn, **ids, state=new)
        event = domain.subscription_event(old, new, user, channel, gifter)
        if event is not None:
            await add_event(conn, event)
            log.info(
                "subscription_changed",
                subject=type(event).subject,
                user_id=user["id"],
                channel_id=channel["id"],
            )
        return new

    async def subscriptions(self, req: ps.ListSubscriptions) -> ps.SubscriptionList:
        """social.subscriptions: a user's subscriptions (active ones, or all)."""
        async with self.pool.acquire() as conn:
            rows = await store.list_subscriptions(conn, user_id=req.user_id, include_ended=req.include_ended)
        items = [
            domain.subscription_view(
                SubState.of(r),
                user={"id": req.user_id, "username": r["username"]},
                channel={"id": r["channel_id"], "name": r["channel_name"]},
                gifter=r["gifter"],
            )
            for r in rows
        ]
        return ps.SubscriptionList(items=items)

    # --- gifts ------------------------------------------------------------------------------------------

    async def gift(self, req: ps.GiftRequest) -> ps.GiftResult:
        """social.gift: a signed-in user gifts one subscription to a named user or N to random followers."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.upsert_user(conn, user_id=req.gifter_id, username=req.gifter_username)
            channel = await self.directory.channel(conn, req.channel)
            gifter = {"id": req.gifter_id, "username": req.gifter_username}
            return await self._gift(
                conn, gifter, channel, tier=req.tier, to=req.gift_to, count=req.gift_count
            )

    async def _recipients(self, conn: Any, gifter: Any, channel: Any, *, to: str, count: int) -> list[Any]:
        if bool(to) == bool(count):
            raise BadRequest(
                "send either gift_to (a username) or gift_count (how many random followers), not both",
                code="invalid_gift",
            )
        if to:
            user = await self.directory.user(conn, to)
            if user["id"] == gifter["id"]:
                raise BadRequest("you cannot gift a subscription to yourself", code="gift_to_self")
            if user["id"] == channel["owner_id"]:
                raise BadRequest(
                    f'"{user["username"]}" owns channel "{channel["name"]}" and cannot subscribe to it',
                    code="own_channel",
                )
            return [user]
        if not 1 <= count <= domain.GIFT_COUNT_MAX:
            raise BadRequest(
                f"gift_count {count} must be between 1 and {domain.GIFT_COUNT_MAX}", code="invalid_gift_count"
            )
        found = await store.random_followers(
            conn, channel_id=channel["id"], exclude=gifter["id"], count=count
        )
        if len(found) < count:
            raise Conflict(
                f'only {len(found)} followers of "{channel["name"]}" have no subscription to receive one;'
                f" {count} gifts asked for",
                code="not_enough_recipients",
            )
        return found

    async def _gift(
        self, conn: Any, gifter: Any, channel: Any, *, tier: int, to: str, count: int
    ) -> ps.GiftResult:
        domain.check_tier(tier)
        recipients = await self._recipients(conn, gifter, channel, to=to, count=count)
        now, period = utcnow(), self.settings.period

        def gifted(old: SubState | None) -> SubState:
            return domain.gift(old, now=now, period=period, tier=tier, gifter_id=gifter["id"])

        subs = []
        # One order for every transaction, so two gifts to overlapping recipients cannot deadlock.
        for user in sorted(recipients, key=lambda r: r["id"]):
            await self.apply(conn, user, channel, gifted, gifter)
            subs.append(await self._view(conn, user, channel))
        gift_id = new_id()
        await add_event(
            conn,
            ps.SubscriptionsGifted(
                gift_id=gift_id,
                gifter_id=gifter["id"],
                gifter_username=gifter["username"],
                channel_id=channel["id"],
                channel_name=channel["name"],
                tier=tier,
                count=len(subs),
                recipient_ids=[s.user_id for s in subs],
            ),
        )
        log.info(
            "subscriptions_gifted", gift_id=gift_id, channel_id=channel["id"], count=len(subs), tier=tier
        )
        return ps.GiftResult(
            gift_id=gift_id,
            channel_id=channel["id"],
            channel_name=channel["name"],
            tier=tier,
            count=len(subs),
            recipients=subs,
        )

    @staticmethod
    async def _view(conn: Any, user: Any, channel: Any) -> ps.Subscription:
        """The subscription as stored now, with the name of whoever gifted it."""
        row: Any = await store.fetch_subscription(conn, user_id=user["id"], channel_id=channel["id"])
        return domain.subscription_view(SubState.of(row), user=user, channel=channel, gifter=row["gifter"])

    # --- operator ---------------------------------------------------------------------------------------

    async def _party(self, conn: Any, channel_name: str, username: str) -> tuple[Any, Any]:
        channel = await self.directory.channel(conn, channel_name)
        user = await self.directory.user(conn, username)
        domain.check_not_owner(
            channel["owner_id"], user["id"], channel=channel["name"], action="subscribe to"
        )
        return channel, user

    async def grant(self, req: ps.GrantRequest) -> ps.Subscription:
        """social.grant: the operator starts a subscription, or extends an active one by `months`."""
        tier, months = domain.check_tier(req.tier), domain.check_months(req.months)
        now, period = utcnow(), self.settings.period

        def granted(old: SubState | None) -> SubState:
            if old is None:
                return domain.start(now=now, tier=tier, period_end=now + period * months, months=months)
            return domain.extend(old, now=now, period=period, months=months, tier=tier)

        async with self.pool.acquire() as conn, conn.transaction():
            channel, user = await self._party(conn, req.channel, req.username)
            await self.apply(conn, user, channel, granted)
            return await self._view(conn, user, channel)

    async def change(self, req: ps.ChangeRequest) -> ps.Subscription:
        """social.change: the operator changes the tier, cancels at period end, or ends it now."""
        if req.tier is not None:
            domain.check_tier(req.tier)
        if req.reason not in ("cancelled", "refunded"):
            raise BadRequest(
                f'reason "{req.reason}" must be "cancelled" or "refunded"', code="invalid_reason"
            )
        if req.tier is None and req.cancel_at_period_end is None and not req.end_now:
            raise BadRequest(
                "nothing to change: send tier, cancel_at_period_end or end_now", code="no_change"
            )
        async with self.pool.acquire() as conn, conn.transaction():
            channel, user = await self._party(conn, req.channel, req.username)
            await self.apply(
                conn,
                user,
                channel,
                self._changer(req.tier, req.cancel_at_period_end, req.end_now, req.reason, user, channel),
            )
            return await self._view(conn, user, channel)

    def _changer(
        self, tier: int | None, cancel: bool | None, end_now: bool, reason: str, user: Any, channel: Any
    ) -> Decide:
        def changed(old: SubState | None) -> SubState:
            if old is None or not old.active:
                raise NotFound(
                    f'"{user["username"]}" has no active subscription to "{channel["name"]}"',
                    code="no_subscription",
                )
            if end_now:
                return domain.end(old, now=utcnow(), reason=reason)
            updates: dict[str, Any] = {}
            if tier is not None:
                updates["tier"] = tier
            if cancel is not None:
                updates["cancel_at_period_end"] = cancel
            return msgspec.structs.replace(old, **updates)

        return changed

    # --- payment provider --------------------------------------------------------------------------------

    async def webhook(self, req: ps.WebhookRequest) -> ps.WebhookResult:
        """social.webhook: a signed provider event, handled once by its id; a bad signature is refused."""
        if not self.settings.webhook_secrets:
            raise Forbidden(
                "payment webhooks are turned off (CPC_PAYMENT_WEBHOOK_SECRET is not set)", code="webhooks_off"
            )
        try:
            payments.verify(
                req.signature,
                req.body,
                secrets=self.settings.webhook_secrets,
                now=time.time(),
                tolerance=self.settings.webhook_tolerance_seconds,
            )
        except (BadRequest, Unauthorized) as exc:
            log.warning("payment_webhook_refused", code=exc.code, detail=exc.detail, bytes=len(req.body))
            raise
        event = payments.parse_event(req.body)
        async with self.pool.acquire() as conn, conn.transaction():
            seen = await store.record_payment_event(
                conn, event_id=event.id, type=event.type, signature=req.signature.strip()
            )
            if seen == "replayed":
                log.warning("payment_webhook_refused", code="replayed_signature", provider_event_id=event.id)
                raise Unauthorized(
                    f'webhook signature was already used (event "{event.id}"): a replay',
                    code="replayed_signature",
                )
            if seen == "duplicate":
                log.info("payment_webhook_duplicate", provider_event_id=event.id, type=event.type)
                return ps.WebhookResult(event_id=event.id, type=event.type, duplicate=True)
            if event.type not in payments.EVENT_TYPES:
                log.info("payment_webhook_ignored", provider_event_id=event.id, type=event.type)
                return ps.WebhookResult(event_id=event.id, type=event.type, ignored=True)
            await self._provider_event(conn, event)
        log.info("payment_webhook_handled", provider_event_id=event.id, type=event.type)
        return ps.WebhookResult(event_id=event.id, type=event.type)

    async def _provider_event(self, conn: Any, event: payments.ProviderEvent) -> None:
        if event.type == "gift.purchased":
            data = payments.gift_data(event)
            gifter = await self.directory.user(conn, data.gifter)
            channel = await self.directory.channel(conn, data.channel)
            await self._gift(conn, gifter, channel, tier=data.tier, to=data.recipient, count=data.count)
            return
        sub = payments.subscription_data(event)
        if sub.tier is not None:
            domain.check_tier(sub.tier)
        channel, user = await self._party(conn, sub.channel, sub.username)
        now = utcnow()
        if event.type in ("subscription.created", "subscription.renewed"):
            period_end = sub.period_end or now + self.settings.period
            if period_end <= now:
                raise BadRequest(
                    f"period_end {period_end.isoformat()} is not in the future", code="invalid_webhook"
                )
            await self.apply(conn, user, channel, self._renewer(now, period_end, sub.tier))
        elif event.type == "subscription.updated":
            await self.apply(
                conn,
                user,
                channel,
                self._changer(sub.tier, sub.cancel_at_period_end, False, "", user, channel),
            )
        else:  # subscription.deleted
            await self.apply(conn, user, channel, self._changer(None, None, True, sub.reason, user, channel))

    @staticmethod
    def _renewer(now: datetime, period_end: datetime, tier: int | None) -> Decide:
        def renewed(old: SubState | None) -> SubState:
            if old is None:
                return domain.start(now=now, tier=tier or 1, period_end=period_end, months=1)
            return domain.renew_until(old, now=now, period_end=period_end, tier=tier)

        return renewed

    # --- expiry -----------------------------------------------------------------------------------------

    async def sweep_once(self, *, batch: int = 500) -> int:
        """End the subscriptions whose period (plus grace) passed without renewal; returns how many."""
        now = utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.due_subscriptions(conn, before=now - self.settings.grace, limit=batch)
            for r in rows:
                old = SubState.of(r)
                new = domain.end(old, now=now, reason="cancelled" if old.cancel_at_period_end else "expired")
                await store.update_subscription(
                    conn, user_id=r["user_id"], channel_id=r["channel_id"], state=new
                )
                user = {"id": r["user_id"], "username": r["username"]}
                channel = {"id": r["channel_id"], "name": r["channel_name"]}
                event = domain.subscription_event(old, new, user, channel)
                assert event is not None
                await add_event(conn, event)
        if rows:
            log.info("subscriptions_expired", count=len(rows))
        return len(rows)
