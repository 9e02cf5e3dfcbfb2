"""Where the validation tools of tests/deploy live: wheels in the project's venv, promtool from Debian's
`prometheus` package, checkov in its own venv (.venv-tools, made by `make setup`; its pins clash with ours)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from deploy.catalog import ROOT

__all__ = ["run_tool", "tool"]

_VENV_BIN = Path(sys.executable).parent
_HINTS = {
    "promtool": "apt-get install prometheus (.ci/run does this when CI=true)",
    "checkov": "make setup (installs checkov into .venv-tools)",
}


def tool(name: str) -> str:
    """The path of tool `name`; a missing tool fails the test with how to install it."""
    for candidate in (_VENV_BIN / name, ROOT / ".venv-tools" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name) if name in ("promtool", "checkov") else None
    if found is None:
        raise AssertionError(f"{name} is not installed: {_HINTS.get(name, 'pip install -e .[dev]')}")
    return found


def run_tool(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool offline, capturing its output."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "BC_SKIP_MAPPING": "TRUE", "LANG": "C.UTF-8"}
    return subprocess.run([tool(name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
