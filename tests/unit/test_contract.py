"""proto/ is the whole contract: every subject used in services/ and libs/ comes from it, it depends on
msgspec and the standard library alone, the chat WebSocket frames keep their bytes, and the committed
AsyncAPI document is the one the code generates."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import msgspec
import pytest

from libs.asyncapi import REGENERATE, proto_modules, render
from libs.bus import encode
from proto import chat as pc
from proto.base import Event, Rpc, StreamSpec
from proto.contract import PARAMETERISED

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{[^}]*\}")


def _known_subjects() -> list[str]:
    """Every subject (or subject pattern) proto declares: events, requests, streams, parameterised ones."""
    known = [PLACEHOLDER.sub("*", row.address) for row in PARAMETERISED]
    for module in proto_modules():
        for value in vars(module).values():
            if isinstance(value, Rpc) or (
                isinstance(value, type) and issubclass(value, Event) and value.subject
            ):
                known.append(value.subject)
            elif isinstance(value, StreamSpec):
                known += value.subjects
    return known


def _overlap(a: str, b: str) -> bool:
    """Some subject matches both NATS patterns `a` and `b`."""
    left, right = a.split("."), b.split(".")
    for x, y in zip(left, right, strict=False):
        if ">" in (x, y):
            return True
        if "*" not in (x, y) and x != y:
            return False
    return len(left) == len(right)


def _literal_subjects(path: Path, known: list[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_*>-]+)+", text) and any(_overlap(text, k) for k in known):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    return found


def test_every_subject_in_services_and_libs_comes_from_proto() -> None:
    known = _known_subjects()
    found = [
        hit
        for folder in ("services", "libs")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for hit in _literal_subjects(path, known)
    ]
    assert not found, "subjects written as literals (declare them in proto/ and use them from there):\n" + (
        "\n".join(found)
    )


def test_proto_imports_only_msgspec_the_standard_library_and_proto() -> None:
    allowed = set(sys.stdlib_module_names) | {"msgspec", "proto", "__future__"}
    bad = []
    for path in sorted((ROOT / "proto").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert not bad, bad


@pytest.mark.parametrize("row", PARAMETERISED, ids=lambda row: row.name)
def test_each_parameterised_subject_takes_exactly_its_declared_parameters(row) -> None:  # type: ignore[no-untyped-def]
    assert set(inspect.signature(row.subject).parameters) == set(row.parameters)
    assert set(PLACEHOLDER.findall(row.address)) == {f"{{{name}}}" for name in row.parameters}
    assert row.request is not None or row.content_type != "application/json"


def test_the_committed_asyncapi_document_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "asyncapi.json").read_text()
    assert committed == render(), f"docs/asyncapi.json is out of date: run `{REGENERATE}`"


def test_the_asyncapi_document_names_who_sends_and_who_receives() -> None:
    document = msgspec.json.decode(render())
    operations = document["operations"]
    assert operations["ingest.send.streamSessionStarted"]["action"] == "send"
    assert "edge.receive.streamSessionStarted" in operations  # edge keeps a copy of live sessions
    assert operations["gateway.send.chatSend"]["reply"]["channel"] == {"$ref": "#/channels/chatSendReply"}
    assert "chat.receive.chatSend" in operations
    assert document["channels"]["mediaFrames"]["address"] == "media.{session_id}.{kind}"
    assert document["channels"]["mediaFrames"]["servers"] == [{"$ref": "#/servers/nats"}]


def test_the_chat_socket_is_in_the_document_with_each_frame_on_its_side() -> None:
    document = msgspec.json.decode(render())
    socket = document["channels"]["chatSocket"]
    assert socket["address"] == "/api/v1/channels/{name}/chat"
    assert socket["servers"] == [{"$ref": "#/servers/gateway"}]
    assert document["servers"]["gateway"]["protocol"] == "ws"
    ops = document["operations"]
    received = {ref["$ref"].rsplit("/", 1)[1] for ref in ops["gateway.receive.chatSocket"]["messages"]}
    sent = {ref["$ref"].rsplit("/", 1)[1] for ref in ops["gateway.send.chatSocket"]["messages"]}
    assert received == {"Hello", "SendFrame"}
    assert {"RoomState", "ChatMessage", "AckFrame", "ErrorFrame"} <= sent
    # every frame's schema carries its tag, so a client can tell them apart
    hello = document["components"]["schemas"]["Hello"]
    assert hello["properties"]["type"] == {"enum": ["hello"]}


# Captured from the gateway before the frames became Structs (dicts encoded in this key order).
ACK = b'{"type":"ack","nonce":"n1","id":"m1","kind":"message","detail":""}'
ACK_DUPLICATE = b'{"type":"ack","nonce":"n1","id":"m1","kind":"command","detail":"done","duplicate":true}'
ERROR = b'{"type":"error","status":400,"code":"invalid_frame","detail":"unreadable frame"}'
ERROR_RETRY = (
    b'{"type":"error","status":429,"code":"rate_limited","detail":"slow down","nonce":"n2",'
    b'"retry_after":1.5,"retry_at":"2026-12-04T18:00:01.500+00:00"}'
)


def test_chat_socket_frames_keep_their_bytes_on_the_wire() -> None:
    assert encode(pc.AckFrame(nonce="n1", id="m1", kind="message", detail="")) == ACK
    assert (
        encode(pc.AckFrame(nonce="n1", id="m1", kind="command", detail="done", duplicate=True))
        == ACK_DUPLICATE
    )
    assert encode(pc.ErrorFrame(status=400, code="invalid_frame", detail="unreadable frame")) == ERROR
    retry = pc.ErrorFrame(
        status=429,
        code="rate_limited",
        detail="slow down",
        nonce="n2",
        retry_after=1.5,
        retry_at="2026-12-04T18:00:01.500+00:00",
    )
    assert encode(retry) == ERROR_RETRY
    client = msgspec.json.Decoder(pc.ClientFrame)
    assert client.decode(b'{"type":"hello"}') == pc.Hello()
    assert client.decode(b'{"type":"send","nonce":"a","text":"hi"}') == pc.SendFrame(nonce="a", text="hi")
    server = msgspec.json.Decoder(pc.ServerFrame)
    assert server.decode(ERROR_RETRY) == retry
