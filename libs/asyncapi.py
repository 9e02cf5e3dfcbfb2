"""The AsyncAPI 3.0 document of every NATS subject, generated from proto/.

- Events: each Event subclass in a proto module (its `subject`, its stream), published by the module's
  owner and received by every service whose code names the event, or keeps a copy of an entity it carries.
- Requests: each module-level `Rpc` (request and reply), answered by the owner and sent by every service
  whose code names it (or keeps a copy of the entity it looks up).
- Parameterised subjects (media, chat rooms, per-process requests): proto.contract.PARAMETERISED.
- The gateway's WebSockets (the chat socket's frames): proto.contract.SOCKETS, on the `gateway` server.
- Payload schemas: msgspec.json.schema_components, under #/components/schemas.

"Names" is read from each service's imports (`from proto.x import A`, `from proto import x as y` then
`y.A`), never by running it. The gateway serves the result at /schema/asyncapi.json; docs/asyncapi.json is
the committed copy (tests/unit/test_contract.py fails when it drifts). Regenerate it with
`python -m libs.asyncapi > docs/asyncapi.json`."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import typing
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

import proto
from proto.base import Entity, Event, Rpc, StreamSpec
from proto.contract import PARAMETERISED, SOCKETS, Parameterised, Socket

__all__ = ["REGENERATE", "build", "proto_modules", "render", "service_uses"]

REGENERATE = "python -m libs.asyncapi > docs/asyncapi.json"
SERVICES_DIR = Path(proto.__file__).resolve().parents[1] / "services"
_NOT_OWNERS = {"base", "contract"}
_REF = "#/components/schemas/{name}"


def proto_modules() -> list[ModuleType]:
    """Every proto module that belongs to a service (its name is the owner), sorted by name."""
    names = sorted(m.name for m in pkgutil.iter_modules(proto.__path__) if m.name not in _NOT_OWNERS)
    return [importlib.import_module(f"proto.{name}") for name in names]


def service_uses(services_dir: Path = SERVICES_DIR) -> dict[tuple[str, str], set[str]]:
    """(proto module, name) -> the services whose code refers to `proto.<module>.<name>`."""
    uses: dict[tuple[str, str], set[str]] = defaultdict(set)
    for folder in sorted(p for p in services_dir.iterdir() if (p / "__init__.py").exists()):
        for path in sorted(folder.rglob("*.py")):
            for ref in _proto_refs(ast.parse(path.read_text(), str(path))):
                uses[ref].add(folder.name)
    return uses


def _proto_refs(tree: ast.Module) -> Iterator[tuple[str, str]]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "proto":
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proto."):
            module = node.module.removeprefix("proto.")
            yield from ((module, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("proto.") and a.asname:
                    aliases[a.asname] = a.name.removeprefix("proto.")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield aliases[node.value.id], node.attr


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: `*` is one token, `>` the rest."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


class _Catalog:
    """What proto declares, by owner, and who else uses each piece."""

    def __init__(self, uses: dict[tuple[str, str], set[str]]) -> None:
        self.events: list[tuple[str, type[Event]]] = []
        self.rpcs: list[tuple[str, str, Rpc[Any, Any]]] = []
        self.streams: list[StreamSpec] = []
        self.receivers: dict[type[Event], set[str]] = defaultdict(set)
        self.senders: dict[str, set[str]] = defaultdict(set)
        for module in proto_modules():
            self._read(module, uses)

    def _read(self, module: ModuleType, uses: dict[tuple[str, str], set[str]]) -> None:
        owner = module.__name__.removeprefix("proto.")
        for attr, value in sorted(vars(module).items()):
            users = uses.get((owner, attr), set()) - {owner}
            if isinstance(value, type) and issubclass(value, Event) and value.__module__ == module.__name__:
                if value.subject:
                    self.events.append((owner, value))
                    self.receivers[value] |= users
            elif isinstance(value, Rpc):
                self.rpcs.append((owner, attr, value))
                self.senders[value.subject] |= users
            elif isinstance(value, StreamSpec):
                self.streams.append(value)
            elif isinstance(value, Entity):
                for event in value.events:
                    self.receivers[event] |= users
                self.senders[value.lookup.subject] |= users

    def stream_of(self, subject: str) -> str:
        """The stream that stores `subject`, or "" when none does."""
        return next((s.name for s in self.streams if any(_matches(p, subject) for p in s.subjects)), "")


def _channel_id(subject: str) -> str:
    head, *rest = re.split(r"[._{}-]+", subject.strip("{}"))
    return head + "".join(word[:1].upper() + word[1:] for word in rest if word)


class _Document:
    """Channels, operations and messages as they are added; `schemas` maps each payload type to its JSON
    Schema (a reference into #/components/schemas)."""

    def __init__(self, schemas: dict[Any, dict[str, Any]]) -> None:
        self.schemas = schemas
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}

    def message(
        self, payload: object, content_type: str, description: str = ""
    ) -> tuple[str, dict[str, Any]]:
        """The message for `payload` (a Struct, a union of Structs, or None for bytes): (name, reference)."""
        if payload is None:
            name = content_type.split("/")[1].title().replace("-", "") + "Bytes"
            schema: dict[str, Any] = {"type": "string", "format": "binary"}
        else:
            schema = self.schemas[payload]
            refs = [r["$ref"] for r in schema.get("anyOf", [schema])]
            name = "Or".join(r.rsplit("/", 1)[1].rsplit(".", 1)[-1] for r in refs)
            if name in self.messages and self.messages[name]["payload"] != schema:
                name = "Or".join(r.rsplit("/", 1)[1].replace(".", "_") for r in refs)
        body: dict[str, Any] = {"name": name, "contentType": content_type, "payload": schema}
        if description:
            body["description"] = description
        self.messages.setdefault(name, body)
        return name, {"$ref": f"#/components/messages/{name}"}

    def channel(self, cid: str, address: str | None, messages: dict[str, Any], **extra: Any) -> None:
        """Add a channel named `cid` (a NATS subject unless `servers` says otherwise)."""
        extra.setdefault("servers", [{"$ref": "#/servers/nats"}])
        self.channels[cid] = {"address": address, "messages": messages, **extra}

    def operation(
        self,
        service: str,
        action: str,
        cid: str,
        reply: str | None = None,
        messages: Iterable[str] | None = None,
        **extra: Any,
    ) -> None:
        """`service` sends to (or receives from) channel `cid` (`messages` of it, or all of them);
        `reply` names the reply channel."""
        names = self.channels[cid]["messages"] if messages is None else messages
        op: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in names],
            "x-service": service,
            **extra,
        }
        if reply is not None:
            op["reply"] = {
                "channel": {"$ref": f"#/channels/{reply}"},
                "messages": [
                    {"$ref": f"#/channels/{reply}/messages/{m}"} for m in self.channels[reply]["messages"]
                ],
            }
        self.operations[f"{service}.{action}.{cid}"] = op

    def sides(
        self, cid: str, publishers: Iterable[str], receivers: Iterable[str], reply: str | None = None
    ) -> None:
        """The send operations of `publishers` and the receive operations of `receivers` on `cid`."""
        for service in sorted(publishers):
            self.operation(service, "send", cid, reply)
        for service in sorted(receivers):
            self.operation(service, "receive", cid, reply)


