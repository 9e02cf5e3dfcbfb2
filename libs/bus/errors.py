"""Typed errors that cross the bus: a service raises one, the gateway turns it into an HTTP problem."""

from __future__ import annotations

from typing import ClassVar

import msgspec
from nats import errors as nats_errors
from nats.js import errors as js_errors

__all__ = [
    "BadRequest",
    "Conflict",
    "ErrorBody",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Poison",
    "RetryLater",
    "ServiceError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "error_from_body",
    "is_unavailable",
    "register_unavailable",
    "unavailable_dependency",
]


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The body of an error reply; `status` is the HTTP status the gateway answers with."""

    status: int
    code: str
    detail: str
    retry_after: float | None = None


class ServiceError(Exception):
    """Base of every error a request handler may raise on purpose; its message reaches the client."""

    status: int = 500
    code: str = "internal"
    _by_status: ClassVar[dict[int, type[ServiceError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        ServiceError._by_status.setdefault(cls.status, cls)  # error_from_body rebuilds the first per status

    def __init__(self, detail: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def body(self) -> ErrorBody:
        """The error as it travels on the bus."""
        return ErrorBody(status=self.status, code=self.code, detail=self.detail, retry_after=self.retry_after)


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class Unprocessable(ServiceError):
    status, code = 422, "unprocessable"


class TooManyRequests(ServiceError):
    status, code = 429, "too_many_requests"


class ServiceUnavailable(ServiceError):
    status, code = 503, "service_unavailable"


def error_from_body(body: ErrorBody) -> ServiceError:
    """Rebuild the typed error a remote handler raised."""
    cls = ServiceError._by_status.get(body.status, ServiceError)
    error = cls(body.detail, code=body.code, retry_after=body.retry_after)
    error.status = body.status
    return error


class RetryLater(Exception):
    """Raised by an event handler: nak the message so it comes back after `delay` seconds."""

    def __init__(self, reason: str, *, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Poison(Exception):
    """Raised by an event handler: the message can never be handled; terminate it and log why."""


# What says "a dependency is away now", not "this request or event is bad": the type, and the dependency
# it names. libs/db/pool.py adds asyncpg's connection errors, so the bus never imports asyncpg.
_UNAVAILABLE: dict[type[BaseException], str] = {
    nats_errors.ConnectionClosedError: "NATS",
    nats_errors.ConnectionDrainingError: "NATS",
    nats_errors.ConnectionReconnectingError: "NATS",
    nats_errors.NoRespondersError: "NATS",
    nats_errors.NoServersError: "NATS",
    nats_errors.OutboundBufferLimitError: "NATS",
    nats_errors.StaleConnectionError: "NATS",
    nats_errors.TimeoutError: "NATS",
    js_errors.NoStreamResponseError: "NATS JetStream",
    js_errors.ServiceUnavailableError: "NATS JetStream",
    ServiceUnavailable: "a service",
    OSError: "a server this service needs",  # refused, reset or timed out (TimeoutError is an OSError)
}


def register_unavailable(*types: type[BaseException], dependency: str) -> None:
    """Declare that an exception of `types` means `dependency` (e.g. "PostgreSQL") is away."""
    for t in types:
        _UNAVAILABLE[t] = dependency


def unavailable_dependency(exc: BaseException) -> str | None:
    """The dependency `exc` (or what caused it) says is away, or None when it is another failure. The
    most specific registered type wins: asyncpg's errors name PostgreSQL though some are OSErrors too."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for klass in type(current).__mro__:
            if klass in _UNAVAILABLE:
                return _UNAVAILABLE[klass]
        current = current.__cause__ or current.__context__
    return None


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says a dependency is away rather than the request or event
    being bad: a lost connection or timeout, PostgreSQL refusing or shutting down, no service answering."""
    return unavailable_dependency(exc) is not None
