"""/schema/asyncapi.json: the AsyncAPI 3.0 document of every NATS subject (libs/asyncapi.py), generated
once at start and kept in memory; public, like the OpenAPI document next to it."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from libs.asyncapi import render

__all__ = ["ROUTES", "asyncapi_document"]


def asyncapi_document() -> bytes:
    """The document's bytes (the same text as the committed docs/asyncapi.json)."""
    return render().encode()


@get("/schema/asyncapi.json", include_in_schema=False, sync_to_thread=False)
def asyncapi(state: State) -> Response[bytes]:
    """The AsyncAPI document: every subject, its payload schema, who publishes and who consumes it."""
    body: bytes = state.asyncapi
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=300"})


ROUTES: list[Any] = [asyncapi]
