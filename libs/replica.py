"""A service's copy of another service's entity (users, channels, live sessions): one table whose DDL is
made from the owner's Struct, kept by an idempotent upsert from the owner's events in which an older
`version` never overwrites a newer row, and read with `get()`, which asks the owner over request/reply
when the copy has not seen the entity yet (its event still on the way). Each service's app declares the
copies it keeps (`Runtime.keep_copy`); nothing else writes these tables.

`Versions` is the same guard for projections that are not whole copies (chat's roles, follows, emotes and
subscriptions, notification's followers): the newest version applied per aggregate (`event.aggregate`),
kept when the thing is removed, so a stale grant delivered after its revoke is refused."""

from __future__ import annotations

import datetime
import types
from typing import Any, Generic, Literal, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec
from nats.aio.client import Client

from libs.bus.errors import NotFound, ServiceUnavailable
from libs.bus.rpc import request
from libs.db.pool import Connection
from libs.obs.logging import get_logger
from proto.base import Entity, Event, Lookup

__all__ = ["Admission", "Replica", "Versioned", "Versions", "copy_table"]

log = get_logger("replica")

# The one version guard: an upsert changes a row only for a newer version.
_NEWER = "t.version < EXCLUDED.version"

E = TypeVar("E", bound=msgspec.Struct)

_SQL_TYPES: dict[Any, str] = {
    str: "text",
    int: "bigint",
    bool: "boolean",
    float: "double precision",
    datetime.datetime: "timestamptz",
}


def copy_table(entity: Entity[Any]) -> str:
    """The table that holds a service's copy of `entity` (in that service's own schema)."""
    return f"copied_{entity.name}s"


