"""The event store's recorders: eventsourcing's, with the durability chosen (SQLite) and
their tables created in turns (PostgreSQL).

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

from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.persistence import ApplicationRecorder, TrackingRecorder
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresFactory,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteFactory,
    SQLiteTrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType
from psycopg.sql import SQL, Identifier

from adapters.postgres_schema import advisory_key

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


class OneAttemptPostgresRecorder(PostgresApplicationRecorder):
    """Inserts and reads of aggregates are tried once. eventsourcing tries them up to ten
    times, each waiting up to the pool's timeout for a connection: a request met a
    database restart by hanging for most of a minute, and an insert tried again after a
    COMMIT whose answer was lost met its own events as a conflict. The engine decides
    instead: the API refuses with 503 and Retry-After, the workers offer the events again
    once they know they did not land (engine.eventlog.writer)."""

    insert_events = PostgresApplicationRecorder.insert_events.__wrapped__
    select_events = PostgresApplicationRecorder.select_events.__wrapped__


class SerialisedPostgresFactory(PostgresFactory):
    """``PERSISTENCE_MODULE=adapters.event_store:SerialisedPostgresFactory``.

    eventsourcing creates its tables, indexes and functions with ``IF NOT EXISTS``, which
    PostgreSQL does not make safe against a concurrent creation: processes of an
    installation starting together on a new database raced, and one died at start with
    "tuple concurrently updated" (seen when five ``serve --role`` processes started at
    once). Here the creators take turns on a session advisory lock.
    """

    application_recorder_class = OneAttemptPostgresRecorder

    def application_recorder(self) -> ApplicationRecorder:
        with self._creating_tables():
            return super().application_recorder()

    def tracking_recorder(  # type: ignore[override]
        self, tracking_recorder_class: type[PostgresTrackingRecorder] | None = None
    ) -> PostgresTrackingRecorder:
        with self._creating_tables():
            return super().tracking_recorder(tracking_recorder_class)

    @contextmanager
    def _creating_tables(self) -> Iterator[None]:
        if not self.env_create_table():
            yield
            return
        key = advisory_key(f"{self.datastore.schema}:event store")
        with self.datastore.get_connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
                connection.commit()


def rewind_tracking(recorder: TrackingRecorder, name: str, position: int) -> None:
    """Move ``name``'s tracked position back to ``position``, for a consumer that must read
    again what it had passed (the relay after the broker lost what it had acknowledged).
    eventsourcing only ever moves a position forwards, on both stores."""
    if isinstance(recorder, PostgresTrackingRecorder):
        table = SQL("{0}.{1}").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.tracking_table_name)
        )
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL("DELETE FROM {0} WHERE application_name = %s AND notification_id > %s")
                .format(table), (name, position),
            )  # fmt: skip
            cursor.execute(
                SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(table),
                (name, position),
            )
        return
    if not isinstance(recorder, SQLiteTrackingRecorder):
        raise TypeError(f"cannot rewind the positions of {type(recorder).__name__}")
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            "DELETE FROM tracking WHERE application_name = ? AND notification_id > ?",
            (name, position),
        )
        cursor.execute(
            "INSERT INTO tracking VALUES (?, ?) ON CONFLICT DO NOTHING", (name, position)
        )
