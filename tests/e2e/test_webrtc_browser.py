"""Headless Chromium broadcasts its fake camera with WHIP from one page and a second page (its own browser
context) plays the channel with WHEP; the viewer's getStats() shows decoded frames growing.

The pages come from a loopback origin other than the gateway's, so every WHIP/WHEP call is a real
cross-origin request with a CORS preflight (the `cors_gateway` fixture allows that origin)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CorsGateway
from tests.e2e.web_helpers import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_webrtc import live_channel

PAGE = (Path(__file__).parent / "webrtc_page.html").read_bytes()

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed at /usr/bin/chromium (CI installs it and runs this test)",
)


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/webrtc.html":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin(cors_gateway: CorsGateway) -> Iterator[str]:
    """The test page served from the origin the CORS gateway allows."""
    server = ThreadingHTTPServer(("127.0.0.1", cors_gateway.page_port), _PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield cors_gateway.origin
    server.shutdown()
    server.server_close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium with a fake camera and microphone."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def open_page(browser: Any, origin: str) -> Any:
    """A page of the test origin in a browser context of its own."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{origin}/webrtc.html")
    return page


async def until(probe: Any, done: Any, timeout: float, what: str) -> Any:
    """Poll `probe()` until `done(value)`; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: last {value!r}")


async def test_chromium_broadcasts_with_whip_and_plays_with_whep(
    cors_gateway: CorsGateway, page_origin: str, api: httpx.Client, make_member, browser: Any
) -> None:  # type: ignore[no-untyped-def]
    """Chromium's fake camera reaches a second Chromium page through ingest, NATS and edge."""
    name, key = live_channel(api, make_member)
    gw = cors_gateway.url
    broadcaster = await open_page(browser, page_origin)
    whip = await broadcaster.evaluate("([a, c, k]) => whip(a, c, k)", [gw, name, key])
    assert whip["status"] == 201, whip
    sent = await until(
        lambda: broadcaster.evaluate("outboundVideo()"), lambda v: v["framesEncoded"] > 30, 10, "encoding"
    )
    assert sent["codec"].lower() in ("video/vp8", "video/h264"), sent
    await until(lambda: _live(api, name), bool, 10, "channel live")

    viewer = await open_page(browser, page_origin)
    whep = await until(
        lambda: viewer.evaluate("([a, c]) => whep(a, c)", [gw, name]),
        lambda v: v["status"] != 404,
        10,
        "edge knows the session",
    )
    assert whep["status"] == 201, whep
    first = await until(
        lambda: viewer.evaluate("inboundVideo()"), lambda v: v["framesDecoded"] > 0, 15, "first decoded frame"
    )
    assert first["codec"].lower() == sent["codec"].lower(), (first, sent)
    later = await until(
        lambda: viewer.evaluate("inboundVideo()"),
        lambda v: v["framesDecoded"] >= first["framesDecoded"] + 30,
        10,
        "decoded frames growing",
    )
    assert later["framesDecoded"] > first["framesDecoded"]
    assert api.get(f"/api/v1/channels/{name}/viewers").json()["viewers"] == 1

    assert api.delete(whep["location"]).status_code == 200
    assert api.delete(whip["location"]).status_code == 200
    await until(lambda: _live(api, name), lambda live: not live, 10, "channel offline")


async def _live(api: httpx.Client, name: str) -> bool:
    live: bool = api.get(f"/api/v1/channels/{name}").json()["live"]
    return live
