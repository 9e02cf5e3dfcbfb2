"""Chat rules without servers: text cleaning, fragments, commands, sending checks, moderation targets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from libs.bus import BadRequest, Forbidden, TooManyRequests, utcnow
from proto import chat as pc
from services.chat import domain, text
from services.chat.config import ChatConfig

LIMITS = pc.Limits(rate_messages=20, rate_window_seconds=30, slow_seconds=0, max_length=500)


def test_clean_text_normalises_and_strips() -> None:
    assert text.clean_text("  e\u0301\u202eok\u2066\x00\nnext ") == "\u00e9ok next"
    assert (
        text.clean_text("family \U0001f468\u200d\U0001f469") == "family \U0001f468\u200d\U0001f469"
    )  # ZWJ kept
    with pytest.raises(BadRequest, match="empty"):
        text.clean_text("\u200f \u202a")
    with pytest.raises(BadRequest, match="501 characters"):
        text.clean_text("a" * 501)


def test_fragments_split_emotes_mentions_links() -> None:
    smile = pc.EmoteImage(id="1", code="cpcSmile", urls={})
    parts = text.fragments(
        "hi @Bob cpcSmile http://x.test/a javascript:alert(1)", lambda c: smile if c == "cpcSmile" else None
    )
    assert [type(p).__name__ for p in parts] == [
        "Text",
        "Mention",
        "Text",
        "EmoteFragment",
        "Text",
        "Link",
        "Text",
    ]
    assert parts[1] == pc.Mention(text="@Bob", username="bob")
    assert parts[-1] == pc.Text(text=" javascript:alert(1)")
    assert text.is_emote_only([parts[3], pc.Text(text="  ")])
    assert not text.is_emote_only(parts)


def test_commands_parse_and_refuse() -> None:
    mod = text.command_request("timeout", ["@Eve", "60", "too", "loud"], channel="c", actor_id="a", actor="A")
    assert (mod.action, mod.target, mod.seconds, mod.reason) == ("timeout", "Eve", 60, "too loud")
    assert text.command_request("slow", [], channel="c", actor_id="a", actor="A").seconds == 30
    with pytest.raises(BadRequest, match="timeout seconds"):
        text.command_request("timeout", ["eve", "0"], channel="c", actor_id="a", actor="A")
    with pytest.raises(BadRequest, match="unknown command"):
        text.command_request("nuke", [], channel="c", actor_id="a", actor="A")
    assert text.parse_command("/me waves") is None
    assert text.parse_command("/BAN x") == ("ban", ["x"])


def test_send_checks_in_order() -> None:
    now = utcnow()
    with pytest.raises(Forbidden, match="banned from this chat: spam"):
        domain.check_send(domain.Standing(role="", banned=True, ban_reason="spam"), pc.Modes(), LIMITS, now)
    busy = domain.Standing(role="", sent_in_window=20, oldest_in_window=now - timedelta(seconds=10))
    with pytest.raises(TooManyRequests) as exc:
        domain.check_send(busy, pc.Modes(), LIMITS, now)
    assert exc.value.retry_after == pytest.approx(20, abs=0.01)
    new_follower = domain.Standing(role="", followed_at=now - timedelta(minutes=5))
    with pytest.raises(Forbidden, match="10 minutes"):
        domain.check_send(new_follower, pc.Modes(followers_only_minutes=10), LIMITS, now)
    domain.check_send(domain.Standing(role="vip"), pc.Modes(followers_only_minutes=10), LIMITS, now)
    domain.check_send(domain.Standing(role="moderator"), pc.Modes(subscribers_only=True), LIMITS, now)


def test_moderation_targets_and_emote_tiers() -> None:
    with pytest.raises(Forbidden, match="broadcaster"):
        domain.check_target("broadcaster", "broadcaster", "boss")
    with pytest.raises(Forbidden, match="moderator"):
        domain.check_target("moderator", "moderator", "mod2")
    domain.check_target("broadcaster", "moderator", "mod2")
    with pytest.raises(Forbidden, match="only the broadcaster"):
        domain.check_moderator("moderator", "vip", "chan")
    sub1 = domain.Standing(role="", sub_tier=1)
    assert domain.emote_usable(1, "room", "room", sub1)
    assert not domain.emote_usable(2, "room", "room", sub1)
    assert not domain.emote_usable(0, "other", "room", sub1)
    assert domain.emote_usable(3, "room", "room", domain.Standing(role="broadcaster"))


def test_badges_and_admins() -> None:
    settings = ChatConfig(platform_admins=" Root , ops ").settings()
    assert settings.admins == {"root", "ops"}
    standing = domain.Standing(role="moderator", admin=True, sub_tier=3, sub_months=14)
    assert [b.kind for b in domain.badges(standing)] == ["admin", "moderator", "subscriber"]
    assert domain.badges(standing)[-1] == pc.Badge(kind="subscriber", tier=3, months=14)
    assert settings.limits(standing, pc.Modes(slow_seconds=30)).rate_messages == 100
    assert settings.limits(domain.Standing(role=""), pc.Modes(slow_seconds=30)).slow_seconds == 30


def test_a_mode_action_changes_its_mode_only_and_refuses_out_of_range_values() -> None:
    assert domain.MODE_CHANGES["slow"](pc.Modes(emote_only=True), None) == pc.Modes(
        slow_seconds=30, emote_only=True
    )
    assert domain.MODE_CHANGES["followersoff"](pc.Modes(followers_only_minutes=5), None) == pc.Modes()
    assert domain.MODE_CHANGES["followers"](pc.Modes(), None).followers_only_minutes == 0
    with pytest.raises(BadRequest, match="slow mode seconds"):
        domain.MODE_CHANGES["slow"](pc.Modes(), 121)
    timeout = pc.Moderate(channel="c", actor_id="a", action="timeout", target="eve", seconds=60)
    now = utcnow()
    assert domain.ban_until(timeout, now) == now + timedelta(seconds=60)
    assert domain.ban_until(pc.Moderate(channel="c", actor_id="a", action="ban"), now) is None


def test_the_owner_is_the_broadcaster_and_admins_match_in_any_case() -> None:
    room = domain.Room(room_id="r", name="chan", owner_id="o")
    settings = ChatConfig(platform_admins="Root").settings()
    assert domain.in_room(domain.Standing(role=""), room, "o", "owner", settings).role == "broadcaster"
    mod = domain.in_room(domain.Standing(role="moderator"), room, "u", "ROOT", settings)
    assert (mod.role, mod.admin) == ("moderator", True)


def test_a_channel_emote_wins_over_a_global_one_with_the_same_code() -> None:
    table = domain.emote_table(
        [
            domain.Emote(emote_id="c", room_id="r", code="hi", tier=1),
            domain.Emote(emote_id="g", room_id="", code="hi"),
        ]
    )
    image, tier, room_id = table["hi"]
    assert (image.id, tier, room_id) == ("c", 1, "r")
