"""The webhook store in a SQLite file: the embedded default, shared by the processes of one
machine (WAL; each write a ``BEGIN IMMEDIATE`` transaction, waiting up to 30 s for the lock).

Times are whole microseconds since the epoch (exact, and they order as time); ids are
16-byte blobs. Sets of ids are joined as a ``VALUES`` table with ``CROSS JOIN``, which
makes SQLite use the table's index where a row-value ``IN`` list made it scan the table.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from adapters.event_store import synchronous_pragma
from adapters.webhook_store.common import (
    MAX_SKIPPED,
    Attempt,
    AttemptResult,
    DeliveryJob,
    Key,
    Pending,
    WebhookStore,
    aware,
    plan_record,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_us(value: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch (exact, and orders as time)."""
    return (aware(value) - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


_SCHEMA = (
    # A rowid table: secondary indexes then carry an 8-byte rowid, not the 32-byte key.
    "CREATE TABLE IF NOT EXISTS webhook_jobs ("
    " webhook_id BLOB NOT NULL, event_id BLOB NOT NULL, message_id BLOB NOT NULL,"
    " position INTEGER NOT NULL, occurred_at INTEGER NOT NULL, payload BLOB NOT NULL,"
    " attempt INTEGER NOT NULL, due_at INTEGER NOT NULL, head INTEGER NOT NULL,"
    " PRIMARY KEY (webhook_id, event_id))",
    # Due heads in claim order; the webhook too, so that skipping a busy webhook's jobs
    # reads the index alone (webhook_jobs_due, without it, is dropped where found).
    "DROP INDEX IF EXISTS webhook_jobs_due",
    "CREATE INDEX IF NOT EXISTS webhook_jobs_due_heads"
    " ON webhook_jobs (due_at, position, webhook_id) WHERE head = 1",
    "CREATE INDEX IF NOT EXISTS webhook_jobs_order"
    " ON webhook_jobs (webhook_id, message_id, position)",
    "CREATE TABLE IF NOT EXISTS webhook_failures ("
    " webhook_id BLOB PRIMARY KEY, consecutive INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS webhook_attempts ("
    " id INTEGER PRIMARY KEY, webhook_id BLOB NOT NULL, event_id BLOB NOT NULL,"
    " attempt INTEGER NOT NULL, attempted_at INTEGER NOT NULL, url TEXT NOT NULL,"
    " status_code INTEGER NOT NULL, latency_ms REAL NOT NULL, error TEXT NOT NULL,"
    " response_snippet TEXT NOT NULL, succeeded INTEGER NOT NULL, finished INTEGER NOT NULL)",
    # Newest first by (attempted_at, id), with succeeded in the index so that filtered
    # pages and counts read the index alone.
    "CREATE INDEX IF NOT EXISTS webhook_attempts_log"
    " ON webhook_attempts (webhook_id, attempted_at, id, succeeded)",
    # A job's attempts: the last number logged, and whether one finished it.
    "CREATE INDEX IF NOT EXISTS webhook_attempts_job"
    " ON webhook_attempts (webhook_id, event_id, finished, attempt)",
    "CREATE TABLE IF NOT EXISTS webhook_position ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), notification_id INTEGER NOT NULL)",
)

# New jobs are heads unless a lower position of their group is pending; out-of-order
# arrivals are then put right by _NORMALISE_HEAD.
_INSERT_JOB = (
    "INSERT INTO webhook_jobs (webhook_id, event_id, message_id, position, occurred_at,"
    " payload, attempt, due_at, head)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NOT EXISTS (SELECT 1 FROM webhook_jobs"
    "  WHERE webhook_id = ?1 AND message_id = ?3 AND position < ?4)"
    " WHERE NOT EXISTS (SELECT 1 FROM webhook_attempts"
    "  WHERE webhook_id = ?1 AND event_id = ?2 AND finished = 1)"
    " ON CONFLICT (webhook_id, event_id) DO NOTHING"
)
# The head of a group is its lowest pending position; rows already right are not written.
_NORMALISE_HEAD = (
    "UPDATE webhook_jobs SET head = (position = m.low)"
    " FROM (SELECT MIN(position) AS low FROM webhook_jobs"
    "  WHERE webhook_id = ?1 AND message_id = ?2) AS m"
    " WHERE webhook_id = ?1 AND message_id = ?2 AND head != (position = m.low)"
)


# Pairs of ids per statement: well below SQLite's 32,766 bound parameters.
_PAIRS_PER_STATEMENT = 500


def _chunks(pairs: Sequence[tuple[UUID, UUID]]) -> list[Sequence[tuple[UUID, UUID]]]:
    return [pairs[i : i + _PAIRS_PER_STATEMENT] for i in range(0, len(pairs), _PAIRS_PER_STATEMENT)]


def _keys(count: int) -> str:
    """``count`` pairs of parameters as a table ``k`` (column1, column2). Joined to a table
    with CROSS JOIN, which makes SQLite look each pair up in the table's index (a row-value
    IN list here makes it scan the table)."""
    return f"(VALUES {','.join(['(?, ?)'] * count)}) AS k"


def _flat(pairs: Sequence[tuple[UUID, UUID]]) -> list[bytes]:
    return [part.bytes for pair in pairs for part in pair]


class SqliteWebhookStore(WebhookStore):
    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        """``synchronous``: FULL or NORMAL, as the event store's (``adapters.event_store``)."""
        pragma = synchronous_pragma(synchronous)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Callers in several processes share the file; its transactions are short, and a
        # writer that waits its turn is better than one that gives up after 5 s.
        self._db = sqlite3.connect(
            path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(pragma)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _write(self) -> _SqliteTransaction:
        return _SqliteTransaction(self._lock, self._db)

    def enqueue(self, jobs: Sequence[DeliveryJob], position: int | None) -> int:
        rows = [
            (
                j.webhook_id.bytes,
                j.event_id.bytes,
                j.message_id.bytes,
                j.position,
                _to_us(j.occurred_at),
                j.payload,
                j.attempt,
                _to_us(j.due_at),
            )
            for j in jobs
        ]
        groups = sorted({(j.webhook_id, j.message_id) for j in jobs})
        with self._write() as db:
            added = 0
            if rows:
                added = db.executemany(_INSERT_JOB, rows).rowcount
                # Only a group of two or more jobs can have a head to put right.
                shared: list[tuple[bytes, bytes]] = []
                for chunk in _chunks(groups):
                    shared += db.execute(
                        "SELECT j.webhook_id, j.message_id"  # noqa: S608 (placeholders only; values are bound)
                        f" FROM {_keys(len(chunk))} CROSS JOIN webhook_jobs j"
                        " ON j.webhook_id = k.column1 AND j.message_id = k.column2"
                        " GROUP BY j.webhook_id, j.message_id HAVING COUNT(*) > 1",
                        _flat(chunk),
                    ).fetchall()
                db.executemany(_NORMALISE_HEAD, shared)
            if position is not None:
                db.execute(
                    "INSERT INTO webhook_position VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET notification_id = excluded.notification_id",
                    (position,),
                )
        return added

    def position(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT notification_id FROM webhook_position").fetchone()
        return None if row is None else int(row[0])

    def _claim_in(
        self,
        db: sqlite3.Connection,
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID],
    ) -> list[DeliveryJob]:
        now_us = _to_us(now)
        until = _to_us(now + timedelta(seconds=lease_seconds))
        skipped = [webhook_id.bytes for webhook_id in list(skip)[:MAX_SKIPPED]]
        rows = db.execute(
            "SELECT rowid, webhook_id, event_id, message_id, position, occurred_at, payload,"  # noqa: S608 (placeholders only; values are bound)
            " attempt, due_at FROM webhook_jobs"
            " WHERE head = 1 AND due_at <= ?"
            f" AND webhook_id NOT IN ({','.join('?' * len(skipped))})"
            " ORDER BY due_at, position LIMIT ?",
            (now_us, *skipped, limit),
        ).fetchall()
        db.executemany(
            "UPDATE webhook_jobs SET due_at = ? WHERE rowid = ?", [(until, r[0]) for r in rows]
        )
        return [
            DeliveryJob(
                webhook_id=UUID(bytes=r[1]),
                event_id=UUID(bytes=r[2]),
                message_id=UUID(bytes=r[3]),
                position=r[4],
                occurred_at=_from_us(r[5]),
                payload=r[6],
                attempt=r[7],
                due_at=_from_us(r[8]),
            )
            for r in rows
        ]

    def _record_in(self, db: sqlite3.Connection, results: Sequence[AttemptResult]) -> None:
        keys = list(dict.fromkeys((r.webhook_id, r.event_id) for r in results))
        pending: dict[Key, Pending] = {}
        for chunk in _chunks(keys):
            for w, e, m, position, attempt in db.execute(
                "SELECT j.webhook_id, j.event_id, j.message_id, j.position, j.attempt"  # noqa: S608 (placeholders only; values are bound)
                f" FROM {_keys(len(chunk))} CROSS JOIN webhook_jobs j"
                " ON j.webhook_id = k.column1 AND j.event_id = k.column2",
                _flat(chunk),
            ):
                pending[UUID(bytes=w), UUID(bytes=e)] = Pending(UUID(bytes=m), position, attempt)
        missing = [key for key in keys if key not in pending]
        logged: dict[Key, int] = dict.fromkeys(missing, 0)
        for chunk in _chunks(missing):
            for w, e, last in db.execute(
                "SELECT a.webhook_id, a.event_id, MAX(a.attempt)"  # noqa: S608 (placeholders only; values are bound)
                f" FROM {_keys(len(chunk))} CROSS JOIN webhook_attempts a"
                " ON a.webhook_id = k.column1 AND a.event_id = k.column2"
                " GROUP BY a.webhook_id, a.event_id",
                _flat(chunk),
            ):
                logged[UUID(bytes=w), UUID(bytes=e)] = last
        plan = plan_record(results, pending, logged)
        db.executemany(
            "INSERT INTO webhook_attempts (webhook_id, event_id, attempt, attempted_at, url,"
            " status_code, latency_ms, error, response_snippet, succeeded, finished)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.webhook_id.bytes,
                    r.event_id.bytes,
                    number,
                    _to_us(r.attempted_at),
                    r.url,
                    r.status_code,
                    r.latency_ms,
                    r.error,
                    r.response_snippet,
                    r.succeeded,
                    r.next_due_at is None,
                )
                for r, number in plan.log
            ],
        )
        db.executemany(
            "UPDATE webhook_jobs SET attempt = ?, due_at = ? WHERE webhook_id = ? AND event_id = ?",
            [(n, _to_us(due), w.bytes, e.bytes) for (w, e), (n, due) in plan.rescheduled.items()],
        )
        for chunk in _chunks(sorted(plan.finished)):
            db.execute(
                "DELETE FROM webhook_jobs WHERE rowid IN (SELECT j.rowid"  # noqa: S608 (placeholders only; values are bound)
                f" FROM {_keys(len(chunk))} CROSS JOIN webhook_jobs j"
                " ON j.webhook_id = k.column1 AND j.event_id = k.column2)",
                _flat(chunk),
            )
        # Only groups with a job left need their head handed on; most have none.
        waiting: list[tuple[bytes, bytes]] = []
        for chunk in _chunks(sorted(plan.groups)):
            waiting += db.execute(
                "SELECT DISTINCT j.webhook_id, j.message_id"  # noqa: S608 (placeholders only; values are bound)
                f" FROM {_keys(len(chunk))} CROSS JOIN webhook_jobs j"
                " ON j.webhook_id = k.column1 AND j.message_id = k.column2",
                _flat(chunk),
            ).fetchall()
        db.executemany(_NORMALISE_HEAD, waiting)
        db.executemany(
            "INSERT INTO webhook_failures VALUES (?, ?) ON CONFLICT (webhook_id)"
            " DO UPDATE SET consecutive = excluded.consecutive",
            [(w.bytes, n) for w, n in plan.reset.items()],
        )
        db.executemany(
            "INSERT INTO webhook_failures VALUES (?, ?) ON CONFLICT (webhook_id)"
            " DO UPDATE SET consecutive = consecutive + excluded.consecutive",
            [(w.bytes, n) for w, n in plan.add.items()],
        )

    def consecutive_failures(self, webhook_id: UUID) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT consecutive FROM webhook_failures WHERE webhook_id = ?",
                (webhook_id.bytes,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def pending_count(self, webhook_id: UUID | None = None) -> int:
        with self._lock:
            if webhook_id is None:
                row = self._db.execute("SELECT COUNT(*) FROM webhook_jobs").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM webhook_jobs WHERE webhook_id = ?", (webhook_id.bytes,)
                ).fetchone()
        return int(row[0])

    def drop_jobs(self, webhook_id: UUID) -> int:
        # Whole groups go (a group belongs to one webhook), so no head needs handing on.
        with self._write() as db:
            return db.execute(
                "DELETE FROM webhook_jobs WHERE webhook_id = ?", (webhook_id.bytes,)
            ).rowcount

    def reset_failures(self, webhook_id: UUID) -> None:
        with self._write() as db:
            db.execute("DELETE FROM webhook_failures WHERE webhook_id = ?", (webhook_id.bytes,))

    def attempts(
        self,
        webhook_id: UUID,
        start_from: int,
        retrieve_count: int,
        succeeded: bool | None = None,
    ) -> tuple[int, list[Attempt]]:
        # succeeded is in the log index, so the filter is read from the index as it is
        # walked newest first; one read transaction makes the total and the page agree.
        where = (webhook_id.bytes, succeeded, succeeded)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                (total,) = self._db.execute(
                    "SELECT COUNT(*) FROM webhook_attempts"
                    " WHERE webhook_id = ? AND (? IS NULL OR succeeded = ?)",
                    where,
                ).fetchone()
                rows = self._db.execute(
                    "SELECT webhook_id, event_id, attempt, attempted_at, url, status_code,"
                    " latency_ms, error, response_snippet, succeeded FROM webhook_attempts"
                    " WHERE webhook_id = ? AND (? IS NULL OR succeeded = ?)"
                    " ORDER BY attempted_at DESC, id DESC LIMIT ? OFFSET ?",
                    (*where, max(retrieve_count, 0), max(start_from, 0)),
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        return int(total), [
            Attempt(
                webhook_id=UUID(bytes=r[0]),
                event_id=UUID(bytes=r[1]),
                attempt=r[2],
                attempted_at=_from_us(r[3]),
                url=r[4],
                status_code=r[5],
                latency_ms=r[6],
                error=r[7],
                response_snippet=r[8],
                succeeded=bool(r[9]),
            )
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _SqliteTransaction:
    """``with``: the store's lock and a write transaction (BEGIN IMMEDIATE … COMMIT)."""

    def __init__(self, lock: threading.Lock, db: sqlite3.Connection) -> None:
        self._lock = lock
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            self._db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self._lock.release()
