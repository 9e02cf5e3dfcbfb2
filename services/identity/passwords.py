"""argon2id password hashing on worker threads (never on the event loop), and the common-password list."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from services.identity.domain import parse_common_passwords

__all__ = ["Passwords", "load_common_passwords"]


def load_common_passwords() -> frozenset[str]:
    """The common passwords shipped with this package (`common_passwords.txt`), lower-cased."""
    text = resources.files("services.identity").joinpath("common_passwords.txt").read_text("utf-8")
    return parse_common_passwords(text)


class Passwords:
    """Hashes and verifies with argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane) on threads."""

    def __init__(self, *, workers: int = 4) -> None:
        # Each hash holds 19 MiB while it runs, so `workers` also bounds the memory spent on hashing.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
        self._dummy_hash = ""

    async def start(self) -> None:
        """Prepare the hash that unknown usernames are checked against."""
        self._dummy_hash = await self.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        """The PHC-format argon2id hash of `password`, with a fresh salt."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` matches; with no hash (unknown user) a dummy is checked, so timing is alike."""
        loop = asyncio.get_running_loop()
        target = stored_hash or self._dummy_hash
        matched = await loop.run_in_executor(self._executor, self._verify, target, password)
        return matched and stored_hash is not None

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether `stored_hash` was made with other parameters than today's."""
        return self._hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        """Stop the worker threads, dropping queued work."""
        self._executor.shutdown(wait=True, cancel_futures=True)