def _add_event(doc: _Document, catalog: _Catalog, owner: str, event: type[Event]) -> None:
    cid = _channel_id(event.subject)
    name, ref = doc.message(event, "application/json", (event.__doc__ or "").strip())
    stream = catalog.stream_of(event.subject)
    extra = {"description": f"Event stored on JetStream stream {stream}."} if stream else {}
    doc.channel(cid, event.subject, {name: ref}, **extra)
    doc.sides(cid, [owner], catalog.receivers[event])


def _add_rpc(doc: _Document, catalog: _Catalog, owner: str, attr: str, rpc: Rpc[Any, Any]) -> None:
    cid = _channel_id(rpc.subject)
    reply_id = f"{cid}Reply"
    about = f"Request proto.{owner}.{attr}, answered by {owner} (NATS service endpoint {rpc.name})."
    doc.channel(cid, rpc.subject, dict([doc.message(rpc.request, "application/json")]), description=about)
    about = f"The reply to {rpc.subject}, on the requester's inbox."
    doc.channel(reply_id, None, dict([doc.message(rpc.reply, "application/json")]), description=about)
    doc.sides(cid, catalog.senders[rpc.subject], [owner], reply_id)


def _add_parameterised(doc: _Document, row: Parameterised) -> None:
    messages = dict([doc.message(row.request, row.content_type)])
    extra: dict[str, Any] = {
        "description": row.description + (f" Stored on JetStream stream {row.stream}." if row.stream else ""),
        "parameters": {name: {"description": text} for name, text in row.parameters.items()},
    }
    doc.channel(row.name, row.address, messages, **extra)
    reply = None
    if row.reply is not None:
        reply = f"{row.name}Reply"
        about = f"The reply to {row.address}, on the requester's inbox."
        doc.channel(reply, None, dict([doc.message(row.reply, "application/json")]), description=about)
    doc.sides(row.name, row.publishers, row.subscribers, reply)


