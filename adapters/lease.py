"""Leases for the roles that must run once: a lock the operating system or the database
frees when its holder dies, so a standby takes over within seconds of a ``kill -9``.

* :class:`FileLease`: ``flock`` on a file in the data folder (the embedded mode: every
  process of an installation shares that folder). The kernel drops the lock with the
  last descriptor of the dead process; a live holder cannot lose it.
* :class:`PostgresLease`: a session advisory lock on a connection of its own (the
  at-scale mode). PostgreSQL drops it when the session ends: the holder died, or its
  connection broke (TCP keepalives notice a vanished machine). A holder that finds its
  session gone has lost the lease and must stop.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["FileLease", "PostgresLease"]


class FileLease:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # Who holds it, for an operator reading the file.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def holder(self) -> str | None:
        if self._fd is not None:
            return f"process {os.getpid()} (this one)"
        if not self._path.exists():
            return None
        fd = os.open(self._path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = self._path.read_text().strip()
            return f"process {pid}" if pid else "a process"
        finally:
            os.close(fd)  # a shared lock taken to look is dropped with the descriptor
        return None


class PostgresLease:
    """``name`` is the role; ``schema`` keeps installations sharing a database apart."""

    def __init__(self, conninfo: str, name: str, schema: str = "public") -> None:
        self._conninfo = conninfo
        self._key = (schema, name)
        self._db: Any = None

    def _connect(self) -> Any:
        import psycopg

        # Keepalives: a holder whose machine vanished loses its session (and the lease)
        # within about 15 s instead of the kernel's two hours.
        return psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=5, keepalives=1,
            keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            application_name=f"sendstream {self._key[1]} lease",
        )  # fmt: skip

    def try_acquire(self) -> bool:
        import psycopg

        if self._db is not None and self.still_held():
            return True
        try:
            if self._db is None:
                self._db = self._connect()
            row = self._db.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", self._key
            ).fetchone()
        except psycopg.Error as error:
            log.warning("lease %s: cannot ask the database: %s", self._key[1], error)
            self._drop()
            return False
        return bool(row and row[0])

    def still_held(self) -> bool:
        import psycopg

        if self._db is None:
            return False
        try:
            row = self._db.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid::int = hashtext(%s) "
                "AND objid::int = hashtext(%s)",
                self._key,
            ).fetchone()
        except psycopg.Error:
            self._drop()
            return False
        return bool(row and row[0])

    def release(self) -> None:
        self._drop()  # ending the session frees the lock

    def holder(self) -> str | None:
        import psycopg

        try:
            with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as db:
                row = db.execute(
                    "SELECT a.pid, host(a.client_addr), a.backend_start FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid::int = hashtext(%s) AND l.objid::int = hashtext(%s)",
                    self._key,
                ).fetchone()
        except psycopg.Error as error:
            return f"unknown ({error})"
        if row is None:
            return None
        pid, address, since = row
        return f"session {pid} from {address or 'a local socket'} since {since:%Y-%m-%d %H:%M:%S}"

    def _drop(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except Exception:  # a broken connection may fail to close
                log.debug("lease %s: closing a broken connection failed", self._key[1])
            self._db = None
