"""Shared pieces of the web app's browser tests: Debian's Chromium with a fake camera, a private platform
for flows that need non-default settings, sign-up through the UI, polling and screenshots."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.devstack.ports import free_port
from libs.devstack.processes import discover_services

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
WEB_DIST = ROOT / "web" / "dist"
ARTIFACTS = ROOT / "test-artifacts" / "web"
PASSWORD = "correct horse battery staple"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Real host addresses instead of mDNS names, so ingest and edge can pair candidates on this host.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}

needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed at /usr/bin/chromium (CI installs it and runs these tests)",
)


def require_built_app() -> None:
    """Fail (not skip) when the app is missing: `make test` builds it before pytest runs."""
    assert (WEB_DIST / "index.html").is_file(), "web/dist is not built: run `make web` (make test does)"


async def until(
    probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    """Poll `probe()` until `done(value)`; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: last {value!r}")


async def new_page(browser: Any, base_url: str, viewport: dict[str, int] | None = None) -> Any:
    """A page in a browser context of its own (its own storage: a separate person)."""
    context = await browser.new_context(base_url=base_url, viewport=viewport or DESKTOP)
    await context.grant_permissions(["camera", "microphone"], origin=base_url)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def sign_up(page: Any, username: str) -> None:
    """Create an account through the sign-up form; the app lands on the dashboard."""
    await page.goto("/signup")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Email").fill(f"{username}@example.test")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/dashboard")


async def sign_in(page: Any, username: str) -> None:
    """Sign in through the form."""
    await page.goto("/signin")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()


async def create_channel(page: Any, name: str, title: str, category: str = "Art") -> None:
    """Fill the dashboard's create-channel form."""
    await page.get_by_label("Channel name").fill(name)
    await page.get_by_label("Title").fill(title)
    await page.get_by_label("Category").fill(category)
    await page.get_by_label("Tags").fill("painting, chill")
    await page.get_by_role("button", name="Create channel").click()
    await page.get_by_role("heading", name="Creator dashboard").wait_for()


def register(api: httpx.Client, username: str) -> dict[str, str]:
    """A user made over the API (for people whose sign-up is not what a test is about)."""
    r = api.post(
        "/api/v1/auth/register",
        json={"username": username, "password": PASSWORD, "email": f"{username}@example.test"},
    )
    assert r.status_code == 201, r.text
    r = api.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def frames_decoded(page: Any) -> int:
    """Frames the channel page's player has decoded (its stats line reads getStats())."""
    value = await page.get_by_test_id("player-stats").get_attribute("data-frames-decoded")
    return int(value or 0)


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/web/ at the page's current size."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    path = ARTIFACTS / f"{name}-{width}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


async def no_sideways_scroll(page: Any) -> None:
    """Nothing overflows the viewport's width (the layout works down to 360 px)."""
    wide = await page.evaluate("document.documentElement.scrollWidth")
    assert wide <= page.viewport_size["width"], (
        f"{page.url} is {wide} px wide at {page.viewport_size['width']}"
    )


class Platform:
    """Every service and a gateway on the `isolated` NATS and database, with settings of the test's own."""

    def __init__(self, isolated: Any, env: dict[str, str]) -> None:
        self.isolated = isolated
        self.env = {"CPC_ICE_HOSTS": "127.0.0.1", "CPC_ALLOW_PRIVATE_CALLBACKS": "true", **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> Platform:
        """Start the services, then the gateway, and wait for /readyz."""
        for name in discover_services():
            if name != "gateway":
                self.isolated.start(name, self.env)
        self.isolated.start(
            "gateway", {**self.env, "CPC_HTTP_HOST": "127.0.0.1", "CPC_HTTP_PORT": str(self.port)}
        )
        async with httpx.AsyncClient(base_url=self.url) as client:

            async def ready() -> int:
                try:
                    return (await client.get("/readyz", timeout=2)).status_code
                except httpx.HTTPError:
                    return 0

            await until(ready, lambda s: s == 200, 60, "private platform ready")
        return self

    async def stop(self) -> None:
        """Stop the gateway, then every service at once (each waits for its own graceful shutdown)."""
        procs = list(reversed(self.isolated.procs))
        await asyncio.gather(*(asyncio.to_thread(p.stop, 5.0) for p in procs))
