"""Shaka Player in headless Chromium (Debian's chromium, Playwright) plays the live DASH manifest and the
recording of a synthetic stream: time advances and the AV1 renditions are listed."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.bus import connect
from libs.devstack.dash_probe import CHROMIUM_ARGS, SHAKA, open_probe, open_shaka_page
from libs.devstack.stack import Stack
from libs.media.synthetic import SyntheticBroadcast
from tests.integration.transcode_helpers import OP, await_for, start_live, wait_for

CHROMIUM = Path("/usr/bin/chromium")
# Shaka Player comes from the web app's npm install (`make test` builds web/ first: npm ci): SHAKA.
ARGS = [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE = """<!doctype html><html><body><video id="v" muted playsinline></video>
<script src="/__test__/shaka.js"></script>
<script>
window.play = async (url) => {
  shaka.polyfill.installAll();
  const video = document.getElementById('v');
  const player = new shaka.Player();
  await player.attach(video);
  window.errors = [];
  player.addEventListener('error', (e) => window.errors.push(String(e.detail && e.detail.code)));
  await player.load(url);
  await video.play();
  window.player = player;
  return player.isLive();
};
window.tracks = () => window.player.getVariantTracks().map(t => [t.videoCodec, t.width, t.height, t.audioCodec]);
</script></body></html>"""

# The sources below run until a test stops them: a source that ran out while a loaded machine was still
# starting the player would end the stream under it (the stack releases an idle session after 8 s).
SOURCE_SECONDS = 180.0

STATE = """(() => { const v = document.getElementById('v'), p = window.player;
  const ranges = (r) => Array.from({length: r.length}, (_, i) => [r.start(i), r.end(i)]);
  return {time: v.currentTime, paused: v.paused, ready: v.readyState, buffered: ranges(v.buffered),
          seek: p && p.seekRange(), tracks: p && p.getBufferedInfo(), stats: p && p.getStats(), errors: window.errors}; })()"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


async def _stop(feeding: asyncio.Task[None]) -> None:
    """Stop a source that should still be running; one that failed raises its error here."""
    if feeding.done():
        feeding.result()
        raise AssertionError("the source stopped before the test was done with it")
    feeding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeding


async def _page(browser: Any, base: str) -> Any:
    return await open_shaka_page(browser, base, PAGE, "__test__")


async def _plays(page: Any, url: str, *, live: bool) -> list[list[Any]]:
    assert await page.evaluate("(u) => window.play(u)", url) is live
    start = await page.evaluate("document.getElementById('v').currentTime")
    try:
        await page.wait_for_function(
            f"document.getElementById('v').currentTime > {start} + 1.0", timeout=20_000, polling=200
        )
    except Exception as exc:  # say where the player stood
        raise AssertionError(f"playback did not advance from {start}: {await page.evaluate(STATE)}") from exc
    assert await page.evaluate("window.errors") == []
    tracks: list[list[Any]] = await page.evaluate("window.tracks()")
    return tracks


async def test_shaka_plays_live_and_recording(stack: Stack, api: httpx.Client, make_member) -> None:  # type: ignore[no-untyped-def]
    """Live: currentTime advances and both AV1 rungs are listed; then the recording plays too."""
    from playwright.async_api import async_playwright

    assert SHAKA.exists(), f"{SHAKA} is missing: `make web` installs the web app's npm packages"
    name, session_id, _owner = start_live(api, make_member)
    nc = await connect(stack.nats_url, name="test-source")
    feeding = asyncio.create_task(
        SyntheticBroadcast(nc, session_id, width=320, height=180).run(SOURCE_SECONDS)
    )
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = await _page(browser, stack.url)
            assert await page.evaluate("MediaSource.isTypeSupported('video/webm; codecs=\"av01.0.08M.08\"')")
            await await_for(lambda: api.get(f"/live/{name}/manifest.mpd").status_code == 200, 20, "manifest")
            await asyncio.sleep(2.5)  # a few segments, so the player's live edge has media behind it
            tracks = await _plays(page, f"{stack.url}/live/{name}/manifest.mpd", live=True)
            assert sorted((t[1], t[2]) for t in tracks) == [(256, 144), (320, 180)], tracks
            assert all(t[0].startswith("av01") and t[3] == "opus" for t in tracks), tracks
            await _stop(feeding)
            assert api.delete(f"/api/v1/operator/channels/{name}/session", headers=OP).status_code == 200
            items = await asyncio.to_thread(
                wait_for,
                lambda: api.get(f"/api/v1/channels/{name}/recordings").json()["items"],
                30,
                "recording",
            )
            page = await _page(browser, stack.url)
            tracks = await _plays(page, f"{stack.url}{items[0]['manifest_url']}", live=False)
            assert all(t[0].startswith("av01") for t in tracks), tracks
            # The web app's offline channel page lists the recording and plays it in its own player.
            app = await browser.new_page()
            await app.goto(f"{stack.url}/{name}")
            await app.get_by_role("button", name="Watch").first.click()
            # Polled from here: the app's CSP forbids the string evaluation wait_for_function uses.
            for _ in range(100):
                if await app.evaluate("document.querySelector('.player video').currentTime") > 1.0:
                    break
                await asyncio.sleep(0.2)
            assert await app.evaluate("document.querySelector('.player video').currentTime") > 1.0
            assert "Recording" in await app.inner_text(".player-status")
            await browser.close()
    finally:
        feeding.cancel()
        await nc.drain()


async def test_shaka_plays_low_latency_live_with_marked_pictures(
    stack: Stack, api: httpx.Client, make_member
) -> None:  # type: ignore[no-untyped-def]
    """The low-latency manifest plays in Shaka's low-latency mode (Shaka takes it as a low-latency
    stream), and the pictures shown are the source's: their drawn frame counters are read back and go
    forward; the plain manifest is not taken as low-latency."""
    from playwright.async_api import async_playwright

    name, session_id, _owner = start_live(api, make_member)
    nc = await connect(stack.nats_url, name="test-source")
    source = SyntheticBroadcast(nc, session_id, width=320, height=180, marks=True)
    feeding = asyncio.create_task(source.run(SOURCE_SECONDS))
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            await await_for(
                lambda: api.get(f"/live/{name}/manifest-ll.mpd").status_code == 200, 20, "manifest"
            )
            await asyncio.sleep(2.0)
            ll, plain = await open_probe(browser, stack.url), await open_probe(browser, stack.url)
            assert await ll.play(f"{stack.url}/live/{name}/manifest-ll.mpd", low_latency=True)
            assert await plain.play(f"{stack.url}/live/{name}/manifest.mpd", low_latency=True)
            counters: list[int] = []
            for _ in range(200):  # until two seconds of the source went by on screen (load can delay it)
                await asyncio.sleep(0.2)
                counters = await ll.counters()
                if len(counters) > 30 and counters[-1] - counters[0] > 60:
                    break
            assert len(counters) > 30, counters
            assert counters[-1] - counters[0] > 60, counters
            assert counters == sorted(counters), counters
            stats = await ll.stats()
            assert stats["lowLatency"] is True, stats
            assert stats["errors"] == [], stats
            assert all(0 < s < 30 for s in await ll.latencies())  # capture times read from the picture
            assert (await plain.stats())["lowLatency"] is False
            await browser.close()
        await _stop(feeding)
    finally:
        feeding.cancel()
        await nc.drain()
