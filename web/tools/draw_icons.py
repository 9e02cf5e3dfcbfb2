"""Draws the app icons (PNG) to match public/icons/icon.svg: python web/tools/draw_icons.py."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "public" / "icons"


def draw(size: int, *, maskable: bool = False) -> Image.Image:
    """The icon at `size` px; maskable keeps the mark inside the 80% safe zone on a full background."""
    scale = 4  # draw large, then downsample for smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    if maskable:
        d.rectangle((0, 0, s, s), fill="#18122b")
    else:
        d.rounded_rectangle((0, 0, s - 1, s - 1), radius=int(s * 0.22), fill="#18122b")
    k = 0.8 if maskable else 1.0
    c = s / 2

    def p(v: float) -> float:
        return c + (v * s / 512 - c) * k

    r = 168 * s / 512 * k
    d.ellipse((c - r, c - r, c + r, c + r), fill="#7c4dff")
    d.polygon([(p(214), p(176)), (p(350), p(256)), (p(214), p(336))], fill="#ffffff")
    dot = 44 * s / 512 * k
    d.ellipse((p(392) - dot, p(120) - dot, p(392) + dot, p(120) + dot), fill="#ff4d6d")
    return img.resize((size, size), Image.Resampling.LANCZOS)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    draw(192).save(OUT / "icon-192.png", optimize=True)
    draw(512).save(OUT / "icon-512.png", optimize=True)
    draw(512, maskable=True).save(OUT / "icon-maskable-512.png", optimize=True)
