"""The social rules: who may follow, tiers and months, how a subscription starts, renews, stacks and
ends, what a gift may go to, list cursors. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from libs.bus import BadRequest, Conflict, Forbidden, NotFound, new_id
from proto import social as ps
from proto.channel import ChannelCopy
from proto.identity import UserCopy
from proto.social import Subscription

__all__ = [
    "GIFT_COUNT_MAX",
    "MONTHS_MAX",
    "Cursor",
    "Decide",
    "Held",
    "SubState",
    "changer",
    "check_change",
    "check_days",
    "check_enough_recipients",
    "check_gift",
    "check_months",
    "check_not_owner",
    "check_owner",
    "check_period_end",
    "check_recipient",
    "check_tier",
    "end",
    "extend",
    "followed_cursor",
    "follower_cursor",
    "gift",
    "gifter",
    "granter",
    "renew_until",
    "renewer",
    "restart",
    "start",
    "subscription_event",
    "subscription_view",
]

GIFT_COUNT_MAX = 100
MONTHS_MAX = 24
TIERS = (1, 2, 3)

HISTORY_DAYS_MAX = 365


def check_tier(tier: int) -> int:
    """A tier of 1, 2 or 3."""
    if tier not in TIERS:
        raise BadRequest(f"tier {tier} must be 1, 2 or 3", code="invalid_tier")
    return tier


def check_months(months: int) -> int:
    """A number of months between 1 and 24."""
    if not 1 <= months <= MONTHS_MAX:
        raise BadRequest(f"months {months} must be between 1 and {MONTHS_MAX}", code="invalid_months")
    return months


def check_not_owner(owner_id: str, user_id: str, *, channel: str, action: str) -> None:
    """A channel's owner cannot follow or subscribe to it."""
    if owner_id == user_id:
        raise BadRequest(f'you own channel "{channel}" and cannot {action} it', code="own_channel")


def check_days(days: int) -> int:
    """An audience history of 1 to 365 days."""
    if not 1 <= days <= HISTORY_DAYS_MAX:
        raise BadRequest(f"days must be between 1 and {HISTORY_DAYS_MAX}, not {days}", code="invalid_days")
    return days


def check_owner(owner_id: str, actor_id: str, *, channel: str, action: str) -> None:
    """Only a channel's owner may `action`."""
    if not actor_id or owner_id != actor_id:
        raise Forbidden(f'only the owner of channel "{channel}" may {action}', code="not_owner")


class SubState(msgspec.Struct, frozen=True, kw_only=True):
    """The columns of a subscription row that the rules change."""

    id: str
    tier: int
    active: bool
    started_at: datetime
    period_end: datetime
    cancel_at_period_end: bool
    cumulative_months: int
    streak_months: int
    gifted_by_id: str = ""
    ended_at: datetime | None = None
    end_reason: str = ""


# How a request changes one subscription: the state after, from the state before (None: no row yet);
# None back means "leave it as it is". Run under the row's lock, so a retry decides again.
Decide = Callable[[SubState | None], SubState | None]


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A stored subscription: its state, who holds it, to which channel, and who gifted it (a name)."""

    state: SubState
    user: UserCopy
    channel: ChannelCopy
    gifter: str = ""


def start(*, now: datetime, tier: int, period_end: datetime, months: int, gifted_by_id: str = "") -> SubState:
    """A new subscription running until `period_end`, counting `months` months."""
    return SubState(
        id=new_id(),
        tier=tier,
        active=True,
        started_at=now,
        period_end=period_end,
        cancel_at_period_end=False,
        cumulative_months=months,
        streak_months=months,
        gifted_by_id=gifted_by_id,
    )


def restart(
    old: SubState, *, now: datetime, tier: int, period_end: datetime, months: int, gifted_by_id: str = ""
) -> SubState:
    """An ended subscription started again: a new id and a new streak, cumulative months kept."""
    fresh = start(now=now, tier=tier, period_end=period_end, months=months, gifted_by_id=gifted_by_id)
    return msgspec.structs.replace(fresh, cumulative_months=old.cumulative_months + months)


def extend(
    old: SubState,
    *,
    now: datetime,
    period: timedelta,
    months: int,
    tier: int | None = None,
    gifted_by_id: str = "",
) -> SubState:
    """Add `months` periods: stacked after the current period when active, from now when ended."""
    new_tier = old.tier if tier is None else tier
    if not old.active:
        return restart(
            old,
            now=now,
            tier=new_tier,
            period_end=now + period * months,
            months=months,
            gifted_by_id=gifted_by_id,
        )
    return msgspec.structs.replace(
        old,
        tier=new_tier,
        period_end=max(old.period_end, now) + period * months,
        cumulative_months=old.cumulative_months + months,
        streak_months=old.streak_months + months,
    )


def gift(old: SubState | None, *, now: datetime, period: timedelta, tier: int, gifter_id: str) -> SubState:
    """One gifted month: starts a subscription at the gift's tier, or stacks one period after an active
    one at the subscriber's own tier (they already pay that tier; the gift buys time)."""
    if old is None:
        return start(now=now, tier=tier, period_end=now + period, months=1, gifted_by_id=gifter_id)
    return extend(
        old, now=now, period=period, months=1, tier=None if old.active else tier, gifted_by_id=gifter_id
    )


