"""Fault injectors for the chaos suite: kill -9 one process of a Stack, then bring it back as a supervisor
would (same data folder, same port), and restart any service the fault took down with it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from libs.devstack.stack import Stack

SERVICES = ["identity", "channel", "social", "notification", "chat", "ingest", "edge", "transcode", "gateway"]
# "nats-node" runs on a clustered stack (libs/devstack/nats_cluster.py): the JetStream meta leader is killed
# and kept down for NODE_DOWN_SECONDS (the other two keep quorum), then started again with its data.
FAULTS = [*SERVICES, "nats-server", "postgres", "nats-node"]
NODE_DOWN_SECONDS = 5.0


def chosen(spec: str) -> list[str]:
    """The faults a comma-separated list names, in suite order (every fault when empty)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}: choose from {', '.join(FAULTS)}")
    return [f for f in FAULTS if f in names] if names else list(FAULTS)


@dataclass
class Injected:
    """One kill: when it happened and which other services exited because of it (restarted by `watch`)."""

    fault: str
    killed_at: float
    collateral: list[str] = field(default_factory=list)
    restart: Callable[[], None] | None = None  # due at killed_at + NODE_DOWN_SECONDS

    @property
    def restarted(self) -> bool:
        return self.restart is None


def postmaster_pid(stack: Stack) -> int:
    """The postmaster's pid, from postmaster.pid in the data folder."""
    first = (stack.postgres.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    return int(first)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill(stack: Stack, fault: str) -> Injected:
    """SIGKILL the process named by `fault` and start it again at once."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    if fault == "nats-node":
        cluster = getattr(stack, "cluster", None)
        if cluster is None:
            raise ValueError("the nats-node fault needs a clustered stack (ClusterStack)")
        node = cluster.index_of(cluster.wait_meta_leader(10))
        at = time.monotonic()
        cluster.kill(node)
        return Injected(fault, at, restart=lambda: cluster.restart(node))
    if fault == "nats-server":
        assert stack.nats.process is not None, "nats-server is not running"
        at = time.monotonic()
        stack.nats.kill()
        stack.nats.start(log_file=stack.root / "nats-server.log")
    elif fault == "postgres":
        pid = postmaster_pid(stack)
        at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        # The backends notice their postmaster is gone and exit; a new postmaster refuses to start while
        # they still hold the old shared memory.
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        _start_postgres(stack)
        assert postmaster_pid(stack) != pid, "PostgreSQL still runs the postmaster that was killed"
    else:
        at = time.monotonic()
        stack.procs[fault].kill()
        stack.start_service(fault)
    return Injected(fault, at)


def _start_postgres(stack: Stack) -> None:
    """Start the postmaster again on the same folder (retrying while old backends still linger)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            stack.postgres.resume()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def watch(stack: Stack, injected: Injected) -> None:
    """Restart every service process that exited (a crash the fault caused), noting it as collateral;
    start a killed cluster node again once it has been down NODE_DOWN_SECONDS."""
    if injected.restart is not None and time.monotonic() - injected.killed_at >= NODE_DOWN_SECONDS:
        injected.restart()
        injected.restart = None
    for name, proc in list(stack.procs.items()):
        if not proc.running:
            injected.collateral.append(name)
            stack.start_service(name)