def _add_socket(doc: _Document, socket: Socket) -> None:
    sides = {
        side: [doc.message(frame, "application/json") for frame in typing.get_args(union) or (union,)]
        for side, union in (("client", socket.client), ("server", socket.server))
    }
    extra: dict[str, Any] = {
        "description": socket.description,
        "parameters": {name: {"description": text} for name, text in socket.parameters.items()},
        "servers": [{"$ref": "#/servers/gateway"}],
    }
    doc.channel(socket.name, socket.path, dict(sides["client"] + sides["server"]), **extra)
    doc.operation("gateway", "receive", socket.name, messages=[name for name, _ in sides["client"]])
    doc.operation("gateway", "send", socket.name, messages=[name for name, _ in sides["server"]])


def build(services_dir: Path = SERVICES_DIR) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a JSON-ready dict (deterministic: same code, same document)."""
    catalog = _Catalog(service_uses(services_dir))
    types: list[Any] = [event for _, event in catalog.events]
    types += [t for _, _, rpc in catalog.rpcs for t in (rpc.request, rpc.reply)]
    types += [t for row in PARAMETERISED for t in (row.request, row.reply) if t is not None]
    types += [t for s in SOCKETS for u in (s.client, s.server) for t in typing.get_args(u) or (u,)]
    types = list(dict.fromkeys(types))
    refs, schemas = msgspec.json.schema_components(types, ref_template=_REF)
    doc = _Document(dict(zip(types, refs, strict=True)))
    for owner, event in sorted(catalog.events, key=lambda e: e[1].subject):
        _add_event(doc, catalog, owner, event)
    for owner, attr, rpc in sorted(catalog.rpcs, key=lambda r: r[2].subject):
        _add_rpc(doc, catalog, owner, attr, rpc)
    for row in PARAMETERISED:
        _add_parameterised(doc, row)
    for socket in SOCKETS:
        _add_socket(doc, socket)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CPC Live messaging",
            "version": "1.0.0",
            "description": "Every NATS subject of CPC Live, generated from proto/ by libs/asyncapi.py "
            f"(regenerate: {REGENERATE}). `x-service` on an operation names the service that sends or "
            "receives; events are published by their owner, requests answered by it.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {"host": "localhost:4222", "protocol": "nats", "description": "NATS JetStream"},
            "gateway": {
                "host": "localhost:8080",
                "protocol": "ws",
                "description": "The gateway's WebSockets (CPC_HTTP_HOST:CPC_HTTP_PORT)",
            },
        },
        "channels": doc.channels,
        "operations": doc.operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": dict(sorted(doc.messages.items())),
        },
    }


def render(services_dir: Path = SERVICES_DIR) -> str:
    """The document as the JSON text committed at docs/asyncapi.json."""
    return json.dumps(build(services_dir), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Print the document (`python -m libs.asyncapi > docs/asyncapi.json`)."""
    print(render(), end="")


if __name__ == "__main__":
    main()