def renew_until(old: SubState, *, now: datetime, period_end: datetime, tier: int | None = None) -> SubState:
    """A provider's renewal: one more month, the period running to the provider's `period_end`."""
    new_tier = old.tier if tier is None else tier
    if not old.active:
        return restart(old, now=now, tier=new_tier, period_end=period_end, months=1)
    return msgspec.structs.replace(
        old,
        tier=new_tier,
        period_end=max(old.period_end, period_end),
        cumulative_months=old.cumulative_months + 1,
        streak_months=old.streak_months + 1,
    )


def end(old: SubState, *, now: datetime, reason: str) -> SubState:
    """The subscription stops now (a later start begins a new streak)."""
    return msgspec.structs.replace(old, active=False, ended_at=now, end_reason=reason)


def subscription_view(held: Held) -> Subscription:
    """The Subscription reply for a stored subscription."""
    state = held.state
    return Subscription(
        id=state.id,
        user_id=held.user.user_id,
        username=held.user.username,
        channel_id=held.channel.channel_id,
        channel_name=held.channel.name,
        tier=state.tier,
        active=state.active,
        started_at=state.started_at,
        period_end=state.period_end,
        cancel_at_period_end=state.cancel_at_period_end,
        cumulative_months=state.cumulative_months,
        streak_months=state.streak_months,
        gifted_by_username=held.gifter,
        ended_at=state.ended_at,
        end_reason=state.end_reason,
    )


def subscription_event(
    old: SubState | None,
    new: SubState,
    user: UserCopy,
    channel: ChannelCopy,
    gifter: UserCopy | None = None,
) -> ps.SubscriptionState | None:
    """The event a change from `old` to `new` emits, or None when nothing a consumer sees moved."""
    fields: dict[str, Any] = {
        "subscription_id": new.id,
        "user_id": user.user_id,
        "username": user.username,
        "channel_id": channel.channel_id,
        "channel_name": channel.name,
        "tier": new.tier,
        "cumulative_months": new.cumulative_months,
        "streak_months": new.streak_months,
        "period_end": new.period_end,
        "cancel_at_period_end": new.cancel_at_period_end,
        "gifted_by_id": gifter.user_id if gifter else "",
        "gifted_by_username": gifter.username if gifter else "",
    }
    if new.active and (old is None or not old.active):
        return ps.Subscribed(**fields)
    if old is None or not old.active:
        return None
    if not new.active:
        return ps.SubscriptionEnded(**fields, reason=new.end_reason)
    if new.cumulative_months > old.cumulative_months:
        return ps.SubscriptionRenewed(**fields)
    if (new.tier, new.cancel_at_period_end, new.period_end) != (
        old.tier,
        old.cancel_at_period_end,
        old.period_end,
    ):
        return ps.SubscriptionChanged(**fields, previous_tier=old.tier)
    return None


# --- what each request does to a subscription (Decide functions) -----------------------------------------


def granter(*, now: datetime, period: timedelta, tier: int, months: int) -> Decide:
    """The operator's grant: a new subscription of `months`, or `months` more on the present one."""

    def granted(old: SubState | None) -> SubState:
        if old is None:
            return start(now=now, tier=tier, period_end=now + period * months, months=months)
        return extend(old, now=now, period=period, months=months, tier=tier)

    return granted


