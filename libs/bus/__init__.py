"""The bus: one way to connect, publish, consume and request over NATS JetStream."""

from libs.bus.codec import Event, decode, encode, new_id, utcnow
from libs.bus.connection import StreamSpec, connect, ensure_streams
from libs.bus.consume import ConsumerSpec, consume
from libs.bus.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Poison,
    RetryLater,
    ServiceError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from libs.bus.publish import publish, publish_encoded
from libs.bus.rpc import Route, Rpc, answers, request, route, routes_of, serve

__all__ = [
    "BadRequest",
    "Conflict",
    "ConsumerSpec",
    "Event",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Poison",
    "RetryLater",
    "Route",
    "Rpc",
    "ServiceError",
    "ServiceUnavailable",
    "StreamSpec",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "answers",
    "connect",
    "consume",
    "decode",
    "encode",
    "ensure_streams",
    "new_id",
    "publish",
    "publish_encoded",
    "request",
    "route",
    "routes_of",
    "serve",
    "utcnow",
]
