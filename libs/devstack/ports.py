"""Free local ports."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

__all__ = ["free_port", "free_port_block", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive TCP ports that are all free now. They are taken below the kernel's
    ephemeral range: a block inside it (a `free_port` plus an offset) can meet the local port of some
    outgoing connection, which then keeps a service from binding it."""
    low = _ephemeral_low()
    for _ in range(200):
        start = random.randrange(10_000, max(low - count, 10_001))  # noqa: S311 (a port, not a secret)
        if all(_bindable(host, port) for port in range(start, start + count)):
            return start
    raise OSError(f"no {count} consecutive free ports between 10000 and {low}")


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, *, timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s") from None
            time.sleep(0.05)