def gifter(*, now: datetime, period: timedelta, tier: int, gifter_id: str) -> Decide:
    """One gifted month (see `gift`)."""

    def gifted(old: SubState | None) -> SubState:
        return gift(old, now=now, period=period, tier=tier, gifter_id=gifter_id)

    return gifted


def renewer(*, now: datetime, period_end: datetime, tier: int | None) -> Decide:
    """A provider's created or renewed subscription, running to `period_end`."""

    def renewed(old: SubState | None) -> SubState:
        if old is None:
            return start(now=now, tier=tier or 1, period_end=period_end, months=1)
        return renew_until(old, now=now, period_end=period_end, tier=tier)

    return renewed


def changer(
    *,
    now: datetime,
    tier: int | None,
    cancel: bool | None,
    end_now: bool,
    reason: str,
    user: UserCopy,
    channel: ChannelCopy,
) -> Decide:
    """A tier change, a cancellation at period end (or its withdrawal), or an end now; NotFound when
    there is no active subscription to change."""

    def changed(old: SubState | None) -> SubState:
        if old is None or not old.active:
            raise NotFound(
                f'"{user.username}" has no active subscription to "{channel.name}"', code="no_subscription"
            )
        if end_now:
            return end(old, now=now, reason=reason)
        return msgspec.structs.replace(
            old,
            tier=old.tier if tier is None else tier,
            cancel_at_period_end=old.cancel_at_period_end if cancel is None else cancel,
        )

    return changed


# --- request checks ---------------------------------------------------------------------------------------


def check_change(req: ps.ChangeRequest) -> None:
    """An operator's change names a valid tier and reason, and changes something."""
    if req.tier is not None:
        check_tier(req.tier)
    if req.reason not in ("cancelled", "refunded"):
        raise BadRequest(f'reason "{req.reason}" must be "cancelled" or "refunded"', code="invalid_reason")
    if req.tier is None and req.cancel_at_period_end is None and not req.end_now:
        raise BadRequest("nothing to change: send tier, cancel_at_period_end or end_now", code="no_change")


def check_gift(*, to: str, count: int) -> None:
    """A gift goes to one named user or to 1..100 random followers, not both."""
    if bool(to) == bool(count):
        raise BadRequest(
            "send either gift_to (a username) or gift_count (how many random followers), not both",
            code="invalid_gift",
        )
    if not to and not 1 <= count <= GIFT_COUNT_MAX:
        raise BadRequest(
            f"gift_count {count} must be between 1 and {GIFT_COUNT_MAX}", code="invalid_gift_count"
        )


def check_recipient(user: UserCopy, *, gifter_id: str, channel: ChannelCopy) -> None:
    """A named recipient is neither the gifter nor the channel's owner."""
    if user.user_id == gifter_id:
        raise BadRequest("you cannot gift a subscription to yourself", code="gift_to_self")
    if user.user_id == channel.owner_id:
        raise BadRequest(
            f'"{user.username}" owns channel "{channel.name}" and cannot subscribe to it', code="own_channel"
        )


def check_enough_recipients(found: int, *, count: int, channel: ChannelCopy) -> None:
    """Random gifts need `count` followers without a subscription."""
    if found < count:
        raise Conflict(
            f'only {found} followers of "{channel.name}" have no subscription to receive one;'
            f" {count} gifts asked for",
            code="not_enough_recipients",
        )


def check_period_end(period_end: datetime, *, now: datetime) -> datetime:
    """A provider's period end lies in the future."""
    if period_end <= now:
        raise BadRequest(f"period_end {period_end.isoformat()} is not in the future", code="invalid_webhook")
    return period_end


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where a page of follows ended, in list order (newest first)."""

    followed_at: datetime
    id: str


def follower_cursor(entry: ps.FollowEntry) -> Cursor:
    """Where a page of a channel's followers ended (ties broken by the follower)."""
    return Cursor(entry.followed_at, entry.user_id)


def followed_cursor(entry: ps.FollowEntry) -> Cursor:
    """Where a page of the channels a user follows ended (ties broken by the channel)."""
    return Cursor(entry.followed_at, entry.channel_id)
