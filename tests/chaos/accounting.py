"""What one fault did to the load: requests acknowledged (and attempts that failed and were retried), effects kept, lost and doubled once the system has
settled, and the time from the kill until every load kind was answered again.

How effects are counted (each acknowledged request expects these; "doubled" is any surplus):
- follow: the fan is in the follower list (or, after an acknowledged unfollow, is not); the owner's inbox
  holds one `follow` notification per fan still following (two for one fan = doubled).
- chat: the message is in the room's history; its text appears there once (twice = doubled).
- golive: the watcher's inbox holds one `live` notification per acknowledged session (more = doubled); the
  receiver got one stream.online delivery per session (a second for a session, or a message id twice =
  doubled).
- viewer: a quarter second in which the WebRTC viewer decoded an intact picture is an acknowledged round (no
  effect to keep); the longest time without one is printed as the viewer gap.
- payment: the fan has a subscription; the owner's inbox holds one `subscribe` notification for the fan,
  and the channel counts one subscriber per fan (more = doubled).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.load import KINDS, Hooks, Target, User
from tests.integration.chat_client import ChatClient, text_of


@dataclass
class Tally:
    """One row of the table."""

    fault: str
    acked: int = 0
    expected: int = 0
    kept: int = 0
    doubled: int = 0
    failed: int = 0
    recovery: float = 0.0
    slowest: str = ""  # the kind whose recovery took longest
    viewer_gap: float = 0.0
    collateral: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.expected - self.kept


def recovery_by_kind(target: Target, killed_at: float) -> dict[str, float]:
    """Per kind, the end of the first acknowledged request after its last failure (or after the kill when
    none failed), in seconds since the kill; inf for a kind not acknowledged again yet."""
    times: dict[str, float] = {}
    for kind in KINDS:
        attempts = [a for a in target.attempts if a.kind == kind and a.end >= killed_at]
        failed = [a.end for a in attempts if not a.ok]
        after = max(failed) if failed else killed_at
        oks = [a.end for a in attempts if a.ok and a.start >= after - 1e-9]
        times[kind] = min(oks) - killed_at if oks else float("inf")
    return times


def recovery_seconds(target: Target, killed_at: float) -> float:
    """The slowest kind's recovery (see recovery_by_kind)."""
    return max(recovery_by_kind(target, killed_at).values())


async def _pages(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> list[Any]:
    items: list[Any] = []
    cursor = ""
    while True:
        r = await client.get(url, params={"limit": 100, "cursor": cursor}, headers=headers)
        r.raise_for_status()
        body = r.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor") or ""
        if not cursor:
            return items


async def _inbox(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    return await _pages(client, "/api/v1/notifications", user.headers)


async def count(base_url: str, hooks: Hooks, t: Target, tally: Tally) -> None:
    """Fill `tally` from what the platform shows now."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        tally.acked = sum(1 for a in t.attempts if a.ok)
        tally.failed = sum(1 for a in t.attempts if not a.ok)
        expected = kept = doubled = 0
        problems: list[str] = []
        # follows
        followers = Counter(
            f["username"] for f in await _pages(client, f"/api/v1/channels/{t.channel}/followers")
        )
        owner_inbox = await _inbox(client, t.owner)
        follow_notes = Counter(n["actor_username"] for n in owner_inbox if n["kind"] == "follow")
        sub_notes = Counter(n["actor_username"] for n in owner_inbox if n["kind"] == "subscribe")
        for fan, follows in t.followed.items():
            expected += 1
            if (followers[fan] > 0) == follows:
                kept += 1
            else:
                problems.append(f"follow state of {fan} is {followers[fan] > 0}, acknowledged {follows}")
            doubled += max(followers[fan] - 1, 0)
            if follows:
                expected += 1
                kept += min(follow_notes[fan], 1)
                if not follow_notes[fan]:
                    problems.append(f"no follow notification for {fan}")
            doubled += max(follow_notes[fan] - 1, 0)
        # chat
        sock = await ChatClient.open(base_url, t.channel, t.owner.token)
        history = Counter(text_of(m) for m in sock.welcome.get("history", []))
        await sock.close()
        for text in t.chats:
            expected += 1
            kept += min(history[text], 1)
            doubled += max(history[text] - 1, 0)
            if not history[text]:
                problems.append(f"chat line {text!r} missing from history")
        # go-lives
        live_notes = sum(
            1
            for n in await _inbox(client, t.watcher)
            if n["kind"] == "live" and n["channel_name"] == t.channel
        )
        expected += len(t.sessions)
        kept += min(live_notes, len(t.sessions))
        doubled += max(live_notes - len(t.sessions), 0)
        if live_notes != len(t.sessions):
            problems.append(f"{live_notes} live notifications for {len(t.sessions)} sessions")
        online = hooks.online_for(t.channel)
        by_session = Counter(sid for _, sid in online)
        for sid in t.sessions:
            expected += 1
            kept += min(by_session[sid], 1)
            if not by_session[sid]:
                problems.append(f"no stream.online delivery for session {sid}")
        # A session delivered twice (under one message id or two) is one surplus delivery.
        doubled += sum(n - 1 for n in by_session.values() if n > 1)
        # payments
        fans = {f.username: f for f in t.fans}
        for name in t.subscribed:
            expected += 2
            r = await client.get(f"/api/v1/channels/{t.channel}/relationship", headers=fans[name].headers)
            r.raise_for_status()
            if r.json().get("subscription"):
                kept += 1
            else:
                problems.append(f"no subscription for {name}")
            kept += min(sub_notes[name], 1)
            if not sub_notes[name]:
                problems.append(f"no subscribe notification for {name}")
            doubled += max(sub_notes[name] - 1, 0)
        r = await client.get(f"/api/v1/channels/{t.channel}/counts")
        r.raise_for_status()
        subscribers = r.json()["subscribers"]
        doubled += max(subscribers - len(t.subscribed), 0)
        tally.expected, tally.kept, tally.doubled, tally.problems = expected, kept, doubled, problems


async def settle(base_url: str, hooks: Hooks, t: Target, tally: Tally, patience: float = 30.0) -> None:
    """Count again until nothing is missing (effects are asynchronous) or patience runs out; then wait a
    little and count once more so late duplicates show."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await count(base_url, hooks, t, tally)
        except Exception as exc:
            tally.problems = [f"counting failed: {exc}"]
            tally.kept = -1
        if (tally.kept == tally.expected and tally.expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)
    await count(base_url, hooks, t, tally)


def table(rows: list[Tally]) -> str:
    """The chaos table."""
    head = (
        f"{'fault':<13}{'acked':>7}{'failed':>8}{'effects':>9}{'kept':>7}{'lost':>6}{'doubled':>9}"
        f"{'recovery s':>12}{'slowest':>9}{'viewer gap s':>14}  restarted too"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.fault:<13}{r.acked:>7}{r.failed:>8}{r.expected:>9}{r.kept:>7}{r.lost:>6}{r.doubled:>9}"
            f"{r.recovery:>12.2f}{r.slowest:>9}{r.viewer_gap:>14.2f}  {','.join(r.collateral) or '-'}"
        )
    return "\n".join(lines)
