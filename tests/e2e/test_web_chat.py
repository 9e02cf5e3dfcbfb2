"""The chat panel in Chromium against the real chat service: emotes render as images, markup typed into
chat or used as an emote name stays text and runs nothing, mentions are highlighted, room modes show, and
a moderator's timeout from the message menu disables the target's input with the reason."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import unique_name
from tests.e2e.web_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    needs_browser,
    new_page,
    register,
    require_built_app,
    sign_in,
    until,
)

pytestmark = [
    needs_browser,
    pytest.mark.skipif(not (ROOT / "services" / "chat").is_dir(), reason="chat service not merged yet"),
]

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Headless Debian Chromium."""
    from playwright.async_api import async_playwright

    require_built_app()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def _png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), color).save(out, "PNG")
    return out.getvalue()


async def _chat_page(chromium: Any, url: str, username: str, channel: str) -> Any:
    page = await new_page(chromium, url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    await sign_in(page, username)
    await page.goto(f"/{channel}")
    await page.locator("section.chat[data-connected]").wait_for()
    return page


async def _say(page: Any, text: str) -> None:
    await page.get_by_role("textbox", name="Chat message").fill(text)
    await page.get_by_role("button", name="Chat", exact=True).click()


async def test_chat_emotes_markup_mentions_modes_and_timeout(
    api: httpx.Client, stack: Any, chromium: Any, tmp_path: Path
) -> None:
    """Two people and a moderator chat in three browser contexts on one channel."""
    owner, mod, viewer = unique_name("o"), unique_name("m"), unique_name("v")
    owner_h = register(api, owner)
    register(api, mod)
    register(api, viewer)
    r = api.post(
        "/api/v1/channels", json={"name": owner, "title": "Chat test", "category": "Art"}, headers=owner_h
    )
    assert r.status_code == 201, r.text
    assert api.put(f"/api/v1/channels/{owner}/moderators/{mod}", headers=owner_h).status_code == 200
    # An emote code that is markup is refused by name, and nothing is stored.
    bad = api.post(
        f"/api/v1/channels/{owner}/emotes",
        params={"code": XSS},
        content=_png("red"),
        headers={**owner_h, "Content-Type": "image/png"},
    )
    assert 400 <= bad.status_code < 500, bad.text
    assert bad.headers["content-type"] == "application/problem+json", bad.text

    # The owner adds an emote from the dashboard's form.
    emote_file = tmp_path / "wave.png"
    emote_file.write_bytes(_png("orange"))
    owner_page = await new_page(chromium, stack.url)
    await sign_in(owner_page, owner)
    await owner_page.goto("/dashboard")
    await owner_page.get_by_label("Code").fill("cpcwave")
    await owner_page.get_by_label("Image (PNG, GIF or WebP)").set_input_files(str(emote_file))
    await owner_page.get_by_role("button", name="Add emote").click()
    await owner_page.locator(".emote-list li", has_text="cpcwave").wait_for()

    mod_page = await _chat_page(chromium, stack.url, mod, owner)
    viewer_page = await _chat_page(chromium, stack.url, viewer, owner)
    await viewer_page.get_by_role("button", name="Emotes").click()
    await viewer_page.get_by_role("button", name="cpcwave").locator("img").wait_for()

    await _say(viewer_page, f"hello cpcSmile {XSS}")
    line = mod_page.locator(".chat-line", has_text="hello")
    await line.wait_for()
    await line.locator("img.emote[alt='cpcSmile']").wait_for()
    text = await line.locator(".chat-text").text_content()
    assert XSS in text, text
    assert await mod_page.locator(".chat-log img[src='x']").count() == 0
    assert await viewer_page.locator(".chat-log img[src='x']").count() == 0

    await _say(mod_page, f"@{viewer} welcome")
    await viewer_page.locator(".chat-line.mentioned", has_text="welcome").wait_for()

    r = api.post(
        f"/api/v1/channels/{owner}/chat/moderation", json={"action": "slow", "seconds": 30}, headers=owner_h
    )
    assert r.status_code == 200, r.text
    await viewer_page.get_by_test_id("chat-modes").filter(has_text="Slow mode (30 s)").wait_for()

    await line.get_by_role("button", name=f"Moderate {viewer}").click()
    await mod_page.get_by_role("menuitem", name="Timeout 10 minutes").click()
    await viewer_page.locator("section.chat[data-blocked]").wait_for()
    assert await viewer_page.get_by_role("textbox", name="Chat message").is_disabled()
    notice = await viewer_page.get_by_test_id("chat-notice").text_content()
    assert "timed out" in notice.lower(), notice
    await until(lambda: line.count(), lambda n: n == 0, 10, "the timed-out user's lines are removed")

    for page in (owner_page, mod_page, viewer_page):
        assert page.errors == [], page.errors
        assert getattr(page, "dialogs", []) == []
        await page.context.close()


async def test_a_line_refused_while_chat_restarts_is_sent_again_and_lands_once(
    api: httpx.Client, stack: Any, chromium: Any
) -> None:
    """The chat service stops: a line typed meanwhile is answered 503 and the page sends it again under
    the same nonce until the service is back; a second reader sees it exactly once, and no error shows."""
    owner, reader = unique_name("o"), unique_name("r")
    owner_h = register(api, owner)
    register(api, reader)
    r = api.post(
        "/api/v1/channels", json={"name": owner, "title": "Restart test", "category": "Art"}, headers=owner_h
    )
    assert r.status_code == 201, r.text
    writer_page = await _chat_page(chromium, stack.url, owner, owner)
    reader_page = await _chat_page(chromium, stack.url, reader, owner)
    text = f"said while chat was away {unique_name('t')}"
    chat = stack.procs["chat"]
    try:
        chat.stop()
        await _say(writer_page, text)
        # Refused (no chat service answers): kept by the page, not shown as an error, not delivered.
        await writer_page.wait_for_timeout(1500)
        assert await reader_page.locator(".chat-line", has_text=text).count() == 0
        assert await writer_page.locator(".chat-notice.error:visible").count() == 0
    finally:
        stack.start_service("chat")
    line = reader_page.locator(".chat-line", has_text=text)
    await line.wait_for(timeout=30_000)
    await reader_page.wait_for_timeout(2000)  # a second copy would have arrived by now
    assert await line.count() == 1
    assert await writer_page.locator(".chat-line", has_text=text).count() == 1
