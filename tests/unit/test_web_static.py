"""The web app's path rules: nothing outside the root, fingerprinted assets immutable, the rest revalidated;
the file cache picks up a rebuilt file."""

from __future__ import annotations

import os
from pathlib import Path

from services.gateway.routes.web import FileCache, resolve


def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    assert resolve(root, "../secret.txt") == (None, "")
    assert resolve(root, "assets/../../secret.txt") == (None, "")
    assert resolve(root, "/etc/passwd")[0] is None


def test_assets_are_immutable_and_other_files_revalidate(tmp_path: Path) -> None:
    root = tmp_path / "dist"
    assert resolve(root, "assets/index-abc.js") == (
        root / "assets" / "index-abc.js",
        "public, max-age=31536000, immutable",
    )
    assert resolve(root, "sw.js") == (root / "sw.js", "no-cache")


async def test_cache_serves_a_rebuilt_file_and_forgets_a_removed_one(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("one")
    cache = FileCache(recheck_seconds=0)
    first = await cache.get(page)
    assert first is not None
    assert first[0] == b"one"
    page.write_text("two!")
    os.utime(page, ns=(1, 1))
    second = await cache.get(page)
    assert second is not None
    assert second[0] == b"two!"
    assert second[1] != first[1]
    page.unlink()
    assert await cache.get(page) is None
    assert await cache.get(tmp_path) is None
