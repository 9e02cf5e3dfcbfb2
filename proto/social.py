"""social: follows and tiered subscriptions. Owned by services/social.

The events below are the contract other services build their own copies from (notification keeps who
follows whom; chat keeps follow ages and subscriber badges). Requests are added by the owner."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from libs.bus import Event, StreamSpec

STREAM = StreamSpec(
    name="SOCIAL",
    subjects=("social.*.*",),
    max_age_seconds=365 * 24 * 3600,
    description="follows and subscriptions",
)


class Followed(Event, frozen=True, kw_only=True):
    """`user` started following `channel` (never emitted twice for one follow)."""

    subject: ClassVar[str] = "social.channel.followed"

    user_id: str
    username: str
    channel_id: str
    channel_name: str
    followed_at: datetime


class Unfollowed(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "social.channel.unfollowed"

    user_id: str
    username: str
    channel_id: str
    channel_name: str


class SubscriptionState(Event, frozen=True, kw_only=True):
    """Shared shape of subscription events: the subscription as it is after the change."""

    subscription_id: str
    user_id: str
    username: str
    channel_id: str
    channel_name: str
    tier: int  # 1, 2 or 3
    cumulative_months: int
    streak_months: int
    period_end: datetime
    cancel_at_period_end: bool = False
    gifted_by_id: str = ""
    gifted_by_username: str = ""


class Subscribed(SubscriptionState, frozen=True, kw_only=True):
    """A new subscription (bought, granted by an operator, or gifted: then `gifted_by_*` is set)."""

    subject: ClassVar[str] = "social.subscription.started"


class SubscriptionRenewed(SubscriptionState, frozen=True, kw_only=True):
    subject: ClassVar[str] = "social.subscription.renewed"


class SubscriptionChanged(SubscriptionState, frozen=True, kw_only=True):
    """Tier changed, or cancellation at period end was asked for or withdrawn."""

    subject: ClassVar[str] = "social.subscription.changed"

    previous_tier: int = 0


class SubscriptionEnded(SubscriptionState, frozen=True, kw_only=True):
    subject: ClassVar[str] = "social.subscription.ended"

    reason: str = "expired"  # expired | cancelled | refunded


class SubscriptionsGifted(Event, frozen=True, kw_only=True):
    """One gift purchase: `count` subscriptions to named or random recipients of `channel`."""

    subject: ClassVar[str] = "social.gift.sent"

    gift_id: str
    gifter_id: str
    gifter_username: str
    channel_id: str
    channel_name: str
    tier: int
    count: int
    recipient_ids: list[str]
