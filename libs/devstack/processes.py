"""Service processes started as `python -m services.<name>`, their output prefixed with their name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

__all__ = ["STDOUT_LOCK", "ServiceProcess", "discover_services", "stop_all"]

ROOT = Path(__file__).resolve().parents[2]
# How long stopping waits for a process's last output lines to be copied after it exited.
PUMP_DRAIN_SECONDS = 10.0
# Every pump thread (and devstack's own lines) write to one stdout under this lock.
STDOUT_LOCK = threading.Lock()


def discover_services(root: Path = ROOT) -> list[str]:
    """Every service package with a `__main__.py`; the gateway last, so it finds the others answering."""
    names = sorted(p.parent.name for p in (root / "services").glob("*/__main__.py"))
    return sorted(names, key=lambda n: n == "gateway")


class ServiceProcess:
    """One service process; its lines go to `sink` (a file, or stdout with a `name | ` prefix)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        log_path: Path | None = None,
        prefix_width: int = 12,
    ) -> None:
        self.name = name
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.prefix = f"{name:<{prefix_width}}| "
        self.process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._terminated = False

    def start(self) -> ServiceProcess:
        """Start the process."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
        )
        self._pump = threading.Thread(target=self._copy_output, daemon=True)
        self._pump.start()
        return self

    def _copy_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        sink: IO[str]
        if self.log_path is not None:
            sink = open(self.log_path, "a", buffering=1)  # noqa: SIM115
            for raw in self.process.stdout:
                sink.write(raw.decode(errors="replace"))
            sink.close()
        else:
            for raw in self.process.stdout:
                with STDOUT_LOCK:  # a TextIOWrapper written from several threads at once drops text
                    sys.stdout.write(self.prefix + raw.decode(errors="replace"))
                    sys.stdout.flush()

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM, without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            # Once only: uvicorn takes a second SIGTERM as "exit now" and cuts its lifespan shutdown short.
            if not self._terminated:
                self.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._pump is not None:
            # The pipe closes at exit, so this returns at once once the last lines are copied; on a loaded
            # machine copying them may lag behind the exit (a 2 s bound lost a shutdown line under load).
            self._pump.join(timeout=PUMP_DRAIN_SECONDS)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit on its own."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)


def stop_all(procs: Iterable[ServiceProcess], timeout: float = 10.0) -> None:
    """Stop processes together, as a supervisor stops a group: SIGTERM to all at once, one shared
    deadline, then SIGKILL for whatever still runs. Stopping one after another would add their waits up."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.stop(timeout=max(deadline - time.monotonic(), 0.0))
