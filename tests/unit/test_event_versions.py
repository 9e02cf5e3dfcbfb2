"""Versioned events decode from the bytes stored before versions existed, and name the aggregate their
version counts (the key the owner counts under and the consumers' guard compares by)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.bus import decode, encode
from proto import channel as pc
from proto import social as ps

# Written by hand in the shape the outbox stored before this change: the old Structs' fields, no version.
OLD_ROLE_GRANTED = (
    b'{"event_id":"0b7e6c1e-6a55-4a4e-9d0f-3f1a2f1f2c11","occurred_at":"2026-11-30T12:00:00.123456Z",'
    b'"channel_id":"c1","channel_name":"painter","user_id":"u1","username":"ann","role":"moderator"}'
)
OLD_FOLLOWED = (
    b'{"event_id":"1c2d3e4f-0000-4000-8000-000000000001","occurred_at":"2026-11-30T12:00:00Z",'
    b'"user_id":"u1","username":"ann","channel_id":"c1","channel_name":"painter",'
    b'"followed_at":"2026-11-30T12:00:00Z"}'
)


def test_events_stored_before_versions_decode_with_version_zero() -> None:
    granted = decode(OLD_ROLE_GRANTED, pc.RoleGranted)
    followed = decode(OLD_FOLLOWED, ps.Followed)
    assert (granted.version, granted.aggregate) == (0, "role/c1/u1")
    assert (followed.version, followed.aggregate) == (0, "follow/c1/u1")


@pytest.mark.parametrize(
    ("event", "aggregate"),
    [
        (
            pc.RoleRevoked(
                channel_id="c", channel_name="n", user_id="u", username="x", role="vip", version=4
            ),
            "role/c/u",
        ),
        (pc.EmoteRemoved(emote_id="e", channel_id="c", channel_name="n", code="Kappa", version=2), "emote/e"),
        (ps.Unfollowed(user_id="u", username="x", channel_id="c", channel_name="n", version=2), "follow/c/u"),
    ],
)
def test_a_version_survives_the_wire_and_names_its_aggregate(
    event: pc.RoleRevoked | pc.EmoteRemoved | ps.Unfollowed, aggregate: str
) -> None:
    again = decode(encode(event), type(event))
    assert again == event
    assert again.aggregate == aggregate
    assert b'"aggregate"' not in encode(event)  # a property, never on the wire


def test_owner_and_consumer_keys_agree() -> None:
    """The owner counts under proto's *_aggregate functions; the event names the same key."""
    sub = ps.SubscriptionEnded(
        subscription_id="s",
        user_id="u",
        username="x",
        channel_id="c",
        channel_name="n",
        tier=1,
        cumulative_months=1,
        streak_months=1,
        period_end=datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert sub.aggregate == ps.subscription_aggregate("c", "u")
    assert pc.role_aggregate("c", "u") != ps.follow_aggregate("c", "u")
