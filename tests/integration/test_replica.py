"""libs.replica through `Runtime.keep_copy` on real NATS JetStream and PostgreSQL: an older version never
overwrites a newer row, a repeated change is a no-op, and on a miss `get()` asks the owner over request/reply
(keeping its answer), says not found when the owner does, and names the owner when it does not answer."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from nats.aio.client import Client

from libs import runtime as runtime_module
from libs.bus import NotFound, ServiceUnavailable, answers, connect, new_id, publish, routes_of, serve
from libs.db.pool import Connection
from libs.replica import Replica
from libs.runtime import Runtime, ServiceConfig
from proto.base import Entity, Event, Lookup, Rpc, StreamSpec

# Generous: a bound on a hang, not a measure of speed.
PATIENCE = 20.0


class GadgetCopy(msgspec.Struct, frozen=True, kw_only=True):
    gadget_id: str
    name: str
    version: int = 1


class GadgetMade(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "replicatest.gadget.made"

    gadget_id: str
    name: str
    version: int = 1


class GadgetRenamed(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "replicatest.gadget.renamed"

    gadget_id: str
    name: str
    version: int


LOOKUP_GADGET = Rpc("replicatest.lookup_gadget", Lookup, GadgetCopy)
GADGET = Entity(
    name="gadget",
    struct=GadgetCopy,
    key="gadget_id",
    lookups=("gadget_id", "name"),
    stream=StreamSpec(name="REPLICATEST", subjects=("replicatest.gadget.*",), max_age_seconds=3600),
    events=(GadgetMade, GadgetRenamed),
    lookup=LOOKUP_GADGET,
)


class Changes:
    """What the copy's on_change saw, in order; a test waits for the one it expects."""

    def __init__(self) -> None:
        self.seen: list[GadgetCopy] = []
        self._changed = asyncio.Condition()

    async def record(self, conn: Connection, gadget: GadgetCopy, event: Event) -> None:
        assert conn.is_in_transaction()  # on_change runs inside the copy's transaction
        async with self._changed:
            self.seen.append(gadget)
            self._changed.notify_all()

    async def reach(self, gadget_id: str) -> None:
        async with asyncio.timeout(PATIENCE), self._changed:
            await self._changed.wait_for(lambda: any(g.gadget_id == gadget_id for g in self.seen))

    def of(self, gadget_id: str) -> list[tuple[str, int]]:
        return [(g.name, g.version) for g in self.seen if g.gadget_id == gadget_id]


@dataclass
class Copy:
    rt: Runtime
    replica: Replica[GadgetCopy]
    changes: Changes

    async def publish(self, *events: Event) -> None:
        for event in events:
            await publish(self.rt.jetstream, event)

    async def settle(self) -> None:
        """Wait until every event published so far was handled: the consumer keeps order, so once a
        marker event published last has changed the copy, everything before it has been applied."""
        marker = GadgetMade(gadget_id=new_id(), name="marker")
        await self.publish(marker)
        await self.changes.reach(marker.gadget_id)

    async def find(self, by: str, value: str) -> GadgetCopy | None:
        async with self.rt.pool.acquire() as conn:
            return await self.replica.find(conn, by, value)

    async def get(self, by: str, value: str) -> GadgetCopy:
        async with self.rt.pool.acquire() as conn:
            return await self.replica.get(conn, by, value)


@pytest.fixture
async def copy(
    nats_url: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Copy]:
    """A runtime in this process keeping a copy of gadgets in a schema of its own."""
    # The runtime would point every log line of the test process at its own renderer.
    monkeypatch.setattr(runtime_module, "configure_logging", lambda *_, **__: None)
    name = f"replicatest_{secrets.token_hex(4)}"
    config = ServiceConfig(nats_url=nats_url, database_url=database_url, db_pool_size=3)
    async with Runtime(name, config, schema=name, migrations=tmp_path) as rt:
        changes = Changes()
        replica = await rt.keep_copy(GADGET, on_change=changes.record)
        yield Copy(rt, replica, changes)
        await rt.jetstream.delete_consumer(GADGET.stream.name, f"{name}-copy-gadget")


@dataclass(kw_only=True)
class Owner:
    """The gadgets' owning service, answering lookups by id or name (any case)."""

    gadgets: list[GadgetCopy]
    asked: list[Lookup] = field(default_factory=list)

    @answers(LOOKUP_GADGET)
    async def lookup(self, req: Lookup) -> GadgetCopy:
        self.asked.append(req)
        for gadget in self.gadgets:
            if str(getattr(gadget, req.by)).lower() == req.value.lower():
                return gadget
        raise NotFound(f'gadget "{req.value}" does not exist', code="gadget_not_found")


