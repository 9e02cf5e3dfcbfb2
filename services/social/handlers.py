"""The social service's request handlers: follows, lists, counts and relationships; subscriptions from
the operator API, gifts, and a payment provider's signed webhooks; and the expiry sweep's step. The rules
are in domain.py, the SQL in store.py, the provider's wire format in payments.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import msgspec

from libs import paging
from libs.bus import NotFound, Unauthorized, answers, new_id, utcnow
from libs.db import Connection, Pool, add_event
from libs.obs.logging import get_logger
from libs.replica import Replica
from proto import social as ps
from proto.channel import ChannelCopy
from proto.identity import UserCopy
from services.social import domain, payments, store
from services.social.config import BillingSettings
from services.social.domain import Decide

__all__ = ["SocialHandlers"]

log = get_logger("social")


async def _versioned(conn: Connection, event: ps.SubscriptionState) -> ps.SubscriptionState:
    """`event` at the subscription's next version (counted in the caller's transaction)."""
    version = await store.next_version(conn, aggregate=event.aggregate)
    return msgspec.structs.replace(event, version=version)


def _follow_state(channel: ChannelCopy, followed_at: datetime | None, *, changed: bool) -> ps.FollowState:
    return ps.FollowState(
        channel_id=channel.channel_id,
        channel_name=channel.name,
        following=followed_at is not None,
        followed_at=followed_at,
        changed=changed,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class SocialHandlers:
    """One method per social request, marked with the Rpc it answers, over the pool and the copies of
    users and channels; and the expiry sweep's step."""

    pool: Pool
    users: Replica[UserCopy]
    channels: Replica[ChannelCopy]
    settings: BillingSettings

    async def _channel(self, conn: Connection, name: str) -> ChannelCopy:
        """The channel named `name` (any case), or NotFound naming it."""
        try:
            return await self.channels.get(conn, "name", name.strip())
        except NotFound:
            raise NotFound(f'channel "{name}" does not exist', code="channel_not_found") from None

    async def _user(self, conn: Connection, username: str) -> UserCopy:
        """The user named `username` (any case), or NotFound naming them."""
        try:
            return await self.users.get(conn, "username", username.strip())
        except NotFound:
            raise NotFound(f'no user named "{username.strip()}"', code="user_not_found") from None

    # --- follows ----------------------------------------------------------------------------------------

    @answers(ps.FOLLOW)
    async def follow(self, req: ps.FollowRequest) -> ps.FollowState:
        """social.follow: idempotent; a repeat (or a concurrent twin) keeps the first follow time."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self._channel(conn, req.channel)
            domain.check_not_owner(channel.owner_id, req.user_id, channel=channel.name, action="follow")
            # The follower lists show names from the copy: make sure it has this user.
            await self.users.get(conn, "user_id", req.user_id)
            ids = {"user_id": req.user_id, "channel_id": channel.channel_id}
            followed_at = await store.insert_follow(conn, **ids)
            changed = followed_at is not None
            if followed_at is None:
                followed_at = await store.fetch_follow(conn, **ids)
            else:
                aggregate = ps.follow_aggregate(channel.channel_id, req.user_id)
                await add_event(
                    conn,
                    ps.Followed(
                        user_id=req.user_id,
                        username=req.username,
                        channel_id=channel.channel_id,
                        channel_name=channel.name,
                        followed_at=followed_at,
                        version=await store.next_version(conn, aggregate=aggregate),
                    ),
                )
        if changed:
            log.info("followed", user_id=req.user_id, channel_id=channel.channel_id)
        return _follow_state(channel, followed_at, changed=changed)

    @answers(ps.UNFOLLOW)
    async def unfollow(self, req: ps.FollowRequest) -> ps.FollowState:
        """social.unfollow: idempotent; only a follow that existed emits an event."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self._channel(conn, req.channel)
            changed = await store.delete_follow(conn, user_id=req.user_id, channel_id=channel.channel_id)
            if changed:
                aggregate = ps.follow_aggregate(channel.channel_id, req.user_id)
                event = ps.Unfollowed(
                    user_id=req.user_id,
                    username=req.username,
                    channel_id=channel.channel_id,
                    channel_name=channel.name,
                    version=await store.next_version(conn, aggregate=aggregate),
                )
                await add_event(conn, event)
        if changed:
            log.info("unfollowed", user_id=req.user_id, channel_id=channel.channel_id)
        return _follow_state(channel, None, changed=changed)

    @answers(ps.FOLLOWERS)
    async def followers(self, req: ps.ListFollowers) -> ps.FollowPage:
        """social.followers: a channel's followers, newest first, by cursor."""
        limit = paging.check_limit(req.limit)
        after = paging.decode_cursor(req.cursor, domain.Cursor)
        async with self.pool.acquire() as conn:
            channel = await self._channel(conn, req.channel)
            entries = await store.list_followers(
                conn, channel_id=channel.channel_id, after=after, limit=limit + 1
            )
        items, next_cursor = paging.page(entries, limit, domain.follower_cursor)
        return ps.FollowPage(items=items, next_cursor=next_cursor)

    @answers(ps.FOLLOWING)
    async def following(self, req: ps.ListFollowing) -> ps.FollowPage:
        """social.following: the channels a user follows, newest follow first, by cursor."""
        limit = paging.check_limit(req.limit)
        after = paging.decode_cursor(req.cursor, domain.Cursor)
        async with self.pool.acquire() as conn:
            entries = await store.list_following(conn, user_id=req.user_id, after=after, limit=limit + 1)
        items, next_cursor = paging.page(entries, limit, domain.followed_cursor)
        return ps.FollowPage(items=items, next_cursor=next_cursor)

    @answers(ps.COUNTS)
    async def counts(self, req: ps.CountsRequest) -> ps.Counts:
        """social.counts: followers and active subscribers of a channel."""
        async with self.pool.acquire() as conn:
            channel = await self._channel(conn, req.channel)
            followers, subscribers = await store.counts(conn, channel_id=channel.channel_id)
        return ps.Counts(
            channel_id=channel.channel_id,
            channel_name=channel.name,
            followers=followers,
            subscribers=subscribers,
        )

    @answers(ps.HISTORY)
    async def history(self, req: ps.HistoryRequest) -> ps.AudienceHistory:
        """social.history: the owner's daily followers and active subscribers (see store.audience_history
        for what unfollows and restarts leave out)."""
        days = domain.check_days(req.days)
        async with self.pool.acquire() as conn:
            channel = await self._channel(conn, req.channel)
            domain.check_owner(
                channel.owner_id, req.actor_id, channel=channel.name, action="see its audience"
            )
            points = await store.audience_history(conn, channel_id=channel.channel_id, days=days)
        return ps.AudienceHistory(channel_id=channel.channel_id, channel_name=channel.name, points=points)

    @answers(ps.RELATIONSHIP)
    async def relationship(self, req: ps.RelationshipRequest) -> ps.Relationship:
        """social.relationship: whether a user follows a channel (since when) and their subscription."""
        async with self.pool.acquire() as conn:
            channel = await self._channel(conn, req.channel)
            ids = {"user_id": req.user_id, "channel_id": channel.channel_id}
            followed_at = await store.fetch_follow(conn, **ids)
            held = await store.fetch_subscription(conn, **ids)
        return ps.Relationship(
            channel_id=channel.channel_id,
            channel_name=channel.name,
            is_owner=channel.owner_id == req.user_id,
            following=followed_at is not None,
            followed_at=followed_at,
            subscription=None if held is None else domain.subscription_view(held),
        )

    # --- subscriptions ----------------------------------------------------------------------------------

    async def _apply(
        self,
        conn: Connection,
        user: UserCopy,
        channel: ChannelCopy,
        decide: Decide,
        gifter: UserCopy | None = None,
    ) -> ps.Subscription:
        """Change one subscription under its row lock and record its event; the subscription after."""
        ids = {"user_id": user.user_id, "channel_id": channel.channel_id}
        old = await store.lock_subscription(conn, **ids)
        new = decide(old)
        if new is not None and old is None and not await store.insert_subscription(conn, **ids, state=new):
            # Another request created it between our look and our insert: decide against that row.
            old = await store.lock_subscription(conn, **ids)
            new = decide(old)
        if new is not None:
            if old is not None and new != old:
                await store.update_subscription(conn, **ids, state=new)
            event = domain.subscription_event(old, new, user, channel, gifter)
            if event is not None:
                await add_event(conn, await _versioned(conn, event))
                log.info("subscription_changed", subject=event.subject, **ids)
        held = await store.fetch_subscription(conn, **ids)
        assert held is not None  # decide() refuses (raises) when there is nothing to show
        return domain.subscription_view(held)

    @answers(ps.SUBSCRIPTIONS)
    async def subscriptions(self, req: ps.ListSubscriptions) -> ps.SubscriptionList:
        """social.subscriptions: a user's subscriptions (active ones, or all)."""
        async with self.pool.acquire() as conn:
            held = await store.list_subscriptions(conn, user_id=req.user_id, include_ended=req.include_ended)
        return ps.SubscriptionList(items=[domain.subscription_view(h) for h in held])

    async def _party(
        self, conn: Connection, channel_name: str, username: str
    ) -> tuple[ChannelCopy, UserCopy]:
        channel = await self._channel(conn, channel_name)
        user = await self._user(conn, username)
        domain.check_not_owner(channel.owner_id, user.user_id, channel=channel.name, action="subscribe to")
        return channel, user

    @answers(ps.GRANT)
    async def grant(self, req: ps.GrantRequest) -> ps.Subscription:
        """social.grant: the operator starts a subscription, or extends an active one by `months`."""
        tier, months = domain.check_tier(req.tier), domain.check_months(req.months)
        granted = domain.granter(now=utcnow(), period=self.settings.period, tier=tier, months=months)
        async with self.pool.acquire() as conn, conn.transaction():
            channel, user = await self._party(conn, req.channel, req.username)
            return await self._apply(conn, user, channel, granted)

    @answers(ps.CHANGE)
    async def change(self, req: ps.ChangeRequest) -> ps.Subscription:
        """social.change: the operator changes the tier, cancels at period end, or ends it now."""
        domain.check_change(req)
        async with self.pool.acquire() as conn, conn.transaction():
            channel, user = await self._party(conn, req.channel, req.username)
            changed = domain.changer(
                now=utcnow(),
                tier=req.tier,
                cancel=req.cancel_at_period_end,
                end_now=req.end_now,
                reason=req.reason,
                user=user,
                channel=channel,
            )
            return await self._apply(conn, user, channel, changed)

    # --- gifts ------------------------------------------------------------------------------------------

    @answers(ps.GIFT)
    async def gift(self, req: ps.GiftRequest) -> ps.GiftResult:
        """social.gift: a signed-in user gifts one subscription to a named user or N to random followers."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Gifted subscriptions show the gifter's name from the copy: make sure it has them.
            await self.users.get(conn, "user_id", req.gifter_id)
            gifter = UserCopy(user_id=req.gifter_id, username=req.gifter_username)
            channel = await self._channel(conn, req.channel)
            return await self._gift(
                conn, gifter, channel, tier=req.tier, to=req.gift_to, count=req.gift_count
            )

    async def _recipients(
        self, conn: Connection, gifter: UserCopy, channel: ChannelCopy, *, to: str, count: int
    ) -> list[UserCopy]:
        domain.check_gift(to=to, count=count)
        if to:
            user = await self._user(conn, to)
            domain.check_recipient(user, gifter_id=gifter.user_id, channel=channel)
            return [user]
        found = await store.random_followers(
            conn, channel_id=channel.channel_id, exclude=gifter.user_id, count=count
        )
        domain.check_enough_recipients(len(found), count=count, channel=channel)
        return found

    async def _gift(
        self, conn: Connection, gifter: UserCopy, channel: ChannelCopy, *, tier: int, to: str, count: int
    ) -> ps.GiftResult:
        domain.check_tier(tier)
        recipients = await self._recipients(conn, gifter, channel, to=to, count=count)
        gifted = domain.gifter(now=utcnow(), period=self.settings.period, tier=tier, gifter_id=gifter.user_id)
        # One order for every transaction, so two gifts to overlapping recipients cannot deadlock.
        subs = [
            await self._apply(conn, user, channel, gifted, gifter)
            for user in sorted(recipients, key=lambda u: u.user_id)
        ]
        gift_id = new_id()
        event = ps.SubscriptionsGifted(
            gift_id=gift_id,
            gifter_id=gifter.user_id,
            gifter_username=gifter.username,
            channel_id=channel.channel_id,
            channel_name=channel.name,
            tier=tier,
            count=len(subs),
            recipient_ids=[s.user_id for s in subs],
        )
        await add_event(conn, event)
        log.info(
            "subscriptions_gifted", gift_id=gift_id, channel_id=channel.channel_id, count=len(subs), tier=tier
        )
        return ps.GiftResult(
            gift_id=gift_id,
            channel_id=channel.channel_id,
            channel_name=channel.name,
            tier=tier,
            count=len(subs),
            recipients=subs,
        )

    # --- payment provider -------------------------------------------------------------------------------

    @answers(ps.WEBHOOK)
    async def webhook(self, req: ps.WebhookRequest) -> ps.WebhookResult:
        """social.webhook: a signed provider event, handled once by its id; a bad signature is refused."""
        event = payments.authentic_event(
            req.signature,
            req.body,
            secrets=self.settings.webhook_secrets,
            now=time.time(),
            tolerance=self.settings.webhook_tolerance_seconds,
        )
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

    async def _provider_event(self, conn: Connection, event: payments.ProviderEvent) -> None:
        if event.type == "gift.purchased":
            data = payments.gift_data(event)
            gifter = await self._user(conn, data.gifter)
            channel = await self._channel(conn, data.channel)
            await self._gift(conn, gifter, channel, tier=data.tier, to=data.recipient, count=data.count)
            return
        sub = payments.subscription_data(event)
        if sub.tier is not None:
            domain.check_tier(sub.tier)
        channel, user = await self._party(conn, sub.channel, sub.username)
        now = utcnow()
        decide: Decide
        if event.type in ("subscription.created", "subscription.renewed"):
            period_end = domain.check_period_end(sub.period_end or now + self.settings.period, now=now)
            decide = domain.renewer(now=now, period_end=period_end, tier=sub.tier)
        else:  # subscription.updated, or .deleted: ends it now
            deleted = event.type == "subscription.deleted"
            decide = domain.changer(
                now=now,
                tier=None if deleted else sub.tier,
                cancel=None if deleted else sub.cancel_at_period_end,
                end_now=deleted,
                reason=sub.reason if deleted else "",
                user=user,
                channel=channel,
            )
        await self._apply(conn, user, channel, decide)

    # --- expiry -----------------------------------------------------------------------------------------

    async def sweep_once(self, *, batch: int = 500) -> int:
        """End the subscriptions whose period (plus grace) passed without renewal; returns how many (the
        worker runs it again at once while it ends some)."""
        now = utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            due = await store.due_subscriptions(conn, before=now - self.settings.grace, limit=batch)
            for held in due:
                old = held.state
                new = domain.end(old, now=now, reason="cancelled" if old.cancel_at_period_end else "expired")
                ids = {"user_id": held.user.user_id, "channel_id": held.channel.channel_id}
                await store.update_subscription(conn, **ids, state=new)
                event = domain.subscription_event(old, new, held.user, held.channel)
                assert event is not None
                await add_event(conn, await _versioned(conn, event))
        if due:
            log.info("subscriptions_expired", count=len(due))
        return len(due)
