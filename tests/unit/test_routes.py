"""`answers` marks handler methods with the Rpc they answer; `routes_of` binds them, once each."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest

from libs.bus import answers, routes_of
from proto.base import Rpc


class Ask(msgspec.Struct, frozen=True, kw_only=True):
    text: str


class Said(msgspec.Struct, frozen=True, kw_only=True):
    text: str


ECHO = Rpc("test.echo", Ask, Said)
SHOUT = Rpc("test.shout", Ask, Said)


@dataclass(frozen=True, slots=True)
class Handlers:
    suffix: str

    @answers(ECHO)
    async def echo(self, req: Ask) -> Said:
        return Said(text=req.text + self.suffix)

    @answers(SHOUT)
    async def shout(self, req: Ask) -> Said:
        return Said(text=req.text.upper())

    async def helper(self, req: Ask) -> Said:  # not marked: not a route
        return Said(text="")


async def test_marked_methods_become_routes_bound_to_the_instance_in_class_order() -> None:
    routes = routes_of(Handlers("!"))
    assert [r.rpc.subject for r in routes] == ["test.echo", "test.shout"]
    assert await routes[0].handler(Ask(text="hi")) == Said(text="hi!")


async def test_a_subclass_overriding_a_marked_method_answers_with_its_own() -> None:
    class Loud(Handlers):
        async def echo(self, req: Ask) -> Said:
            return Said(text="LOUD")

    [echo, _] = routes_of(Loud("?"))
    assert await echo.handler(Ask(text="x")) == Said(text="LOUD")


def test_an_rpc_answered_by_two_methods_is_refused_at_start() -> None:
    class Twice:
        @answers(ECHO)
        async def one(self, req: Ask) -> Said:
            return Said(text="1")

        @answers(ECHO)
        async def two(self, req: Ask) -> Said:
            return Said(text="2")

    with pytest.raises(ValueError, match=r"test\.echo is answered twice"):
        routes_of(Twice())


def test_handlers_with_no_marked_method_are_a_mistake() -> None:
    with pytest.raises(ValueError, match="no method"):
        routes_of(object())