@pytest.fixture
async def owner(nats_url: str) -> AsyncIterator[Owner]:
    """An owner answering on its lookup subject over the NATS service API, for one test."""
    nc: Client = await connect(nats_url, name="replicatest-owner")
    owner = Owner(gadgets=[])
    svc = await serve(nc, name="replicatest-owner", version="0.1.0", description="", routes=routes_of(owner))
    try:
        yield owner
    finally:
        await svc.stop()
        await nc.drain()


async def test_an_older_version_arriving_later_never_overwrites_a_newer_row(copy: Copy) -> None:
    gid = new_id()
    await copy.publish(
        GadgetRenamed(gadget_id=gid, name="third", version=3),
        GadgetRenamed(gadget_id=gid, name="second", version=2),
        GadgetMade(gadget_id=gid, name="first"),
    )
    await copy.settle()
    assert await copy.find("gadget_id", gid) == GadgetCopy(gadget_id=gid, name="third", version=3)
    assert copy.changes.of(gid) == [("third", 3)]  # the stale ones changed nothing, so on_change never ran
    assert await copy.find("name", "second") is None

    await copy.publish(GadgetRenamed(gadget_id=gid, name="fourth", version=4))
    await copy.settle()
    assert await copy.find("name", "FOURTH") == GadgetCopy(gadget_id=gid, name="fourth", version=4)
    assert copy.changes.of(gid) == [("third", 3), ("fourth", 4)]


async def test_a_repeated_change_is_a_no_op(copy: Copy) -> None:
    made = GadgetMade(gadget_id=new_id(), name="once")
    # The same version again under another event id, as a relay replaying after JetStream's duplicate
    # window would send it (the same id would be dropped by JetStream before reaching the copy); its name
    # differs only so that a write would show.
    again = msgspec.structs.replace(made, event_id=new_id(), name="once, again")
    await copy.publish(made, again)
    await copy.settle()
    assert await copy.find("gadget_id", made.gadget_id) == GadgetCopy(gadget_id=made.gadget_id, name="once")
    assert copy.changes.of(made.gadget_id) == [("once", 1)]
    async with copy.rt.pool.acquire() as conn:
        assert await copy.replica.apply(conn, made) is None  # applying it by hand changes nothing either
        assert (
            await conn.fetchval("SELECT count(*) FROM copied_gadgets WHERE gadget_id = $1", made.gadget_id)
            == 1
        )


async def test_get_on_a_miss_asks_the_owner_and_keeps_the_answer(copy: Copy, owner: Owner) -> None:
    gadget = GadgetCopy(gadget_id=new_id(), name=f"sprocket_{secrets.token_hex(3)}", version=2)
    owner.gadgets.append(gadget)
    assert await copy.find("name", gadget.name) is None  # its event is still on the way

    assert await copy.get("name", gadget.name.upper()) == gadget
    assert owner.asked == [Lookup(by="name", value=gadget.name.upper())]
    assert await copy.find("gadget_id", gadget.gadget_id) == gadget  # kept
    assert await copy.get("gadget_id", gadget.gadget_id) == gadget
    assert len(owner.asked) == 1  # the second get was answered by the copy

    # The owner's events still reach the copy learned on a miss: an older one is ignored, a newer one kept.
    await copy.publish(
        GadgetMade(gadget_id=gadget.gadget_id, name=gadget.name),
        GadgetRenamed(gadget_id=gadget.gadget_id, name="cog", version=3),
    )
    await copy.settle()
    assert await copy.get("gadget_id", gadget.gadget_id) == GadgetCopy(
        gadget_id=gadget.gadget_id, name="cog", version=3
    )
    assert copy.changes.of(gadget.gadget_id) == [("cog", 3)]
    assert len(owner.asked) == 1


async def test_get_of_what_the_owner_does_not_have_is_not_found(copy: Copy, owner: Owner) -> None:
    with pytest.raises(NotFound) as caught:
        await copy.get("name", "nonesuch")
    assert caught.value.code == "gadget_not_found"
    assert "nonesuch" in str(caught.value)
    assert owner.asked == [Lookup(by="name", value="nonesuch")]
    assert await copy.find("name", "nonesuch") is None


async def test_get_on_a_miss_while_the_owner_is_down_names_the_owner(copy: Copy) -> None:
    gid = new_id()
    with pytest.raises(ServiceUnavailable) as caught:
        await copy.get("gadget_id", gid)
    assert caught.value.code == "owner_unavailable"
    message = str(caught.value)
    assert f'gadget "{gid}" is not known here yet and its owner does not answer' in message
    assert LOOKUP_GADGET.subject in message  # which request went unanswered
    assert await copy.find("gadget_id", gid) is None
