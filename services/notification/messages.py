"""Webhook message bodies (EventSub-like `subscription` + `event`) for the events we relay. No I/O."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from proto.ingest import SessionEnded, SessionStarted
from proto.social import Followed, Subscribed

__all__ = ["event_body", "message_id", "wrap"]

_NAMESPACE = uuid.UUID("6f1c2a9e-31f4-4c3e-9a55-0c0de11e0001")


def message_id(event_id: str, webhook_id: str) -> str:
    """The same id for the same event to the same webhook, however often the event is redelivered."""
    return str(uuid.uuid5(_NAMESPACE, f"{event_id}/{webhook_id}"))


def _time(value: datetime) -> str:
    return value.isoformat()


def event_body(event: SessionStarted | SessionEnded | Followed | Subscribed) -> tuple[str, dict[str, Any]]:
    """The webhook type an event feeds and its `event` object."""
    if isinstance(event, SessionStarted):
        return "stream.online", {
            "id": event.session_id,
            "broadcaster_user_id": event.channel_id,
            "broadcaster_user_login": event.channel_name,
            "type": "live",
            "started_at": _time(event.started_at),
        }
    if isinstance(event, SessionEnded):
        return "stream.offline", {
            "id": event.session_id,
            "broadcaster_user_id": event.channel_id,
            "broadcaster_user_login": event.channel_name,
            "ended_at": _time(event.ended_at),
        }
    common = {
        "user_id": event.user_id,
        "user_login": event.username,
        "broadcaster_user_id": event.channel_id,
        "broadcaster_user_login": event.channel_name,
    }
    if isinstance(event, Followed):
        return "channel.follow", {**common, "followed_at": _time(event.followed_at)}
    return "channel.subscribe", {
        **common,
        "tier": str(event.tier * 1000),
        "is_gift": bool(event.gifted_by_id),
    }


def wrap(webhook_id: str, kind: str, channel_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The whole message body for one webhook."""
    subscription = {"id": webhook_id, "type": kind, "condition": {"broadcaster_user_id": channel_id}}
    return {"subscription": subscription, "event": event}
