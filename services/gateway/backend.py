"""The gateway's one door to services: typed requests over NATS."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client

from libs.bus import Rpc, request

__all__ = ["Backend"]

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)


class Backend:
    """Holds the NATS connection; route handlers call `backend.call(RPC, payload)`."""

    def __init__(self, nc: Client, *, timeout: float) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.timeout = timeout
        self._object_stores: dict[str, Any] = {}

    async def call(self, rpc: Rpc[Req, Rep], payload: Req, *, timeout: float | None = None) -> Rep:
        """Ask the owning service; its typed error propagates (and becomes an HTTP problem)."""
        return await request(self.nc, rpc, payload, timeout=timeout or self.timeout)

    async def object_store(self, bucket: str) -> Any:
        """A JetStream object store bucket, bound once and reused."""
        store = self._object_stores.get(bucket)
        if store is None:
            store = self._object_stores[bucket] = await self.js.object_store(bucket)
        return store
