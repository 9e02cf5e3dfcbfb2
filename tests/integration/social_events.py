"""Read the SOCIAL stream from a test: every event about one channel, to count what was emitted."""

from __future__ import annotations

import json
import time
from typing import Any

from libs.bus import connect


async def channel_events(
    nats_url: str, channel_id: str, *, expect: int, settle: float = 1.0, timeout: float = 10.0
) -> list[tuple[str, dict[str, Any]]]:
    """(subject, body) of every SOCIAL event about `channel_id`, in stream order: waits until at least
    `expect` arrived, then `settle` seconds more, so an event emitted twice would be seen."""
    nc = await connect(nats_url, name="test-social-events")
    found: list[tuple[str, dict[str, Any]]] = []
    try:
        sub = await nc.jetstream().subscribe("social.>", ordered_consumer=True)
        started = time.monotonic()
        last = started
        while True:
            now = time.monotonic()
            if (len(found) >= expect and now - last >= settle) or now - started > timeout:
                return found
            try:
                msg = await sub.next_msg(timeout=0.2)
            except Exception:
                continue
            body = json.loads(msg.data)
            if body.get("channel_id") == channel_id:
                found.append((msg.subject, body))
                last = time.monotonic()
    finally:
        await nc.drain()


def subjects(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The subjects of `events`, in order."""
    return [s for s, _ in events]
