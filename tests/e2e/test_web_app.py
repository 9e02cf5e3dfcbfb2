"""The web app in Debian's headless Chromium against real services: sign up, create a channel, go live
from the fake camera, a second person watches (decoded frames grow), follows and is told in the bell when
the channel goes live again; keyboard use, the 360 px layout, installability; screenshots of the
directory, channel page and dashboard at desktop and phone widths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.e2e.web_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    Platform,
    create_channel,
    frames_decoded,
    needs_browser,
    new_page,
    no_sideways_scroll,
    register,
    require_built_app,
    screenshot,
    sign_in,
    sign_up,
    until,
)

pytestmark = needs_browser


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Headless Debian Chromium with a fake camera and microphone."""
    from playwright.async_api import async_playwright

    require_built_app()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def test_gateway_serves_the_app_and_keeps_api_paths(api: httpx.Client) -> None:
    """/ and app routes get index.html with a strict CSP; assets are immutable; API paths never fall back."""
    require_built_app()
    home = api.get("/")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["cache-control"] == "no-cache"
    deep = api.get("/some_channel")
    assert deep.status_code == 200
    assert deep.text == home.text
    asset = home.text.split('src="', 1)[1].split('"', 1)[0]
    script = api.get(asset)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    manifest = api.get("/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert {i["sizes"] for i in manifest.json()["icons"]} >= {"192x192", "512x512"}
    assert api.get("/sw.js").status_code == 200
    for path in (
        "/api/v1/nothing-here",
        "/live/x/manifest.mpd",
        "/assets/gone.js",
        "/..%2f..%2fpyproject.toml",
    ):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json", path
    unknown = api.post("/api/v1/nothing-here", json={})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    page_post = api.delete("/dashboard")
    assert page_post.status_code == 405
    assert page_post.headers["allow"] == "GET"
    # A real API route with a bad body still answers for itself: the catch-all never shadows it.
    whep = api.post("/api/v1/channels/x/whep", content=b"v=0", headers={"content-type": "text/plain"})
    assert whep.status_code in (400, 415), whep.text
    assert "Content-Type" in whep.json()["detail"]
    assert api.get("/readyz").json()["status"] == "ready"


async def test_sign_up_go_live_watch_follow_and_get_notified_when_live_again(
    isolated: Any, chromium: Any
) -> None:
    """The whole creator/viewer loop through the UI only, on a private platform whose go-live grace is 1 s
    (the default 600 s would make 'live again' a reconnect that notifies nobody)."""
    platform = await Platform(isolated, {"CPC_GRACE_SECONDS": "1"}).start()
    try:
        await _creator_and_viewer(chromium, platform)
    finally:
        await platform.stop()


async def _creator_and_viewer(chromium: Any, platform: Platform) -> None:
    creator = await new_page(chromium, platform.url)
    name = unique_name("c")
    await sign_up(creator, unique_name("cr"))
    await create_channel(creator, name, "Painting birds, live")
    await creator.get_by_role("button", name="Go live with camera").click()
    status = creator.get_by_test_id("broadcast-status")
    await until(status.text_content, lambda t: t == "You are live.", 20, "creator connected")

    viewer = await _watch(chromium, platform, name)
    await _follow_then_live_again(creator, viewer, name)


async def _watch(chromium: Any, platform: Platform, name: str) -> Any:
    """A second person signs in, opens the live channel and sees decoded frames grow."""
    viewer_name = unique_name("v")
    with httpx.Client(base_url=platform.url) as api:
        register(api, viewer_name)
    async with httpx.AsyncClient(base_url=platform.url) as client:

        async def live() -> bool:
            return bool((await client.get(f"/api/v1/channels/{name}")).json()["live"])

        await until(live, bool, 15, "channel live")
    viewer = await new_page(chromium, platform.url)
    await sign_in(viewer, viewer_name)
    await viewer.goto(f"/{name}")
    await viewer.get_by_role("heading", name="Painting birds, live").wait_for()
    first = await until(lambda: frames_decoded(viewer), lambda n: n > 0, 20, "first decoded frame")
    await until(lambda: frames_decoded(viewer), lambda n: n >= first + 30, 15, "decoded frames growing")
    await until(
        viewer.get_by_test_id("viewers").text_content, lambda t: t == "1 watching", 10, "viewer count"
    )
    await screenshot(viewer, "channel-live")
    return viewer


async def _follow_then_live_again(creator: Any, viewer: Any, name: str) -> None:
    """The viewer follows; the owner's bell hears of it; ending and going live again rings the viewer's."""
    status = creator.get_by_test_id("broadcast-status")
    await viewer.get_by_role("button", name="Follow", exact=True).click()
    await viewer.get_by_role("button", name="Unfollow").wait_for()
    # The owner's bell hears of the follow once the notification service has it in its projection.
    await creator.get_by_role("button", name="Notifications, 1 unread").wait_for(timeout=15_000)

    await creator.get_by_role("button", name="End stream").click()
    await until(status.text_content, lambda t: t == "Stream ended.", 10, "stream ended")
    await viewer.get_by_test_id("live-state").filter(has_text="Offline").wait_for(timeout=15_000)
    await viewer.wait_for_timeout(1500)  # past the 1 s grace: the next start is a new session
    await creator.get_by_role("button", name="Go live with camera").click()
    await until(status.text_content, lambda t: t == "You are live.", 20, "creator live again")

    bell = viewer.get_by_role("button", name="Notifications, 1 unread")
    await bell.wait_for(timeout=20_000)
    await bell.click()
    await viewer.get_by_role("link", name=f"{name} is live").wait_for()
    await viewer.get_by_test_id("live-state").filter(has_text="LIVE").wait_for(timeout=15_000)
    await until(lambda: frames_decoded(viewer), lambda n: n > 0, 20, "playing again")
    assert creator.errors == []  # type: ignore[attr-defined]
    assert viewer.errors == []  # type: ignore[attr-defined]
    await creator.get_by_role("button", name="End stream").click()
    await until(status.text_content, lambda t: t == "Stream ended.", 10, "stream ended at last")
    await viewer.context.close()
    await creator.context.close()


async def test_screens_keyboard_and_phone_layout(
    api: httpx.Client, make_member: Any, chromium: Any, stack: Any
) -> None:
    """Directory, channel page and dashboard at 1280 and 360 px: no sideways scrolling, screenshots saved;
    the skip link and main navigation are reachable with Tab; signing out signs out."""
    owner = make_member()
    name = owner.username
    r = api.post(
        "/api/v1/channels",
        json={"name": name, "title": "Watercolour skies", "category": "Art", "tags": ["painting"]},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await new_page(chromium, stack.url, viewport)
        await page.goto("/signin")
        await page.get_by_label("Username").fill(owner.username)
        await page.get_by_label("Password").fill(owner.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Sign out").wait_for()
        await page.goto(f"/?q={name}")
        await page.get_by_role("link", name=f"Watercolour skies {name}").wait_for()
        await no_sideways_scroll(page)
        await screenshot(page, "directory")
        await page.goto(f"/{name}")
        await page.get_by_role("heading", name="Watercolour skies").wait_for()
        await page.get_by_test_id("live-state").filter(has_text="Offline").wait_for()
        await no_sideways_scroll(page)
        await screenshot(page, "channel")
        await page.goto("/dashboard")
        await page.get_by_role("heading", name="Creator dashboard").wait_for()
        # Analytics from the services: never live, so no viewer curve; the audience chart has its 30 days.
        await page.get_by_test_id("viewer-chart").get_by_text("No data yet.").wait_for()
        await page.get_by_test_id("audience-chart").locator("svg").wait_for()
        await no_sideways_scroll(page)
        await screenshot(page, "dashboard")
        if size == "desktop":
            await page.goto("/")
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "CPC Live"
            await page.get_by_role("button", name="Sign out").click()
            await page.get_by_role("link", name="Sign in").wait_for()
        assert page.errors == [], page.errors  # type: ignore[attr-defined]
        await page.context.close()
