"""libs.bus against a real nats-server with JetStream: publish, consume, request/reply."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import ClassVar

import msgspec
import pytest
from nats.aio.client import Client

from libs.bus import (
    BadRequest,
    ConsumerSpec,
    Event,
    NotFound,
    Poison,
    RetryLater,
    Rpc,
    ServiceError,
    ServiceUnavailable,
    StreamSpec,
    connect,
    consume,
    ensure_streams,
    publish,
    request,
    route,
    serve,
)


class Pinged(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "bustest.thing.pinged"
    n: int


class Echo(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    times: int = 1


class Echoed(msgspec.Struct, frozen=True, kw_only=True):
    text: str


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect(nats_url, name="test-bus")
    yield client
    await client.drain()


async def _fresh_stream(nc: Client, subject: str) -> str:
    name = f"BUSTEST_{secrets.token_hex(4).upper()}"
    js = nc.jetstream()
    # A stream per test; first remove any other stream that holds the same subjects.
    for info in await js.streams_info():
        if subject in (info.config.subjects or []):
            await js.delete_stream(info.config.name)
    await ensure_streams(js, [StreamSpec(name=name, subjects=(subject,))])
    return name


async def test_publish_waits_for_ack_and_drops_a_repeated_event_id(nc: Client) -> None:
    stream = await _fresh_stream(nc, Pinged.subject)
    js = nc.jetstream()
    event = Pinged(n=1)
    first = await publish(js, event)
    again = await publish(js, event)
    assert first.stream == stream
    assert not first.duplicate
    assert again.duplicate
    info = await js.stream_info(stream)
    assert info.state.messages == 1


async def test_ensure_streams_updates_an_existing_stream_in_place(nc: Client) -> None:
    stream = await _fresh_stream(nc, Pinged.subject)
    js = nc.jetstream()
    await ensure_streams(js, [StreamSpec(name=stream, subjects=(Pinged.subject,), max_age_seconds=60)])
    info = await js.stream_info(stream)
    assert info.config.max_age == 60


async def test_consume_acks_on_return_naks_on_retry_and_terminates_poison(nc: Client) -> None:
    stream = await _fresh_stream(nc, Pinged.subject)
    js = nc.jetstream()
    seen: list[tuple[int, int]] = []
    attempts: dict[int, int] = {}
    done = asyncio.Event()

    async def handler(event: Pinged) -> None:
        attempts[event.n] = attempts.get(event.n, 0) + 1
        seen.append((event.n, attempts[event.n]))
        if event.n == 2 and attempts[2] == 1:
            raise RetryLater("not yet", delay=0.2)
        if event.n == 3:
            raise Poison("never")
        if event.n == 4 and attempts[4] == 1:
            raise RuntimeError("a bug that goes away")
        if attempts.get(1) and attempts.get(2) == 2 and attempts.get(4) == 2:
            done.set()

    for n in (1, 2, 3, 4):
        await publish(js, Pinged(n=n))
    spec = ConsumerSpec(stream=stream, durable="bus-test", events=(Pinged,), ack_wait_seconds=5)
    task = asyncio.create_task(consume(js, spec, handler))
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
        await asyncio.sleep(0.5)  # a terminated message must not come back
    finally:
        task.cancel()
    assert attempts == {1: 1, 2: 2, 3: 1, 4: 2}
    info = await js.consumer_info(stream, "bus-test")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_request_reply_with_typed_errors(nc: Client) -> None:
    subject = f"bustest.echo{secrets.token_hex(3)}"
    echo = Rpc(subject, Echo, Echoed)

    async def handle(req: Echo) -> Echoed:
        if req.text == "missing":
            raise NotFound(f'no thing named "{req.text}"')
        if req.text == "boom":
            raise RuntimeError("secret internals")
        if req.text == "slow":
            await asyncio.sleep(0.5)
        return Echoed(text=req.text * req.times)

    service = await serve(
        nc, name="bustest", version="1.0.0", description="test", routes=[route(echo, handle)]
    )
    try:
        assert await request(nc, echo, Echo(text="ab", times=2)) == Echoed(text="abab")
        with pytest.raises(NotFound, match='no thing named "missing"'):
            await request(nc, echo, Echo(text="missing"))
        with pytest.raises(ServiceError) as internal:
            await request(nc, echo, Echo(text="boom"))
        assert internal.value.status == 500
        assert "secret" not in internal.value.detail
        raw = await nc.request(subject, b'{"text": 5}', timeout=2)
        assert raw.headers is not None
        assert raw.headers["Nats-Service-Error-Code"] == "400"
        assert "text" in raw.headers["Nats-Service-Error"]
        # A slow request does not hold up a fast one on the same endpoint.
        slow = asyncio.create_task(request(nc, echo, Echo(text="slow")))
        await asyncio.sleep(0.05)
        fast = await asyncio.wait_for(request(nc, echo, Echo(text="f")), timeout=0.3)
        assert fast.text == "f"
        assert (await slow).text == "slow"
        ping = await nc.request("$SRV.PING.bustest", b"", timeout=2)
        assert b"bustest" in ping.data
    finally:
        await service.stop()


async def test_bad_request_is_typed(nc: Client) -> None:
    subject = f"bustest.typed{secrets.token_hex(3)}"
    rpc = Rpc(subject, Echo, Echoed)

    async def handle(req: Echo) -> Echoed:
        return Echoed(text=req.text)

    service = await serve(nc, name="bustyped", version="1.0.0", description="t", routes=[route(rpc, handle)])
    try:
        with pytest.raises(BadRequest, match="times"):
            await nc_request_bad(nc, subject)
    finally:
        await service.stop()


async def nc_request_bad(nc: Client, subject: str) -> None:
    """Send an Echo with a wrongly typed field through the typed client."""

    class WrongEcho(msgspec.Struct, frozen=True, kw_only=True):
        text: str
        times: str

    await request(nc, Rpc(subject, WrongEcho, Echoed), WrongEcho(text="x", times="two"))


async def test_request_without_responders_is_service_unavailable(nc: Client) -> None:
    rpc = Rpc("bustest.nobody", Echo, Echoed)
    with pytest.raises(ServiceUnavailable, match="no service answers"):
        await request(nc, rpc, Echo(text="x"), timeout=1)
