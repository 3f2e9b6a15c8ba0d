"""The embedded event store: eventsourcing's SQLite recorder, with the durability chosen.

SQLite in write-ahead-log mode (eventsourcing turns it on) commits a transaction by
appending it to the log. With ``synchronous=FULL`` (SQLite's default) every commit also
waits for the disk to confirm it (an fsync); with ``NORMAL`` only checkpoints do. Either
way a committed transaction survives the process being killed (``kill -9``): the log is
in the operating system's hands. Only with ``FULL`` does it also survive the machine
losing power; with ``NORMAL`` the last transactions before a power cut can be lost
(the database stays consistent). ``SQLITE_SYNCHRONOUS`` chooses; the README says what
each keeps.
"""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteFactory
from eventsourcing.utils import Environment, EnvType

SYNCHRONOUS = "SQLITE_SYNCHRONOUS"
LEVELS = ("normal", "full")


def synchronous_pragma(level: str) -> str:
    """``PRAGMA synchronous=…`` for ``level`` (normal or full, any case); ValueError else.
    The event store, the timer table and the webhook call store all commit this way."""
    if level.strip().lower() not in LEVELS:
        raise ValueError(f"{SYNCHRONOUS} must be one of {', '.join(LEVELS)}, not {level!r}")
    return f"PRAGMA synchronous={level.strip().upper()}"


class _TunedPool(SQLiteConnectionPool):
    def __init__(self, synchronous: str, **kwargs: object) -> None:
        self._pragma = synchronous_pragma(synchronous)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        if not self.is_sqlite_memory_mode:
            connection.cursor().execute(self._pragma)
        return connection


class TunedSQLiteFactory(SQLiteFactory):
    """``PERSISTENCE_MODULE=adapters.event_store:TunedSQLiteFactory``."""

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        level = self.env.get(SYNCHRONOUS) or "normal"
        untuned = self.datastore.pool
        self.datastore.pool = _TunedPool(
            synchronous=level, db_name=untuned.db_name, lock_timeout=untuned.lock_timeout
        )
        untuned.close()
