"""Glass-to-glass latency at the player's picture: Shaka Player (the web app's npm copy) plays a live DASH
manifest in headless Chromium, and a page script reads the capture time a marked source drew into each
picture (`libs.media.testpattern.draw_marks`) from every frame it presents (requestVideoFrameCallback,
canvas), giving now - capture time per frame. For benches and end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "SHAKA", "PlayerProbe", "open_probe", "open_shaka_page"]

CHROMIUM = Path("/usr/bin/chromium")
SHAKA = (
    Path(__file__).resolve().parents[2] / "web/node_modules/shaka-player/dist/shaka-player.compiled-es2021.js"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

PAGE = """<!doctype html><html><body><video id="v" muted playsinline></video>
<canvas id="c" hidden></canvas>
<script src="/__probe__/shaka.js"></script>
<script>
const BITS = 32, FULL = 4294967295;
window.samples = [];
window.errors = [];
function row(img, w, block, r) {
  let v = 0;
  for (let b = 0; b < BITS; b++) {
    const i = ((r * block + (block >> 1)) * w + b * block + (block >> 1)) * 4;
    v = v * 2 + (0.299 * img[i] + 0.587 * img[i + 1] + 0.114 * img[i + 2] > 128 ? 1 : 0);
  }
  return v;
}
function readMarks(video, ctx) {
  const w = video.videoWidth, h = video.videoHeight, block = Math.floor(w / BITS);
  if (!block) return null;
  if (ctx.canvas.width !== w) { ctx.canvas.width = w; ctx.canvas.height = h; }
  ctx.drawImage(video, 0, 0, w, h);
  const img = ctx.getImageData(0, 0, w, block * 4).data;
  const counter = row(img, w, block, 0);
  if (counter + row(img, w, block, 3) !== FULL) return null;  // the check row is the inverted counter
  return [counter, row(img, w, block, 1) * 4294967296 + row(img, w, block, 2)];
}
window.play = async (url, config) => {
  shaka.polyfill.installAll();
  const video = document.getElementById('v');
  const ctx = document.getElementById('c').getContext('2d', {willReadFrequently: true});
  const player = new shaka.Player();
  await player.attach(video);
  player.configure(config);
  player.addEventListener('error', (e) => {  // the code, and for HTTP errors (1001) the status and URI
    const d = e.detail || {};
    window.errors.push([d.code, ...(d.code === 1001 ? [d.data[1], d.data[0]] : [])].join(' '));
  });
  await player.load(url);
  window.player = player;
  const onFrame = () => {
    const marks = readMarks(video, ctx);
    if (marks) window.samples.push([Date.now() - marks[1], marks[0]]);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  await video.play();
  return player.isLive();
};
window.stats = () => {
  if (!window.player) return {stalls: null, buffering: null, latency: null, lowLatency: false};
  const s = window.player.getStats();
  const v = document.getElementById('v');
  return {stalls: s.stallsDetected, buffering: s.bufferingTime, latency: s.liveLatency,
          behindSeekEnd: window.player.seekRange().end - v.currentTime, rate: v.playbackRate,
          lowLatency: window.player.getConfiguration().streaming.lowLatencyMode &&
                      window.player.getManifest().isLowLatency};
};
</script></body></html>"""


class PlayerProbe:
    """One page playing one manifest; `latencies()` are the frames' glass-to-glass seconds since `mark()`."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.start = 0

    async def play(self, url: str, *, low_latency: bool) -> bool:
        """Load `url` into Shaka with `streaming.lowLatencyMode` (as the web app does for live) and play;
        True when Shaka sees a live stream."""
        config = {"streaming": {"lowLatencyMode": low_latency}}
        live: bool = await self.page.evaluate("([u, c]) => window.play(u, c)", [url, config])
        return live

    async def mark(self) -> None:
        """Forget the frames so far (the warm-up)."""
        self.start = await self.page.evaluate("window.samples.length")

    async def latencies(self) -> list[float]:
        """Seconds from capture to presentation of each frame shown since `mark()`."""
        samples: list[list[float]] = await self.page.evaluate(f"window.samples.slice({self.start})")
        return [s[0] / 1000 for s in samples]

    async def counters(self) -> list[int]:
        """The frame counters read from the pictures shown since `mark()`."""
        samples: list[list[float]] = await self.page.evaluate(f"window.samples.slice({self.start})")
        return [int(s[1]) for s in samples]

    async def stats(self) -> dict[str, Any]:
        """Shaka's stalls, buffering time and live latency, and whether low-latency mode is on."""
        stats: dict[str, Any] = await self.page.evaluate("window.stats()")
        stats["errors"] = await self.page.evaluate("window.errors")
        return stats


async def open_shaka_page(browser: Any, base: str, html: str, folder: str = "__probe__") -> Any:
    """A page with `html` and the web app's Shaka build at `base`/`folder`/, served at the gateway's own
    origin (as the web app is) by intercepting the requests; the page is loaded and returned."""
    page = await browser.new_page()

    async def serve(route: Any) -> None:
        if route.request.url.endswith("/shaka.js"):
            await route.fulfill(body=SHAKA.read_bytes(), content_type="text/javascript")
        else:
            await route.fulfill(body=html, content_type="text/html")

    await page.route(f"{base}/{folder}/**", serve)
    await page.goto(f"{base}/{folder}/player.html")
    return page


async def open_probe(browser: Any, base: str) -> PlayerProbe:
    """A page with Shaka and the mark reader loaded."""
    return PlayerProbe(await open_shaka_page(browser, base, PAGE))
