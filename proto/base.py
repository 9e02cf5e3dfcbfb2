"""The shapes every contract is made of: events, request subjects, streams and the entities other services
may keep copies of. Depends on msgspec and the standard library alone, so anyone can import proto/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar
from uuid import uuid4

import msgspec

__all__ = ["Entity", "Event", "Lookup", "Rpc", "StreamSpec", "new_id", "utcnow"]

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)
E = TypeVar("E", bound=msgspec.Struct)


def new_id() -> str:
    """A new random identifier (UUID4, text)."""
    return str(uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event: `subject` names where it is published; the id doubles as `Nats-Msg-Id`."""

    subject: ClassVar[str] = ""

    event_id: str = msgspec.field(default_factory=new_id)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Rpc(Generic[Req, Rep]):
    """A request subject with the types it takes and answers; declared in `proto/` by its owner."""

    subject: str
    request: type[Req]
    reply: type[Rep]

    @property
    def name(self) -> str:
        """Endpoint name for the service API (the subject with dots as dashes)."""
        return self.subject.replace(".", "-")


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A JetStream stream, declared next to the subjects it holds."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = 7 * 24 * 3600
    duplicate_window_seconds: float = 600
    max_msgs_per_subject: int = -1
    max_bytes: int = -1
    storage: str = "file"
    description: str = ""


class Lookup(msgspec.Struct, frozen=True, kw_only=True):
    """Ask an entity's owner for one entity by a field it is unique on (`by` names the field; names are
    matched without regard to case)."""

    by: str
    value: str


@dataclass(frozen=True, slots=True)
class Entity(Generic[E]):
    """Something its owner lets others keep a copy of: the Struct copied, the field that identifies it,
    the fields it can be looked up by, the events that carry it (each with the fields of the Struct it
    changes, under the same names, and the entity's `version`), the stream they are on and the request
    that fetches one on a miss. A newer `version` always wins; an older event never overwrites."""

    name: str
    struct: type[E]
    key: str
    lookups: tuple[str, ...]
    stream: StreamSpec
    events: tuple[type[Event], ...]
    lookup: Rpc[Lookup, E]

    def fields_of(self, event: Event) -> dict[str, Any]:
        """The entity's fields that `event` carries, by name (always the key and the version)."""
        names = set(self.struct.__struct_fields__)
        return {f: getattr(event, f) for f in type(event).__struct_fields__ if f in names}
