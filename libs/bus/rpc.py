"""Request/reply over the NATS service API (`nats.micro`) with typed msgspec requests, replies and errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from nats import micro
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request
from nats.micro.service import Service
from opentelemetry.trace import SpanKind

from libs.bus.codec import decode, encode
from libs.bus.errors import (
    BadRequest,
    ErrorBody,
    ServiceError,
    ServiceUnavailable,
    error_from_body,
    unavailable_dependency,
)
from libs.obs.logging import get_logger
from libs.obs.metrics import HANDLED, HANDLING_SECONDS
from libs.obs.tracing import extract_context, inject_context, tracer
from proto.base import Rpc

__all__ = ["Route", "Rpc", "answers", "request", "route", "routes_of", "serve"]

log = get_logger("bus")

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class Route(Generic[Req, Rep]):
    """An Rpc bound to the handler that answers it."""

    rpc: Rpc[Req, Rep]
    handler: Callable[[Req], Awaitable[Rep]]


def route(rpc: Rpc[Req, Rep], handler: Callable[[Req], Awaitable[Rep]]) -> Route[Req, Rep]:
    """Bind `handler` to `rpc` (keeps the request and reply types checked together)."""
    return Route(rpc, handler)


Self = TypeVar("Self")
Method = Callable[[Self, Req], Awaitable[Rep]]
_ANSWERS = "__cpc_answers__"


def answers(rpc: Rpc[Req, Rep]) -> Callable[[Method[Self, Req, Rep]], Method[Self, Req, Rep]]:
    """Mark a handler class's method as the one answering `rpc`; `routes_of(instance)` collects them.
    The request and reply types of the method are checked against the Rpc's."""

    def mark(method: Method[Self, Req, Rep]) -> Method[Self, Req, Rep]:
        setattr(method, _ANSWERS, rpc)
        return method

    return mark


def routes_of(*handlers: object) -> list[Route[Any, Any]]:
    """The routes of every method marked with `answers` on `handlers`, in the order the class defines
    them; an Rpc answered twice is a mistake caught here, at start."""
    routes: dict[str, Route[Any, Any]] = {}
    marked_by: dict[str, object] = {}
    for handler in handlers:
        for klass in reversed(type(handler).__mro__):
            for name, member in vars(klass).items():
                rpc = getattr(member, _ANSWERS, None)
                if rpc is None:
                    continue
                if marked_by.setdefault(rpc.subject, member) is not member:
                    raise ValueError(f"{rpc.subject} is answered twice")
                routes[rpc.subject] = Route(rpc, getattr(handler, name))
    if not routes:
        raise ValueError("no method is marked with @answers")
    return list(routes.values())


def _validation_detail(exc: msgspec.MsgspecError) -> str:
    return str(exc).replace("`$.", "`")


async def _answer(msg_request: Request, r: Route[Any, Any]) -> None:
    subject = r.rpc.subject
    started = time.perf_counter()
    outcome = "ok"
    with tracer.start_as_current_span(
        f"{subject} process", context=extract_context(msg_request.headers), kind=SpanKind.SERVER
    ):
        try:
            try:
                payload = decode(msg_request.data, r.rpc.request)
            except msgspec.MsgspecError as exc:
                raise BadRequest(
                    f"invalid request: {_validation_detail(exc)}", code="invalid_request"
                ) from exc
            reply = await r.handler(payload)
            await msg_request.respond(encode(reply))
        except ServiceError as exc:
            outcome = exc.code
            body = exc.body()
            await msg_request.respond_error(str(body.status), body.detail, data=encode(body))
        except Exception as exc:
            body = _failure_body(subject, exc)
            outcome = "error" if body.status == 500 else body.code  # "error" is what the alert counts
            await msg_request.respond_error(str(body.status), body.detail, data=encode(body))
    elapsed = time.perf_counter() - started
    HANDLED.labels(subject, "request", outcome).inc()
    HANDLING_SECONDS.labels(subject, "request").observe(elapsed)
    log.info("request_handled", subject=subject, outcome=outcome, ms=round(elapsed * 1000, 2))


def _failure_body(subject: str, exc: Exception) -> ErrorBody:
    """A dependency away (PostgreSQL down, say) is a 503 the caller may retry in a second, logged in one
    line; anything else is a bug: a 500 whose traceback goes to the log, never to the caller."""
    dependency = unavailable_dependency(exc)
    if dependency is None:
        log.exception("request_failed", subject=subject)
        return ErrorBody(status=500, code="internal", detail="internal error")
    log.warning("request_dependency_unavailable", subject=subject, dependency=dependency, error=str(exc))
    error = ServiceUnavailable(
        f"{dependency} is unavailable; try again shortly", code="dependency_unavailable", retry_after=1
    )
    return error.body()


async def serve(
    nc: Client,
    *,
    name: str,
    version: str,
    description: str,
    routes: Sequence[Route[Any, Any]],
    concurrency: int = 256,
    health: Callable[[], dict[str, bool]] | None = None,
) -> Service:
    """Register `routes` as endpoints of a discoverable NATS service; requests run concurrently.
    `health()` (e.g. {"postgres": False}) is each endpoint's `data` in `$SRV.STATS.<name>` replies, which
    is how the gateway's /readyz learns which dependency of a service is away."""
    service = await micro.add_service(
        nc,
        name=name,
        version=version,
        description=description,
        stats_handler=(lambda _: health()) if health is not None else None,
    )
    limit = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    def endpoint_handler(r: Route[Any, Any]) -> Callable[[Request], Awaitable[None]]:
        async def run(req: Request) -> None:
            async with limit:
                await _answer(req, r)

        async def spawn(req: Request) -> None:
            # nats.py runs one subscription's callbacks one after another; a task per request
            # keeps a slow request from holding up the rest.
            task = asyncio.create_task(run(req))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return spawn

    for r in routes:
        await service.add_endpoint(name=r.rpc.name, subject=r.rpc.subject, handler=endpoint_handler(r))
    return service


async def request(nc: Client, rpc: Rpc[Req, Rep], payload: Req, *, timeout: float = 5.0) -> Rep:
    """Send `payload` to the service owning `rpc` and return its typed reply, or raise its typed error."""
    with tracer.start_as_current_span(f"{rpc.subject} request", kind=SpanKind.CLIENT):
        headers = inject_context({})
        try:
            msg = await nc.request(rpc.subject, encode(payload), timeout=timeout, headers=headers)
        except NoRespondersError:
            raise ServiceUnavailable(f'no service answers "{rpc.subject}"', code="no_responders") from None
        except (TimeoutError, NatsTimeoutError):
            raise ServiceUnavailable(
                f'"{rpc.subject}" timed out after {timeout:g} s', code="timeout"
            ) from None
    if msg.headers and ERROR_CODE_HEADER in msg.headers:
        try:
            body = decode(msg.data, ErrorBody)
        except msgspec.MsgspecError:
            status = int(msg.headers[ERROR_CODE_HEADER]) if msg.headers[ERROR_CODE_HEADER].isdigit() else 500
            body = ErrorBody(status=status, code="error", detail=msg.headers.get(ERROR_HEADER, "error"))
        raise error_from_body(body)
    return decode(msg.data, rpc.reply)
