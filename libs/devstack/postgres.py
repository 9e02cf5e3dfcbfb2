"""PostgreSQL for development and tests: the one CPC_DATABASE_URL names, or an embedded pgserver."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["EmbeddedPostgres", "create_database"]


class EmbeddedPostgres:
    """A PostgreSQL 16 server in `data_dir` (the pgserver wheel), reached over its Unix socket."""

    def __init__(self, data_dir: Path, *, keep: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.keep = keep
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        """Start (or attach to) the server in `data_dir`."""
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver import get_server  # type: ignore[attr-defined]

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop" if self.keep else "delete")
        return self

    def halt(self) -> None:
        """Stop the server as an outage would (`pg_ctl stop -m fast`: sessions are cut off), keeping
        its folder so that `resume()` starts it again."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        assert self._server is not None, "the server was not started"
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user)

    def resume(self) -> None:
        """Start the server again after `halt()` (same folder and socket); returns once it accepts."""
        assert self._server is not None, "the server was not started"
        self._server.ensure_postgres_running()

    def postmaster_pid(self) -> int | None:
        """The pid postmaster.pid names, or None when the folder has no such file."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first) if first.strip().isdigit() else None

    def running(self) -> bool:
        """True while the postmaster of `data_dir` lives (a killed one left as a zombie does not)."""
        import psutil

        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    def recover(self, patience: float = 10.0) -> None:
        """Start the server again after its postmaster died (kill -9): `pg_ctl start` on the same folder,
        which takes the postmaster.pid of a dead pid as stale. pgserver would take a killed postmaster not
        yet reaped (a zombie) for a running one and start nothing, so first wait up to `patience` seconds
        for it to be gone. While backends of the dead postmaster still hold its shared memory the start
        fails, and the caller tries again later."""
        import psutil

        assert self._server is not None, "the server was not started"
        old = self.postmaster_pid()
        deadline = time.monotonic() + patience
        while old is not None and psutil.pid_exists(old) and not self.running():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dead postmaster (pid {old}) is not reaped after {patience:g} s")
            time.sleep(0.02)
        self._server.ensure_postgres_running()
        if not self.running():
            raise RuntimeError(f"PostgreSQL did not start in {self.data_dir}")

    def url(self, database: str = "postgres") -> str:
        """asyncpg DSN for `database` over the server's socket."""
        return f"postgresql://postgres@/{database}?host={quote(str(self.data_dir))}"

    def stop(self) -> None:
        """Stop the server (and delete its folder when it is not kept), also when it was started again
        by hand (`pg_ctl start`, as in an outage drill under `make run`)."""
        if self._server is not None:
            self._adopt_running()
            self._server.cleanup()
            self._server = None

    def _adopt_running(self) -> None:
        """pgserver stops only the postmaster it knows; one started since by hand would outlive us."""
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is not None and info.is_running():
            self._server._postmaster_info = info


async def create_database(admin_url: str, name: str, *, drop_first: bool = False) -> None:
    """Create database `name` unless it exists (or recreate it)."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        if drop_first:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