def _sql_type(hint: Any) -> tuple[str, bool]:
    """The column type of a field's annotation and whether it may be NULL."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return _sql_type(args[0])[0], True
    if origin is list and get_args(hint) and get_args(hint)[0] is str:
        return "text[]", False
    if hint in _SQL_TYPES:
        return _SQL_TYPES[hint], False
    raise TypeError(f'a copied entity field cannot be stored: type "{hint}" has no column type')


class Replica(Generic[E]):
    """The copy of one entity in the caller's schema; see the module docstring."""

    def __init__(self, entity: Entity[E], nc: Client | None = None) -> None:
        self.entity = entity
        self.nc = nc
        self.table = copy_table(entity)
        struct = entity.struct
        hints = get_type_hints(struct)
        self.columns: tuple[str, ...] = struct.__struct_fields__
        if entity.key not in self.columns or "version" not in self.columns:
            raise TypeError(f'entity "{entity.name}" needs its key "{entity.key}" and a "version" field')
        self._types = {f: _sql_type(hints[f]) for f in self.columns}
        self._text = {f for f, (t, _) in self._types.items() if t == "text"}
        given = struct.__struct_defaults__
        with_defaults = struct.__struct_fields__[len(self.columns) - len(given) :]
        self._defaults = {
            k: v for k, v in zip(with_defaults, given, strict=True) if v is not msgspec.NODEFAULT
        }
        self._upserts: dict[frozenset[str], str] = {}
        self._finds: dict[str, str] = {}
        self._cols = ", ".join(self.columns)

    def ddl(self) -> list[str]:
        """Statements that create the table and add the columns a newer Struct has (idempotent)."""
        key_type = self._types[self.entity.key][0]
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.table} ({self.entity.key} {key_type} PRIMARY KEY,"
            " version bigint NOT NULL)"
        ]
        for f in self.columns:
            if f in (self.entity.key, "version"):
                continue
            sql_type, _ = self._types[f]
            statements.append(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS {f} {sql_type}")
        for f in self.entity.lookups:
            if f == self.entity.key:
                continue
            expr = f"lower({f})" if f in self._text else f
            statements.append(f"CREATE INDEX IF NOT EXISTS {self.table}_{f} ON {self.table} ({expr})")
        return statements

    async def install(self, conn: Connection) -> None:
        """Create or extend the table; replicas starting together take turns."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || $1))", self.table)
            for statement in self.ddl():
                await conn.execute(statement)

    def _upsert_sql(self, fields: frozenset[str]) -> str:
        sql = self._upserts.get(fields)
        if sql is None:
            params = ", ".join(f"${i}" for i in range(1, len(self.columns) + 1))
            changed = [f for f in self.columns if f in fields and f != self.entity.key]
            sets = ", ".join(f"{f} = EXCLUDED.{f}" for f in changed)
            # Names come from the entity's Struct (code, never input); values are parameters.
            insert = f"INSERT INTO {self.table} AS t ({self._cols}) VALUES ({params})"  # noqa: S608
            sql = self._upserts[fields] = (
                f"{insert} ON CONFLICT ({self.entity.key}) DO UPDATE SET {sets}"
                f" WHERE {_NEWER} RETURNING {self._cols}"
            )
        return sql

    async def _upsert(self, conn: Connection, values: dict[str, Any]) -> E | None:
        missing = [f for f in self.columns if f not in values and f not in self._defaults]
        if missing:
            raise ValueError(f"{self.entity.name} copy lacks {', '.join(missing)}")
        row = {**self._defaults, **values}
        record = await conn.fetchrow(self._upsert_sql(frozenset(values)), *(row[f] for f in self.columns))
        return None if record is None else self._struct(record)

    async def apply(self, conn: Connection, event: Event) -> E | None:
        """Upsert what `event` says of the entity; the stored entity, or None when the event was stale or
        a repeat (a version the copy already has or has passed)."""
        values = self.entity.fields_of(event)
        if self.entity.key not in values or "version" not in values:
            raise TypeError(f'"{type(event).subject}" does not carry {self.entity.name} key and version')
        return await self._upsert(conn, values)

    async def put(self, conn: Connection, value: E) -> E | None:
        """Upsert a whole entity (as its owner answered it); None when the copy already had it or newer."""
        return await self._upsert(conn, msgspec.structs.asdict(value))

    def _struct(self, record: Any) -> E:
        return msgspec.convert(dict(record), self.entity.struct)

    async def find(self, conn: Connection, by: str, value: str) -> E | None:
        """The copy's entity whose `by` field is `value` (text compared without case), or None."""
        sql = self._finds.get(by)
        if sql is None:
            if by not in self.entity.lookups:
                raise ValueError(f'{self.entity.name} cannot be looked up by "{by}"')
            where = f"lower({by}) = lower($1)" if by in self._text and by != self.entity.key else f"{by} = $1"
            sql = self._finds[by] = f"SELECT {self._cols} FROM {self.table} WHERE {where} LIMIT 1"  # noqa: S608
        record = await conn.fetchrow(sql, value)
        return None if record is None else self._struct(record)

    async def get(self, conn: Connection, by: str, value: str) -> E:
        """The entity from the copy, or from its owner when the copy has not seen it yet (then kept).
        NotFound when the owner has no such entity; ServiceUnavailable, naming it, when the owner does
        not answer."""
        found = await self.find(conn, by, value)
        if found is not None:
            return found
        if self.nc is None:
            name = self.entity.name
            raise NotFound(f'{name} "{value}" does not exist', code=f"{name}_not_found")
        try:
            fetched = await request(self.nc, self.entity.lookup, Lookup(by=by, value=value))
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(
                f'{self.entity.name} "{value}" is not known here yet and its owner does not answer: {exc}',
                code="owner_unavailable",
            ) from None
        log.info("copy_learned_on_miss", entity=self.entity.name, by=by, value=value)
        # An event may have brought a newer version meanwhile: then that one is the answer.
        return await self.put(conn, fetched) or await self.find(conn, by, value) or fetched


class Versioned(Protocol):
    """An event about one aggregate of its owner (a role, a follow) carrying that aggregate's version."""

    @property
    def aggregate(self) -> str: ...

    @property
    def version(self) -> int: ...


# "new": apply the event; "repeat": this version was applied already (a redelivery: do again only what
# is idempotent, e.g. a notification keyed by the event); "stale": a newer version was applied, ignore it.
Admission = Literal["new", "repeat", "stale"]


class Versions:
    """The newest version of each aggregate a service has applied, in its own schema. `admit` records
    an event's version in the caller's transaction when it is newer, so the projection's change and its
    version commit together; the row outlives a removal and is the tombstone a stale event meets."""

    table = "applied_versions"

    async def install(self, conn: Connection) -> None:
        """Create the table (idempotent; replicas starting together take turns)."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || $1))", self.table)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table}"
                " (aggregate text PRIMARY KEY, version bigint NOT NULL)"
            )

    async def admit(self, conn: Connection, event: Versioned) -> Admission:
        """Whether the projection should apply `event`; records its version when "new". Version 0 (an
        event stored before versions existed) is applied while nothing newer than 0 was seen, as before."""
        # Names are constants of this class; the values are parameters.
        newer = await conn.fetchval(
            f"INSERT INTO {self.table} AS t (aggregate, version) VALUES ($1, $2)"  # noqa: S608
            f" ON CONFLICT (aggregate) DO UPDATE SET version = EXCLUDED.version"
            f" WHERE {_NEWER} OR (EXCLUDED.version = 0 AND t.version = 0) RETURNING 1",
            event.aggregate,
            event.version,
        )
        if newer is not None:
            return "new"
        held_sql = f"SELECT version FROM {self.table} WHERE aggregate = $1"  # noqa: S608
        held = await conn.fetchval(held_sql, event.aggregate)
        if held == event.version:
            return "repeat"
        log.info("stale_event_ignored", aggregate=event.aggregate, version=event.version, held=held)
        return "stale"
