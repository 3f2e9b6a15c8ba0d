"""Durable timers for messages: SendAt times and retry times.

A small table (message id → due time) plus the scheduler's stream position,
written in one transaction so that a crash neither loses a timer nor applies
an event twice. SQLite (a file beside the event store) or PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from adapters.event_store import synchronous_pragma
from adapters.postgres_schema import ensure_objects


class ScheduleStore(Protocol):
    def apply(
        self,
        set_due: Iterable[tuple[UUID, datetime]],
        clear: Iterable[UUID],
        position: int | None,
    ) -> None:
        """Set and clear timers and record the stream position, atomically."""
        ...

    def position(self) -> int | None: ...

    def due(self, now: datetime, limit: int) -> list[UUID]: ...

    def waiting(self, now: datetime) -> tuple[int, int]:
        """Messages with a timer (scheduled for later, or deferred until their next try),
        and of those how many are due already (the scheduler's backlog)."""
        ...

    def close(self) -> None: ...


class SqliteScheduleStore:
    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        """``synchronous``: FULL or NORMAL, as the event store's (``adapters.event_store``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(synchronous_pragma(synchronous))
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS timers (message_id TEXT PRIMARY KEY, due_at REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS timers_due ON timers (due_at)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS position (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "notification_id INTEGER NOT NULL)"
        )

    def apply(
        self,
        set_due: Iterable[tuple[UUID, datetime]],
        clear: Iterable[UUID],
        position: int | None,
    ) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO timers VALUES (?, ?) "
                    "ON CONFLICT (message_id) DO UPDATE SET due_at = excluded.due_at",
                    [(str(m), due.timestamp()) for m, due in set_due],
                )
                self._db.executemany(
                    "DELETE FROM timers WHERE message_id = ?", [(str(m),) for m in clear]
                )
                if position is not None:
                    self._db.execute(
                        "INSERT INTO position VALUES (1, ?) "
                        "ON CONFLICT (id) DO UPDATE SET notification_id = excluded.notification_id",
                        (position,),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def position(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT notification_id FROM position").fetchone()
        return None if row is None else int(row[0])

    def due(self, now: datetime, limit: int) -> list[UUID]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id FROM timers WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                (now.timestamp(), limit),
            ).fetchall()
        return [UUID(r[0]) for r in rows]

    def waiting(self, now: datetime) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(due_at <= ?), 0) FROM timers", (now.timestamp(),)
            ).fetchone()
        return int(row[0]), int(row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()


_POSTGRES_TABLES = (
    "CREATE TABLE IF NOT EXISTS sendstream_timers"
    " (message_id uuid PRIMARY KEY, due_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sendstream_timers_due ON sendstream_timers (due_at)",
    "CREATE TABLE IF NOT EXISTS sendstream_timer_position"
    " (consumer text PRIMARY KEY, notification_id bigint NOT NULL)",
)


class PostgresScheduleStore:
    def __init__(self, conninfo: str, schema: str = "public", consumer: str = "scheduler") -> None:
        from adapters.postgres_connection import SchemaConnection

        self._consumer = consumer
        self._lock = threading.Lock()
        self._connection = SchemaConnection(conninfo, schema)
        ensure_objects(self._db, schema, _POSTGRES_TABLES, owner="timer tables")

    @property
    def _db(self) -> Any:  # psycopg.Connection, imported only where PostgreSQL is used
        return self._connection.db

    def apply(
        self,
        set_due: Iterable[tuple[UUID, datetime]],
        clear: Iterable[UUID],
        position: int | None,
    ) -> None:
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sendstream_timers VALUES (%s, %s) "
                "ON CONFLICT (message_id) DO UPDATE SET due_at = excluded.due_at",
                list(set_due),
            )
            cursor.executemany(
                "DELETE FROM sendstream_timers WHERE message_id = %s", [(m,) for m in clear]
            )
            if position is not None:
                cursor.execute(
                    "INSERT INTO sendstream_timer_position VALUES (%s, %s) ON CONFLICT (consumer) "
                    "DO UPDATE SET notification_id = excluded.notification_id",
                    (self._consumer, position),
                )

    def position(self) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT notification_id FROM sendstream_timer_position WHERE consumer = %s",
                (self._consumer,),
            ).fetchone()
        return None if row is None else int(row[0])

    def due(self, now: datetime, limit: int) -> list[UUID]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id FROM sendstream_timers WHERE due_at <= %s "
                "ORDER BY due_at LIMIT %s",
                (now, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def waiting(self, now: datetime) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE due_at <= %s) FROM sendstream_timers",
                (now,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def close(self) -> None:
        with self._lock:
            self._connection.close()
