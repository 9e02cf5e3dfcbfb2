"""The social rules without servers: stacking and renewals, which event a change emits, webhook
signatures checked against a signature computed independently of our signer."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from libs import paging
from libs.bus import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from proto import social as ps
from proto.channel import ChannelCopy
from proto.identity import UserCopy
from services.social import domain, payments, store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MONTH = timedelta(days=30)
USER = UserCopy(user_id="u1", username="fan")
CHANNEL = ChannelCopy(channel_id="c1", name="painter", owner_id="o1")


def active(**changes: object) -> domain.SubState:
    base = domain.start(now=NOW, tier=2, period_end=NOW + MONTH, months=1)
    return domain.SubState(**{**{f: getattr(base, f) for f in base.__struct_fields__}, **changes})  # type: ignore[arg-type]


def test_store_reads_every_substate_column() -> None:
    for field in domain.SubState.__struct_fields__:
        assert f"s.{field}" in store.SUBSCRIPTION_SELECT


def test_a_gift_on_an_active_subscription_stacks_after_its_period_at_its_tier() -> None:
    old = active()
    new = domain.extend(old, now=NOW + timedelta(days=3), period=MONTH, months=1, tier=None)
    assert (new.id, new.tier) == (old.id, 2)
    assert new.period_end == old.period_end + MONTH
    assert (new.cumulative_months, new.streak_months) == (2, 2)
    assert isinstance(domain.subscription_event(old, new, USER, CHANNEL), ps.SubscriptionRenewed)


def test_an_ended_subscription_restarts_with_a_new_id_and_streak_keeping_cumulative_months() -> None:
    old = domain.end(active(cumulative_months=5, streak_months=5), now=NOW, reason="expired")
    later = NOW + timedelta(days=90)
    new = domain.extend(old, now=later, period=MONTH, months=1, tier=3, gifted_by_id="g1")
    assert new.id != old.id
    assert (new.active, new.tier, new.period_end, new.gifted_by_id) == (True, 3, later + MONTH, "g1")
    assert (new.cumulative_months, new.streak_months) == (6, 1)
    assert isinstance(domain.subscription_event(old, new, USER, CHANNEL), ps.Subscribed)


def test_which_event_a_change_emits() -> None:
    old = active()
    assert isinstance(domain.subscription_event(None, old, USER, CHANNEL), ps.Subscribed)
    changed = domain.subscription_event(old, active(tier=3), USER, CHANNEL)
    assert isinstance(changed, ps.SubscriptionChanged)
    assert (changed.previous_tier, changed.tier) == (2, 3)
    assert isinstance(
        domain.subscription_event(old, active(cancel_at_period_end=True), USER, CHANNEL),
        ps.SubscriptionChanged,
    )
    ended = domain.subscription_event(old, domain.end(old, now=NOW, reason="refunded"), USER, CHANNEL)
    assert isinstance(ended, ps.SubscriptionEnded)
    assert ended.reason == "refunded"
    assert domain.subscription_event(old, old, USER, CHANNEL) is None
    renewed = domain.renew_until(old, now=NOW, period_end=NOW + 2 * MONTH)
    assert isinstance(domain.subscription_event(old, renewed, USER, CHANNEL), ps.SubscriptionRenewed)


def test_a_renewal_never_shortens_the_period() -> None:
    old = active(period_end=NOW + 2 * MONTH)
    assert domain.renew_until(old, now=NOW, period_end=NOW + MONTH).period_end == NOW + 2 * MONTH


@pytest.mark.parametrize("tier", [0, 4, -1])
def test_tiers_are_one_to_three(tier: int) -> None:
    with pytest.raises(BadRequest, match=f"tier {tier}"):
        domain.check_tier(tier)


def test_cursor_round_trip_and_garbage() -> None:
    cursor = domain.Cursor(NOW, "u1")
    assert paging.decode_cursor(paging.encode_cursor(cursor), domain.Cursor) == cursor
    with pytest.raises(BadRequest, match="cursor"):
        paging.decode_cursor("not-a-cursor", domain.Cursor)


BODY = b'{"id":"evt_1","type":"subscription.created","data":{"username":"fan","channel":"painter"}}'


def reference_header(secret: str, timestamp: int, body: bytes) -> str:
    """What a provider computes: HMAC-SHA256 over `timestamp + "." + raw body`, hex."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def test_signature_matches_an_independent_computation() -> None:
    assert payments.sign("s3cret", 1700000000, BODY) == reference_header("s3cret", 1700000000, BODY)
    header = reference_header("s3cret", 1700000000, BODY)
    assert (
        payments.verify(header, BODY, secrets=["old", "s3cret"], now=1700000100, tolerance=300) == 1700000000
    )


