"""The social rules: who may follow, tiers and months, how a subscription starts, renews, stacks and
ends, list cursors. No I/O."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from libs.bus import BadRequest, Forbidden, new_id
from proto import social as ps
from proto.social import Subscription

__all__ = [
    "GIFT_COUNT_MAX",
    "MONTHS_MAX",
    "Cursor",
    "SubState",
    "check_limit",
    "check_months",
    "check_not_owner",
    "check_tier",
    "decode_cursor",
    "encode_cursor",
    "end",
    "extend",
    "gift",
    "renew_until",
    "restart",
    "start",
    "subscription_event",
    "subscription_view",
]

LIST_LIMIT_MAX = 100
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


def check_limit(limit: int) -> int:
    """A page size between 1 and 100."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise BadRequest(f"limit {limit} must be between 1 and {LIST_LIMIT_MAX}", code="invalid_limit")
    return limit


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

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> SubState:
        """The state held in a row of the subscriptions table."""
        return cls(**{f: row[f] for f in cls.__struct_fields__})


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


def subscription_view(
    state: SubState, *, user: Mapping[str, Any], channel: Mapping[str, Any], gifter: str
) -> Subscription:
    """The Subscription reply for a state, its user and channel (id, name)."""
    return Subscription(
        id=state.id,
        user_id=user["id"],
        username=user["username"],
        channel_id=channel["id"],
        channel_name=channel["name"],
        tier=state.tier,
        active=state.active,
        started_at=state.started_at,
        period_end=state.period_end,
        cancel_at_period_end=state.cancel_at_period_end,
        cumulative_months=state.cumulative_months,
        streak_months=state.streak_months,
        gifted_by_username=gifter,
        ended_at=state.ended_at,
        end_reason=state.end_reason,
    )


def subscription_event(
    old: SubState | None,
    new: SubState,
    user: Mapping[str, Any],
    channel: Mapping[str, Any],
    gifter: Any = None,
) -> ps.SubscriptionState | None:
    """The event a change from `old` to `new` emits, or None when nothing a consumer sees moved."""
    fields: dict[str, Any] = {
        "subscription_id": new.id,
        "user_id": user["id"],
        "username": user["username"],
        "channel_id": channel["id"],
        "channel_name": channel["name"],
        "tier": new.tier,
        "cumulative_months": new.cumulative_months,
        "streak_months": new.streak_months,
        "period_end": new.period_end,
        "cancel_at_period_end": new.cancel_at_period_end,
        "gifted_by_id": gifter["id"] if gifter else "",
        "gifted_by_username": gifter["username"] if gifter else "",
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


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where a page of follows ended, in list order (newest first)."""

    followed_at: datetime
    id: str


_cursor_decoder = msgspec.json.Decoder(Cursor)


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """Read a cursor made by `encode_cursor`, or BadRequest."""
    try:
        return _cursor_decoder.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, msgspec.MsgspecError):
        raise BadRequest(
            f'cursor "{text[:80]}" is not one this API returned', code="invalid_cursor"
        ) from None
