"""Dead letters on real NATS JetStream: what becomes one (poison at once, a plain failure after
dead_letter_after tries) and what never does (a dependency being away), replay to that consumer alone,
drop, the metric counted once per dead letter, and the operator's CLI (`python -m libs.bus.deadletters`)
answering bad input with exit 2 and one line."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from libs.bus import (
    ConsumerSpec,
    Event,
    ServiceUnavailable,
    StreamSpec,
    connect,
    consume,
    deadletters,
    ensure_streams,
    publish,
)
from libs.bus.deadletters import admin
from libs.bus.publish import publish_encoded
from libs.devstack.ports import free_port

# Generous: a bound on a hang, not a measure of speed.
PATIENCE = 20.0
ROOT = Path(__file__).resolve().parents[2]


class Made(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "deadtest.thing.made"
    n: int


class Other(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "deadtest.other.made"
    n: int


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect(nats_url, name="test-dead-letters")
    yield client
    await client.drain()


async def _fresh_stream(js: JetStreamContext, subject: str) -> str:
    """A stream of our own for `subject` (any older test stream holding it is removed first)."""
    name = f"DEADTEST_{secrets.token_hex(4).upper()}"
    for info in await js.streams_info():
        if subject in (info.config.subjects or []):
            await js.delete_stream(info.config.name)
    await ensure_streams(js, [StreamSpec(name=name, subjects=(subject,))])
    return name


def _durable() -> str:
    return f"deadtest-{secrets.token_hex(4)}"


def _spec(stream: str, durable: str, **kw: float | int) -> ConsumerSpec:
    options: dict[str, float | int] = {
        "dead_letter_after": 3,
        "retry_max_seconds": 0.2,
        "ack_wait_seconds": 5,
    }
    options.update(kw)
    return ConsumerSpec(
        stream=stream,
        durable=durable,
        events=(Made,),
        ack_wait_seconds=float(options["ack_wait_seconds"]),
        dead_letter_after=int(options["dead_letter_after"]),
        retry_max_seconds=float(options["retry_max_seconds"]),
    )


def _counted(durable: str, subject: str = Made.subject) -> float:
    value = REGISTRY.get_sample_value("cpc_dead_letters_total", {"durable": durable, "subject": subject})
    return value or 0.0


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _letters(js: JetStreamContext, durable: str, count: int) -> list[admin.DeadLetter]:
    """Wait until `durable` has `count` dead letters; return them."""
    found: list[admin.DeadLetter] = []

    async def enough() -> bool:
        nonlocal found
        try:
            found = await admin.list_letters(js, durable)
        except admin.Unknown:  # its replay consumer is not made yet
            return False
        return len(found) >= count

    await _eventually(enough, f"{count} dead letter(s) of {durable}")
    return found


async def _settled(js: JetStreamContext, stream: str, durable: str) -> bool:
    info = await js.consumer_info(stream, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


class Handler:
    """Counts calls per event; `fail(n, attempt)` says what to raise on that call (None: succeed)."""

    def __init__(self, fail: Callable[[int, int], BaseException | None] | None = None) -> None:
        self.calls: dict[int, int] = {}
        self.handled: list[int] = []
        self.fail = fail

    async def __call__(self, event: Made) -> None:
        self.calls[event.n] = self.calls.get(event.n, 0) + 1
        error = self.fail(event.n, self.calls[event.n]) if self.fail else None
        if error is not None:
            raise error
        self.handled.append(event.n)


async def _start(js: JetStreamContext, spec: ConsumerSpec, handler: Handler) -> asyncio.Task[None]:
    task = asyncio.create_task(consume(js, spec, handler))
    name = deadletters.replay_consumer(spec.stream, spec.durable)

    async def ready() -> bool:
        if task.done():
            task.result()
        try:
            await js.consumer_info(deadletters.REPLAY_STREAM, name)
        except NotFoundError:
            return False
        return True

    await _eventually(ready, f"consumer {spec.durable}")
    return task


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_undecodable_event_is_dead_lettered_at_once_with_its_error_and_payload(nc: Client) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()
    handler = Handler()
    before = _counted(durable)
    raw = b'{"n": "not a number"'
    await publish_encoded(js, Made.subject, raw, msg_id=f"poison-{durable}")
    task = await _start(js, _spec(stream, durable), handler)
    try:
        [letter] = await _letters(js, durable, 1)
        await _eventually(lambda: _settled(js, stream, durable), "the original to be terminated")
    finally:
        await _stop(task)
    assert handler.calls == {}
    assert letter.data == raw
    assert letter.error.startswith("Poison: undecodable")
    assert (letter.consumer, letter.subject, letter.stream, letter.stream_seq) == (
        durable,
        Made.subject,
        stream,
        1,
    )
    assert letter.deliveries == 1
    assert letter.headers[deadletters.H_MSG_ID] == f"poison-{durable}"
    assert _counted(durable) == before + 1


async def test_a_plain_failure_is_dead_lettered_after_dead_letter_after_tries(nc: Client) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()
    handler = Handler(lambda n, attempt: RuntimeError(f"broken on {n}") if n == 1 else None)
    await publish(js, Made(n=1))
    await publish(js, Made(n=2))
    task = await _start(js, _spec(stream, durable, dead_letter_after=3), handler)
    try:
        [letter] = await _letters(js, durable, 1)
        await _eventually(lambda: _settled(js, stream, durable), "both events settled")
        await asyncio.sleep(0.6)  # a terminated event must not come back
    finally:
        await _stop(task)
    assert handler.calls == {1: 3, 2: 1}
    assert handler.handled == [2]
    assert letter.error == "RuntimeError: broken on 1"
    assert letter.deliveries == 3
    assert json.loads(letter.data)["n"] == 1


async def test_a_dependency_away_longer_than_dead_letter_after_is_retried_until_it_returns(
    nc: Client,
) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()

    def away(n: int, attempt: int) -> BaseException | None:
        if attempt <= 3:
            return ServiceUnavailable("channel does not answer")
        if attempt <= 5:
            return ConnectionRefusedError(111, "Connect call failed")
        if attempt <= 7:  # an error raised because of a lost connection counts as the outage too
            try:
                raise OSError("connection reset")
            except OSError as cause:
                return _caused(cause)
        return None

    handler = Handler(away)
    await publish(js, Made(n=1))
    task = await _start(js, _spec(stream, durable, dead_letter_after=2), handler)
    try:
        await _eventually(lambda: _has(handler, 1), "the event handled once the dependency is back")
        await _eventually(lambda: _settled(js, stream, durable), "the event acked")
    finally:
        await _stop(task)
    assert handler.calls == {1: 8}
    assert handler.handled == [1]
    assert await admin.list_letters(js, durable) == []
    # Exported at 0 from the consumer's start (so the alert's increase() sees a first dead letter).
    sample = {"durable": durable, "subject": Made.subject}
    assert REGISTRY.get_sample_value("cpc_dead_letters_total", sample) == 0.0


def _caused(cause: BaseException) -> BaseException:
    error = RuntimeError("could not store the event")
    error.__cause__ = cause
    return error


async def _has(handler: Handler, n: int) -> bool:
    return n in handler.handled


async def test_a_replay_reaches_only_its_consumer_and_is_gone_once_handled(nc: Client) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    elsewhere = await _fresh_stream(js, Other.subject)
    durable = _durable()
    fixed = False
    failing = Handler(lambda n, attempt: None if fixed else RuntimeError("bug"))
    sibling = Handler()  # another consumer of the same subject
    namesake = Handler()  # the same durable name on another stream
    events = range(1, 5)  # several: were replays shared with the namesake, some would reach it
    for n in events:
        await publish(js, Made(n=n))
    tasks = [
        await _start(js, _spec(stream, durable, dead_letter_after=1), failing),
        await _start(js, _spec(stream, _durable()), sibling),
        await _start(js, ConsumerSpec(stream=elsewhere, durable=durable, events=(Other,)), namesake),
    ]
    try:
        letters = await _letters(js, durable, len(events))
        await _eventually(lambda: _has(sibling, len(events)), "the sibling consumer to handle the events")
        fixed = True
        for letter in letters:
            await admin.replay(js, letter)
        await _eventually(lambda: _has(failing, len(events)), "the replays handled by their consumer")
        replays = deadletters.replay_consumer(stream, durable)
        await _eventually(lambda: _settled(js, deadletters.REPLAY_STREAM, replays), "the replay acked")
        await asyncio.sleep(0.5)  # what the others would get, they would have got by now
    finally:
        await _stop(*tasks)
    assert failing.calls == dict.fromkeys(events, 2)
    assert sorted(failing.handled) == list(events)
    assert sibling.calls == dict.fromkeys(events, 1)
    assert namesake.calls == {}
    assert await admin.list_letters(js, durable) == []
    with pytest.raises(NotFoundError):  # a work queue: the handled replay is removed
        await js.get_msg(
            deadletters.REPLAY_STREAM,
            seq=1,
            subject=deadletters.replay_subject(stream, durable, ">"),
            next=True,
        )


async def test_a_replay_that_fails_again_is_a_new_dead_letter_of_the_same_event(nc: Client) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()
    handler = Handler(lambda n, attempt: RuntimeError(f"still broken ({attempt})"))
    event = Made(n=3)
    await publish(js, event)
    task = await _start(js, _spec(stream, durable, dead_letter_after=1), handler)
    try:
        [first] = await _letters(js, durable, 1)
        await admin.replay(js, first)
        await _eventually(lambda: _second(js, durable, first.seq), "the replay dead-lettered again")
        [second] = await admin.list_letters(js, durable)
    finally:
        await _stop(task)
    assert second.seq > first.seq
    assert (second.stream, second.stream_seq) == (stream, 1)  # still names where the event was first stored
    assert second.headers[deadletters.H_MSG_ID] == event.event_id
    assert second.error == "RuntimeError: still broken (2)"
    assert second.data == first.data
    assert _counted(durable) == 2


async def _second(js: JetStreamContext, durable: str, first: int) -> bool:
    letters = await admin.list_letters(js, durable)
    return len(letters) == 1 and letters[0].seq != first


async def test_drop_removes_a_dead_letter_and_drop_consumer_all_of_its(nc: Client) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()
    for n in range(3):
        await publish_encoded(js, Made.subject, b"garbage %d" % n, msg_id=f"{durable}-{n}")
    task = await _start(js, _spec(stream, durable), Handler())
    try:
        letters = await _letters(js, durable, 3)
    finally:
        await _stop(task)
    await admin.drop(js, letters[0].seq)
    with pytest.raises(admin.Unknown, match=f"no dead letter with sequence {letters[0].seq}"):
        await admin.get(js, letters[0].seq)
    assert [letter.seq for letter in await admin.list_letters(js, durable)] == [x.seq for x in letters[1:]]
    assert await admin.drop_consumer(js, durable) == 2
    assert await admin.list_letters(js, durable) == []


async def test_a_dead_letter_stored_twice_is_kept_and_counted_once(nc: Client) -> None:
    """The process dies after storing the dead letter and before terminating the original: the original
    comes back after ack_wait, fails again, and its second move is dropped as a duplicate."""
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()
    spec = _spec(stream, durable, dead_letter_after=1, ack_wait_seconds=1)
    await js.add_consumer(stream, spec.config())
    await publish(js, Made(n=5))
    sub = await js.pull_subscribe_bind(durable, stream=stream)
    [msg] = await sub.fetch(1, timeout=5)
    before = _counted(durable)
    await deadletters.move(js, msg, subject=Made.subject, durable=durable, error=RuntimeError("bug"))
    await deadletters.move(js, msg, subject=Made.subject, durable=durable, error=RuntimeError("bug"))
    await sub.unsubscribe()  # "killed": never terminated
    handler = Handler(lambda n, attempt: RuntimeError("bug"))
    task = await _start(js, spec, handler)
    try:
        await _eventually(lambda: _has_call(handler, 5), "the original redelivered after ack_wait")
        await _eventually(lambda: _settled(js, stream, durable), "the original terminated")
    finally:
        await _stop(task)
    assert len(await admin.list_letters(js, durable)) == 1
    assert _counted(durable) == before + 1


async def _has_call(handler: Handler, n: int) -> bool:
    return n in handler.calls


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "libs.bus.deadletters",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=PATIENCE)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_cli_lists_shows_replays_and_drops(nc: Client, nats_url: str) -> None:
    js = nc.jetstream()
    stream = await _fresh_stream(js, Made.subject)
    durable = _durable()
    fixed = False
    handler = Handler(lambda n, attempt: None if fixed else RuntimeError(f"bug on {n}"))
    await publish(js, Made(n=1))
    await publish(js, Made(n=2))
    task = await _start(js, _spec(stream, durable, dead_letter_after=1), handler)
    try:
        first, second = await _letters(js, durable, 2)
        rc, out, err = await _cli("--nats", nats_url, "list", "--consumer", durable)
        assert (rc, err) == (0, "")
        rows = [line.split("\t") for line in out.splitlines()]
        assert rows[0] == ["seq", "at", "consumer", "deliveries", "subject", "error"]
        assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows[1:]] == [
            (str(first.seq), durable, "1", Made.subject, "RuntimeError: bug on 1"),
            (str(second.seq), durable, "1", Made.subject, "RuntimeError: bug on 2"),
        ]
        rc, out, err = await _cli("--nats", nats_url, "show", str(first.seq))
        assert (rc, err) == (0, "")
        shown = json.loads(out)
        assert shown["seq"] == first.seq
        assert shown["payload"]["n"] == 1
        assert shown["headers"][deadletters.H_CONSUMER] == durable
        assert shown["headers"][deadletters.H_STREAM] == stream

        fixed = True
        rc, out, err = await _cli("--nats", nats_url, "replay", str(first.seq))
        assert (rc, out, err) == (0, "replayed 1 dead letter(s)\n", "")
        await _eventually(lambda: _has(handler, 1), "the replayed event handled")
        rc, out, err = await _cli("--nats", nats_url, "drop", str(second.seq))
        assert (rc, out, err) == (0, f"dropped dead letter {second.seq}\n", "")
        rc, out, _ = await _cli("--nats", nats_url, "list", "--consumer", durable)
        assert (rc, out.splitlines()[1:]) == (0, [])
        await asyncio.sleep(0.5)
    finally:
        await _stop(task)
    assert handler.handled == [1]  # the dropped one was never handled


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "required: command"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("show",), "required: SEQ"),
        (("show", "abc"), '"abc" is not a dead-letter sequence'),
        (("show", "-1"), '"-1" is not a dead-letter sequence'),
        (("drop", "0"), '"0" is not a dead-letter sequence'),
        (("show", "1" + "0" * 30), "is not a dead-letter sequence"),
        (("show", "987654321"), "no dead letter with sequence 987654321"),
        (("drop", "987654321"), "no dead letter with sequence 987654321"),
        (("replay", "987654321"), "no dead letter with sequence 987654321"),
        (("list", "--consumer", "nobody-here"), 'no consumer named "nobody-here"'),
        (("replay", "--consumer", "nobody-here"), 'no consumer named "nobody-here"'),
        (("drop", "--consumer", "no.such.>"), '"no.such.>" is not a consumer name'),
        (("replay", "1", "--all"), "not allowed with argument"),
    ],
)
async def test_the_cli_answers_bad_input_with_exit_2_and_one_line(
    nats_url: str, args: tuple[str, ...], problem: str
) -> None:
    rc, out, err = await _cli("--nats", nats_url, *args)
    _one_line_failure(rc, out, err, problem)


async def test_the_cli_names_a_nats_server_it_cannot_reach(nats_url: str) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    rc, out, err = await _cli("--nats", url, "list")
    _one_line_failure(rc, out, err, f"cannot reach NATS at {url}")
    rc, out, err = await _cli("--nats", "http://example.com", "list")
    _one_line_failure(rc, out, err, 'bad NATS URL "http://example.com"')


def _one_line_failure(rc: int, out: str, err: str, problem: str) -> None:
    assert rc == 2, (out, err)
    assert out == ""
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert problem in err, err
