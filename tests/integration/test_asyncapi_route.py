"""The gateway serves the AsyncAPI document of every NATS subject at /schema/asyncapi.json, without a
token, the same document the code generates (and the committed docs/asyncapi.json holds)."""

from __future__ import annotations

import httpx

from libs.asyncapi import render
from libs.devstack.stack import Stack


def test_the_gateway_serves_the_generated_asyncapi_document_to_anyone(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/schema/asyncapi.json", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.text == render()
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    assert "stream.session.started" in {c["address"] for c in document["channels"].values()}


def test_the_openapi_document_still_describes_the_derived_bodies(stack: Stack) -> None:
    schemas = httpx.get(f"{stack.url}/schema/openapi.json", timeout=10).json()["components"]["schemas"]
    new_channel = schemas["NewChannel"]
    assert set(new_channel["properties"]) == {"name", "title", "category", "tags", "description", "language"}
    assert set(new_channel["required"]) == {"name", "title", "category"}
    assert "actor_id" not in schemas["ModerationBody"]["properties"]
    assert set(schemas["LoginBody"]["properties"]) == {"username", "password"}
