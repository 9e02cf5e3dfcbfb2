"""social: follows and tiered subscriptions. Owned by services/social.

The events below are the contract other services build their own copies from (notification keeps who
follows whom; chat keeps follow ages and subscriber badges). Requests are added by the owner."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

import msgspec

from proto.base import Event, Rpc, StreamSpec

STREAM = StreamSpec(
    name="SOCIAL",
    subjects=("social.*.*",),
    max_age_seconds=365 * 24 * 3600,
    description="follows and subscriptions",
)


def follow_aggregate(channel_id: str, user_id: str) -> str:
    """The key a user's follow of a channel is versioned under."""
    return f"follow/{channel_id}/{user_id}"


def subscription_aggregate(channel_id: str, user_id: str) -> str:
    """The key a user's subscription to a channel is versioned under (one row per user and channel,
    across the subscription ids it is started again under)."""
    return f"subscription/{channel_id}/{user_id}"


class FollowEvent(Event, frozen=True, kw_only=True):
    """Shared shape of the follow events: which user and which channel. `version` counts the follows
    and unfollows of that pair, so a consumer can ignore an older event delivered late; 0 in events
    stored before versions existed."""

    user_id: str
    username: str
    channel_id: str
    channel_name: str
    version: int = 0

    @property
    def aggregate(self) -> str:
        """What `version` counts the changes of."""
        return follow_aggregate(self.channel_id, self.user_id)


class Followed(FollowEvent, frozen=True, kw_only=True):
    """`user` started following `channel` (never emitted twice for one follow)."""

    subject: ClassVar[str] = "social.channel.followed"

    followed_at: datetime


class Unfollowed(FollowEvent, frozen=True, kw_only=True):
    subject: ClassVar[str] = "social.channel.unfollowed"


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
    # Counts the changes of the user's subscription to the channel; 0 in events stored before versions.
    version: int = 0

    @property
    def aggregate(self) -> str:
        """What `version` counts the changes of."""
        return subscription_aggregate(self.channel_id, self.user_id)


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


# Requests and replies ---------------------------------------------------------------------------------
# The gateway passes the verified user (`user_id`, `username`); channels and users are named as clients
# name them (case-insensitive). Every rule is checked by the social service.


class FollowRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    username: str
    channel: str


class FollowState(msgspec.Struct, frozen=True, kw_only=True):
    """Whether `user` follows the channel after the request; `changed` is false for a repeat."""

    channel_id: str
    channel_name: str
    following: bool
    followed_at: datetime | None
    changed: bool


class ListFollowers(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    limit: int = 20
    cursor: str = ""


class ListFollowing(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    limit: int = 20
    cursor: str = ""


class FollowEntry(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    username: str
    channel_id: str
    channel_name: str
    followed_at: datetime


class FollowPage(msgspec.Struct, frozen=True, kw_only=True):
    """Newest follow first; `next_cursor` fetches the next page (None on the last)."""

    items: list[FollowEntry]
    next_cursor: str | None


class CountsRequest(msgspec.Struct, frozen=True, kw_only=True):
    channel: str


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str
    channel_name: str
    followers: int
    subscribers: int


class HistoryRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The channel's owner (`actor_id`) asks for its audience over the last `days` days (UTC)."""

    channel: str
    actor_id: str
    days: int = 30


class AudiencePoint(msgspec.Struct, frozen=True, kw_only=True):
    """Followers and active subscribers at the end of `day` (UTC; today: now)."""

    day: date
    followers: int
    subscribers: int


class AudienceHistory(msgspec.Struct, frozen=True, kw_only=True):
    """Oldest day first. Unfollows delete their row, so a past day counts only the follows that remain."""

    channel_id: str
    channel_name: str
    points: list[AudiencePoint]


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A user's subscription to a channel as it is now; `active` false once it ended."""

    id: str
    user_id: str
    username: str
    channel_id: str
    channel_name: str
    tier: int
    active: bool
    started_at: datetime
    period_end: datetime
    cancel_at_period_end: bool
    cumulative_months: int
    streak_months: int
    gifted_by_username: str = ""
    ended_at: datetime | None = None
    end_reason: str = ""


class RelationshipRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    channel: str


class Relationship(msgspec.Struct, frozen=True, kw_only=True):
    """What one user is to one channel: follower since when, subscriber at which tier, owner."""

    channel_id: str
    channel_name: str
    is_owner: bool
    following: bool
    followed_at: datetime | None
    subscription: Subscription | None


class ListSubscriptions(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    include_ended: bool = False


class SubscriptionList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Subscription]


class GiftRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A gift by a signed-in user: one to `gift_to` (a username) or `gift_count` to random followers."""

    gifter_id: str
    gifter_username: str
    channel: str
    tier: int = 1
    gift_to: str = ""
    gift_count: int = 0


class GiftResult(msgspec.Struct, frozen=True, kw_only=True):
    gift_id: str
    channel_id: str
    channel_name: str
    tier: int
    count: int
    recipients: list[Subscription]


class GrantRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Operator: start a subscription of `username`, or extend an active one by `months` (tier set)."""

    channel: str
    username: str
    tier: int = 1
    months: int = 1


class ChangeRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Operator: change the tier and/or ask for (or withdraw) cancellation at period end, or end now."""

    channel: str
    username: str
    tier: int | None = None
    cancel_at_period_end: bool | None = None
    end_now: bool = False
    reason: str = "cancelled"


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A payment provider's webhook exactly as received: the raw body and its signature header."""

    body: bytes
    signature: str


class WebhookResult(msgspec.Struct, frozen=True, kw_only=True):
    """`duplicate` when the provider's event id was handled before; `ignored` for an unknown type."""

    event_id: str
    type: str
    duplicate: bool = False
    ignored: bool = False


FOLLOW = Rpc("social.follow", FollowRequest, FollowState)
UNFOLLOW = Rpc("social.unfollow", FollowRequest, FollowState)
FOLLOWERS = Rpc("social.followers", ListFollowers, FollowPage)
FOLLOWING = Rpc("social.following", ListFollowing, FollowPage)
COUNTS = Rpc("social.counts", CountsRequest, Counts)
HISTORY = Rpc("social.history", HistoryRequest, AudienceHistory)
RELATIONSHIP = Rpc("social.relationship", RelationshipRequest, Relationship)
SUBSCRIPTIONS = Rpc("social.subscriptions", ListSubscriptions, SubscriptionList)
GIFT = Rpc("social.gift", GiftRequest, GiftResult)
GRANT = Rpc("social.grant", GrantRequest, Subscription)
CHANGE = Rpc("social.change", ChangeRequest, Subscription)
WEBHOOK = Rpc("social.webhook", WebhookRequest, WebhookResult)