def test_signature_refusals() -> None:
    header = reference_header("s3cret", 1700000000, BODY)
    with pytest.raises(Unauthorized, match="does not match"):
        payments.verify(header, BODY + b" ", secrets=["s3cret"], now=1700000000, tolerance=300)
    with pytest.raises(Unauthorized, match="does not match"):
        payments.verify(header, BODY, secrets=["other"], now=1700000000, tolerance=300)
    with pytest.raises(Unauthorized, match="301 s away"):
        payments.verify(header, BODY, secrets=["s3cret"], now=1700000301, tolerance=300)
    with pytest.raises(BadRequest, match="missing"):
        payments.verify("", BODY, secrets=["s3cret"], now=1700000000, tolerance=300)
    with pytest.raises(BadRequest, match="t=<unix seconds>"):
        payments.verify("t=abc,v1=00", BODY, secrets=["s3cret"], now=1700000000, tolerance=300)


def test_event_envelope_parsing() -> None:
    event = payments.parse_event(BODY)
    assert (event.id, event.type) == ("evt_1", "subscription.created")
    data = payments.subscription_data(event)
    assert (data.username, data.channel, data.tier, data.period_end) == ("fan", "painter", None, None)
    with pytest.raises(BadRequest, match="not a valid event"):
        payments.parse_event(b"[]")


def test_audience_history_days_and_owner() -> None:
    """1 to 365 days, else a 400 naming `days`; only the owner may ask."""
    assert domain.check_days(1) == 1
    assert domain.check_days(365) == 365
    for days in (0, 366):
        with pytest.raises(BadRequest, match="days"):
            domain.check_days(days)
    with pytest.raises(Forbidden, match="owner"):
        domain.check_owner("o", "x", channel="c", action="see its audience")


def test_a_change_needs_an_active_subscription_and_ending_now_keeps_the_reason() -> None:
    changed = domain.changer(
        now=NOW, tier=None, cancel=None, end_now=True, reason="refunded", user=USER, channel=CHANNEL
    )
    with pytest.raises(NotFound, match='"fan" has no active subscription to "painter"'):
        changed(None)
    with pytest.raises(NotFound, match="no active subscription"):
        changed(domain.end(active(), now=NOW, reason="expired"))
    ended = changed(active())
    assert ended is not None
    assert (ended.active, ended.end_reason, ended.ended_at) == (False, "refunded", NOW)


def test_an_operator_change_must_change_something_valid() -> None:
    with pytest.raises(BadRequest, match="nothing to change"):
        domain.check_change(ps.ChangeRequest(channel="painter", username="fan"))
    with pytest.raises(BadRequest, match='reason "lost"'):
        domain.check_change(ps.ChangeRequest(channel="painter", username="fan", end_now=True, reason="lost"))
    domain.check_change(ps.ChangeRequest(channel="painter", username="fan", tier=3))


def test_a_gift_goes_to_one_named_user_or_some_followers_never_the_gifter_or_owner() -> None:
    with pytest.raises(BadRequest, match="not both"):
        domain.check_gift(to="fan", count=2)
    with pytest.raises(BadRequest, match="not both"):
        domain.check_gift(to="", count=0)
    with pytest.raises(BadRequest, match="gift_count 101"):
        domain.check_gift(to="", count=101)
    with pytest.raises(BadRequest, match="yourself"):
        domain.check_recipient(USER, gifter_id="u1", channel=CHANNEL)
    owner = UserCopy(user_id="o1", username="painter_owner")
    with pytest.raises(BadRequest, match='"painter_owner" owns channel "painter"'):
        domain.check_recipient(owner, gifter_id="u1", channel=CHANNEL)
    with pytest.raises(Conflict, match="only 1 followers"):
        domain.check_enough_recipients(1, count=2, channel=CHANNEL)


def test_a_stored_row_reads_as_its_state_holder_channel_and_gifter() -> None:
    """store turns a SUBSCRIPTION_SELECT row into one Held (the row's columns under their names)."""
    state = active()
    row = {
        **msgspec.structs.asdict(state),
        "user_id": "u1",
        "channel_id": "c1",
        "username": "fan",
        "name": "painter",
        "owner_id": "o1",
        "gifter": "santa",
    }
    held = store._held(row)
    assert (held.state, held.user, held.channel, held.gifter) == (state, USER, CHANNEL, "santa")
    assert domain.subscription_view(held).gifted_by_username == "santa"
