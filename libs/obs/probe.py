"""`python -m libs.obs.probe [healthz|readyz] [PORT]`: exit 0 when this container's process answers its probe
on PORT (default: the metrics port, CPC_METRICS_PORT), 1 otherwise; container health checks run it, as the
image has no curl. The gateway answers both paths on its HTTP port too."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    """Probe `/healthz` (or the path named by the first argument) on 127.0.0.1:PORT."""
    path = argv[0] if argv else "healthz"
    port = argv[1] if len(argv) > 1 else os.environ.get("CPC_METRICS_PORT", "0")
    if path not in ("healthz", "readyz") or not port.isdigit() or port == "0":
        sys.stderr.write(f"probe: needs healthz or readyz and a port, got {path!r}, {port!r}\n")
        return 2
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"probe: {path} failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
