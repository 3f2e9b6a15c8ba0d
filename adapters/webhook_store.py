"""The durable side of webhook delivery: pending calls, their retry times, the attempt log.

Webhook calls are made from events of the stream, long after (and far more often than)
anything worth an event of its own, so their changing state lives here rather than in
the event store: the pending deliveries with their due times, the consumer's stream
position, each webhook's run of consecutive failures, and the log of attempts that
customers read back.

What is atomic (one transaction per call, so a crash anywhere loses nothing and repeats
nothing beyond at-least-once):

* ``enqueue`` adds jobs and records the stream position together; a job already pending
  or already finished is ignored, so a stream read again after a crash delivers nothing
  twice.
* ``claim_due`` picks due jobs and pushes their due time out by a lease together, so two
  workers never take the same job and a worker that dies leaves its jobs due again.
* ``record`` appends the attempts to the log, counts failures, and reschedules or
  finishes the jobs together.

Order per message: jobs of one (webhook, message) are delivered in stream order. Each
job carries a ``head`` flag, true for the lowest position pending in its (webhook,
message) group; only heads are claimed, so a claim reads one index range of due heads
however many later jobs wait behind a failing one. The flag is set when jobs are added
and handed on when a head finishes, each time by an index lookup of the group. A claim
may skip webhooks (those of an endpoint already behind): their due heads are then read
in that index range and passed over, a cost in proportion to their backlog (about 10 ms
per 100,000 on SQLite), which is why the caller makes such claims at most ten a second.

Finished jobs are remembered by the attempt log itself: the attempt that finishes a job
is logged as ``finished``, and ``enqueue`` looks for such an attempt by (webhook, event)
in the log's job index, which numbering attempts needs anyway. So the memory of finished
jobs costs no table or write of its own, and lasts as long as their attempts are kept.

SQLite (a file, the embedded default; several processes may share it) or PostgreSQL.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

if TYPE_CHECKING:
    import psycopg


# claim_due skips at most this many webhooks (a bound on the statement's parameters).
MAX_SKIPPED = 1000


@dataclass(frozen=True)
class DeliveryJob:
    webhook_id: UUID
    event_id: UUID  # the domain event's id; (webhook_id, event_id) identifies a job
    message_id: UUID  # jobs of one (webhook_id, message_id) are delivered in position order
    position: int  # the event's position in the event stream
    occurred_at: datetime  # aware UTC
    payload: bytes  # the request ready to send (opaque to the store)
    attempt: int  # attempts already made (0 for a new job)
    due_at: datetime  # aware UTC


@dataclass(frozen=True)
class AttemptResult:
    webhook_id: UUID
    event_id: UUID
    attempted_at: datetime  # aware UTC
    url: str
    status_code: int  # 0 when no HTTP answer (timeout, connection refused, refused address)
    latency_ms: float
    error: str  # "" on success
    response_snippet: str  # the first bytes of the response body, cut to size by the caller
    succeeded: bool
    next_due_at: datetime | None  # when to try again; None = finished (delivered or given up)


@dataclass(frozen=True)
class Attempt:
    """One row of the attempt log, as read back."""

    webhook_id: UUID
    event_id: UUID
    attempt: int  # 1 for the first attempt of this job, 2 for the first retry …
    attempted_at: datetime
    url: str
    status_code: int
    latency_ms: float
    error: str
    response_snippet: str
    succeeded: bool


class WebhookStore(Protocol):
    def enqueue(self, jobs: Sequence[DeliveryJob], position: int | None) -> int:
        """Add jobs and record the consumer's stream position (if not None) in ONE transaction.

        A job whose (webhook_id, event_id) is already pending OR was already finished is
        ignored (at-least-once redelivery of the stream must not deliver twice). Returns
        how many were new.
        """
        ...

    def position(self) -> int | None: ...

    def claim_due(
        self, now: datetime, limit: int, lease_seconds: float, skip: Collection[UUID] = ()
    ) -> list[DeliveryJob]:
        """Up to ``limit`` pending jobs with due_at <= now, earliest due first, none of the
        webhooks in ``skip`` (at most 1,000 of them are skipped: the rest are claimed).

        A job waits while a job of the same (webhook_id, message_id) with a lower
        position is pending (per-message order), due or not. Claimed jobs get
        due_at = now + lease_seconds in the same transaction, so another claimer does
        not take them and a crash makes them due again after the lease. Returned jobs
        are as they were when claimed: original attempt count, payload and due_at.
        """
        ...

    def record_and_claim(
        self,
        results: Sequence[AttemptResult],
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID] = (),
    ) -> list[DeliveryJob]:
        """``record(results)`` then ``claim_due(now, limit, lease_seconds, skip)``, in ONE
        transaction: a caller's round trip to the store, and the store's write lock, once."""
        ...

    def record(self, results: Sequence[AttemptResult]) -> None:
        """Log attempts, count failures, reschedule or finish jobs, in ONE transaction.

        For each result: append to the attempt log (attempt number = job's attempt + 1);
        if succeeded, the webhook's consecutive failures go back to 0, else up by 1; if
        next_due_at is None the job is finished (removed from pending and remembered, so
        enqueue ignores it later), else attempt += 1 and due_at = next_due_at. A result
        whose job no longer exists (dropped meanwhile) is still logged, numbered after
        the attempts already logged for it.
        """
        ...

    def consecutive_failures(self, webhook_id: UUID) -> int: ...

    def pending_count(self, webhook_id: UUID | None = None) -> int: ...

    def drop_jobs(self, webhook_id: UUID) -> int:
        """Remove a webhook's pending jobs (webhook deleted or disabled); returns how many."""
        ...

    def reset_failures(self, webhook_id: UUID) -> None:
        """Consecutive failures back to 0 (the customer changed the URL or parameters)."""
        ...

    def attempts(
        self,
        webhook_id: UUID,
        start_from: int,
        retrieve_count: int,
        succeeded: bool | None = None,
    ) -> tuple[int, list[Attempt]]:
        """One webhook's attempt log, newest first (ties: last logged first), and its total.

        ``succeeded``: None = all, True = successes only, False = failures only; the
        total counts the attempts matching the filter.
        """
        ...

    def close(self) -> None: ...


def open_webhook_store(path_or_url: str | Path) -> WebhookStore:
    """PostgreSQL for a ``postgresql://`` (or ``postgres://``) URL, SQLite otherwise.

    ``?schema=name`` on the URL picks the PostgreSQL schema (default ``public``); a
    ``sqlite:///path`` URL or a plain path names the SQLite file.
    """
    text = str(path_or_url)
    if isinstance(path_or_url, str) and text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = dict(query).get("schema", "public")
        rest = urlencode([(k, v) for k, v in query if k != "schema"])
        conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
        return PostgresWebhookStore(conninfo, schema=schema)
    if isinstance(path_or_url, str) and text.startswith("sqlite:///"):
        return SqliteWebhookStore(Path(text.removeprefix("sqlite:///")))
    return SqliteWebhookStore(Path(path_or_url))


# --- shared bookkeeping ------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_Key = tuple[UUID, UUID]  # (webhook_id, event_id)
_Group = tuple[UUID, UUID]  # (webhook_id, message_id)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"webhook store times must be timezone-aware, not {value!r}")
    return value


def _to_us(value: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch (exact, and orders as time)."""
    return (_aware(value) - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass
class _Pending:
    """What ``record`` needs of a pending job."""

    message_id: UUID
    position: int
    attempt: int


@dataclass
class _Plan:
    """What one ``record`` call writes, worked out from the results in order."""

    log: list[tuple[AttemptResult, int]]  # (result, attempt number)
    finished: set[_Key]  # pending jobs that finish
    rescheduled: dict[_Key, tuple[int, datetime]]  # job → (attempt, due at)
    groups: set[_Group]  # groups whose head may have finished
    reset: dict[UUID, int]  # webhook → failures since its last success in this batch
    add: dict[UUID, int]  # webhook → failures to add (no success in this batch)


def _plan(
    results: Sequence[AttemptResult],
    pending: dict[_Key, _Pending],
    logged: dict[_Key, int],
) -> _Plan:
    """Apply ``results`` in order to the jobs they name (``pending``, found ones only) and
    to the attempt numbers already logged for jobs not pending (``logged``)."""
    plan = _Plan([], set(), {}, set(), {}, {})
    jobs: dict[_Key, _Pending | None] = dict(pending)
    for result in results:
        _aware(result.attempted_at)
        key = (result.webhook_id, result.event_id)
        job = jobs.get(key)
        if job is None:
            number = logged.get(key, 0) + 1
            logged[key] = number
        else:
            number = job.attempt + 1
            if result.next_due_at is None:
                jobs[key] = None
                logged[key] = number
                plan.finished.add(key)
                plan.rescheduled.pop(key, None)
                plan.groups.add((result.webhook_id, job.message_id))
            else:
                job.attempt = number
                plan.rescheduled[key] = (number, _aware(result.next_due_at))
        plan.log.append((result, number))
        webhook = result.webhook_id
        if result.succeeded:
            plan.add.pop(webhook, None)
            plan.reset[webhook] = 0
        elif webhook in plan.reset:
            plan.reset[webhook] += 1
        else:
            plan.add[webhook] = plan.add.get(webhook, 0) + 1
    return plan


# --- SQLite ------------------------------------------------------------------------------

_SQLITE_SCHEMA = (
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
# arrivals are then put right by _SQLITE_NORMALISE_HEAD.
_SQLITE_INSERT_JOB = (
    "INSERT INTO webhook_jobs (webhook_id, event_id, message_id, position, occurred_at,"
    " payload, attempt, due_at, head)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NOT EXISTS (SELECT 1 FROM webhook_jobs"
    "  WHERE webhook_id = ?1 AND message_id = ?3 AND position < ?4)"
    " WHERE NOT EXISTS (SELECT 1 FROM webhook_attempts"
    "  WHERE webhook_id = ?1 AND event_id = ?2 AND finished = 1)"
    " ON CONFLICT (webhook_id, event_id) DO NOTHING"
)
# The head of a group is its lowest pending position; rows already right are not written.
_SQLITE_NORMALISE_HEAD = (
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


class SqliteWebhookStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Callers in several processes share the file; its transactions are short, and a
        # writer that waits its turn is better than one that gives up after 5 s.
        self._db = sqlite3.connect(
            path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SQLITE_SCHEMA:
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
                added = db.executemany(_SQLITE_INSERT_JOB, rows).rowcount
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
                db.executemany(_SQLITE_NORMALISE_HEAD, shared)
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

    def claim_due(
        self, now: datetime, limit: int, lease_seconds: float, skip: Collection[UUID] = ()
    ) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        with self._write() as db:
            return self._claim_in(db, now, limit, lease_seconds, skip)

    def record_and_claim(
        self,
        results: Sequence[AttemptResult],
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID] = (),
    ) -> list[DeliveryJob]:
        if not results and limit <= 0:
            return []
        with self._write() as db:
            self._record_in(db, results)
            return self._claim_in(db, now, limit, lease_seconds, skip)

    def _claim_in(
        self,
        db: sqlite3.Connection,
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID],
    ) -> list[DeliveryJob]:
        if limit <= 0:
            return []
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

    def record(self, results: Sequence[AttemptResult]) -> None:
        if not results:
            return
        with self._write() as db:
            self._record_in(db, results)

    def _record_in(self, db: sqlite3.Connection, results: Sequence[AttemptResult]) -> None:
        if not results:
            return
        keys = list(dict.fromkeys((r.webhook_id, r.event_id) for r in results))
        pending: dict[_Key, _Pending] = {}
        for chunk in _chunks(keys):
            for w, e, m, position, attempt in db.execute(
                "SELECT j.webhook_id, j.event_id, j.message_id, j.position, j.attempt"  # noqa: S608 (placeholders only; values are bound)
                f" FROM {_keys(len(chunk))} CROSS JOIN webhook_jobs j"
                " ON j.webhook_id = k.column1 AND j.event_id = k.column2",
                _flat(chunk),
            ):
                pending[UUID(bytes=w), UUID(bytes=e)] = _Pending(UUID(bytes=m), position, attempt)
        missing = [key for key in keys if key not in pending]
        logged: dict[_Key, int] = dict.fromkeys(missing, 0)
        for chunk in _chunks(missing):
            for w, e, last in db.execute(
                "SELECT a.webhook_id, a.event_id, MAX(a.attempt)"  # noqa: S608 (placeholders only; values are bound)
                f" FROM {_keys(len(chunk))} CROSS JOIN webhook_attempts a"
                " ON a.webhook_id = k.column1 AND a.event_id = k.column2"
                " GROUP BY a.webhook_id, a.event_id",
                _flat(chunk),
            ):
                logged[UUID(bytes=w), UUID(bytes=e)] = last
        plan = _plan(results, pending, logged)
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
        db.executemany(_SQLITE_NORMALISE_HEAD, waiting)
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


# --- PostgreSQL --------------------------------------------------------------------------

_PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sendstream_webhook_jobs ("
    " webhook_id uuid NOT NULL, event_id uuid NOT NULL, message_id uuid NOT NULL,"
    " position bigint NOT NULL, occurred_at timestamptz NOT NULL, payload bytea NOT NULL,"
    " attempt integer NOT NULL, due_at timestamptz NOT NULL, head boolean NOT NULL,"
    " PRIMARY KEY (webhook_id, event_id))",
    "CREATE INDEX IF NOT EXISTS sendstream_webhook_jobs_due"
    " ON sendstream_webhook_jobs (due_at, position) WHERE head",
    "CREATE INDEX IF NOT EXISTS sendstream_webhook_jobs_order"
    " ON sendstream_webhook_jobs (webhook_id, message_id, position)",
    "CREATE TABLE IF NOT EXISTS sendstream_webhook_failures ("
    " webhook_id uuid PRIMARY KEY, consecutive integer NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sendstream_webhook_attempts ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, webhook_id uuid NOT NULL,"
    " event_id uuid NOT NULL, attempt integer NOT NULL, attempted_at timestamptz NOT NULL,"
    " url text NOT NULL, status_code integer NOT NULL, latency_ms double precision NOT NULL,"
    " error text NOT NULL, response_snippet text NOT NULL, succeeded boolean NOT NULL,"
    " finished boolean NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sendstream_webhook_attempts_log"
    " ON sendstream_webhook_attempts (webhook_id, attempted_at, id) INCLUDE (succeeded)",
    "CREATE INDEX IF NOT EXISTS sendstream_webhook_attempts_job"
    " ON sendstream_webhook_attempts (webhook_id, event_id, attempt) INCLUDE (finished)",
    "CREATE TABLE IF NOT EXISTS sendstream_webhook_position ("
    " id integer PRIMARY KEY CHECK (id = 1), notification_id bigint NOT NULL)",
)

# Every table and index above, by name (their presence means no DDL is needed).
_PG_OBJECTS = frozenset(
    name
    for statement in _PG_SCHEMA
    for name in statement.replace("(", " ").split()
    if name.startswith("sendstream_webhook_")
)
# As in SQLite: a head unless a lower position is pending; jobs of one group arriving in
# one statement do not see each other, and _PG_NORMALISE_HEADS puts that right.
_PG_INSERT_JOBS = (
    "INSERT INTO sendstream_webhook_jobs (webhook_id, event_id, message_id, position,"
    " occurred_at, payload, attempt, due_at, head)"
    " SELECT n.*, NOT EXISTS (SELECT 1 FROM sendstream_webhook_jobs j"
    "  WHERE j.webhook_id = n.webhook_id AND j.message_id = n.message_id"
    "  AND j.position < n.position)"
    " FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::bigint[], %s::timestamptz[],"
    "  %s::bytea[], %s::integer[], %s::timestamptz[])"
    "  AS n(webhook_id, event_id, message_id, position, occurred_at, payload, attempt, due_at)"
    " WHERE NOT EXISTS (SELECT 1 FROM sendstream_webhook_attempts a"
    "  WHERE a.webhook_id = n.webhook_id AND a.event_id = n.event_id AND a.finished)"
    " ON CONFLICT (webhook_id, event_id) DO NOTHING"
)
_PG_NORMALISE_HEADS = (
    "UPDATE sendstream_webhook_jobs j SET head = (j.position = g.low)"
    " FROM (SELECT j.webhook_id, j.message_id, MIN(j.position) AS low"
    "  FROM unnest(%s::uuid[], %s::uuid[]) AS t(webhook_id, message_id)"
    "  JOIN sendstream_webhook_jobs j"
    "   ON j.webhook_id = t.webhook_id AND j.message_id = t.message_id"
    "  GROUP BY j.webhook_id, j.message_id) AS g"
    " WHERE j.webhook_id = g.webhook_id AND j.message_id = g.message_id"
    " AND j.head IS DISTINCT FROM (j.position = g.low)"
)
_PG_LOCK_FAILURES = (
    "INSERT INTO sendstream_webhook_failures"
    " SELECT w, 0 FROM unnest(%s::uuid[]) AS w ORDER BY w"
    " ON CONFLICT (webhook_id)"
    " DO UPDATE SET consecutive = sendstream_webhook_failures.consecutive"
)
_PG_UPDATE_FAILURES = (
    "UPDATE sendstream_webhook_failures f"
    " SET consecutive = CASE WHEN u.reset THEN u.n ELSE f.consecutive + u.n END"
    " FROM unnest(%s::uuid[], %s::integer[], %s::boolean[]) AS u(webhook_id, n, reset)"
    " WHERE f.webhook_id = u.webhook_id"
)


def _lock_key(data: bytes) -> int:
    """A signed 64-bit advisory-lock key."""
    digest = hashlib.blake2b(data, digest_size=8, person=b"sendstream-wh").digest()
    return int.from_bytes(digest, "big", signed=True)


def _group_lock_key(group: _Group) -> int:
    return _lock_key(group[0].bytes + group[1].bytes)


def _schema_lock_key(schema: str) -> int:
    return _lock_key(b"schema:" + schema.encode())


class PostgresWebhookStore:
    """The same store in PostgreSQL, for installations whose event store is there.

    Several processes may use one schema: claims take rows with ``SKIP LOCKED``, and
    ``enqueue`` and ``record`` hold a transaction advisory lock per (webhook, message)
    group they touch (taken in key order), so that heads are handed on correctly.
    """

    def __init__(
        self,
        conninfo: str,
        schema: str = "public",
    ) -> None:
        import psycopg
        from psycopg import sql

        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] = psycopg.connect(conninfo, autocommit=True)
        self._db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        # CREATE INDEX IF NOT EXISTS locks its table even when the index is there, which
        # can deadlock with another process already delivering: when every table and index
        # exists, no DDL runs at all.
        if not self._has_all_objects(schema):
            with self._db.transaction():
                # Processes starting together would race on CREATE … IF NOT EXISTS; the one
                # that waited finds the work done.
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_schema_lock_key(schema),))
                if not self._has_all_objects(schema):
                    self._db.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                    )
                    for statement in _PG_SCHEMA:
                        self._db.execute(statement)

    def _has_all_objects(self, schema: str) -> bool:
        row = self._db.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (schema, list(_PG_OBJECTS)),
        ).fetchone()
        return row is not None and row[0] == len(_PG_OBJECTS)

    def _lock_groups(self, cursor: psycopg.Cursor[Any], groups: set[_Group]) -> None:
        if groups:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
                (sorted({_group_lock_key(g) for g in groups}),),
            )

    def enqueue(self, jobs: Sequence[DeliveryJob], position: int | None) -> int:
        columns: list[list[Any]] = [[], [], [], [], [], [], [], []]
        for j in jobs:
            values = (
                j.webhook_id,
                j.event_id,
                j.message_id,
                j.position,
                _aware(j.occurred_at),
                j.payload,
                j.attempt,
                _aware(j.due_at),
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        groups = {(j.webhook_id, j.message_id) for j in jobs}
        added = 0
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            if jobs:
                self._lock_groups(cursor, groups)
                cursor.execute(_PG_INSERT_JOBS, columns)
                added = cursor.rowcount
                ordered = sorted(groups)
                cursor.execute(
                    _PG_NORMALISE_HEADS, ([w for w, _ in ordered], [m for _, m in ordered])
                )
            if position is not None:
                cursor.execute(
                    "INSERT INTO sendstream_webhook_position VALUES (1, %s) ON CONFLICT (id)"
                    " DO UPDATE SET notification_id = excluded.notification_id",
                    (position,),
                )
        return added

    def position(self) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT notification_id FROM sendstream_webhook_position"
            ).fetchone()
        return None if row is None else int(row[0])

    def claim_due(
        self, now: datetime, limit: int, lease_seconds: float, skip: Collection[UUID] = ()
    ) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            return self._claim_in(cursor, now, limit, lease_seconds, skip)

    def record_and_claim(
        self,
        results: Sequence[AttemptResult],
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID] = (),
    ) -> list[DeliveryJob]:
        if not results and limit <= 0:
            return []
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            self._record_in(cursor, results)
            return self._claim_in(cursor, now, limit, lease_seconds, skip)

    def _claim_in(
        self,
        cursor: psycopg.Cursor[Any],
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID],
    ) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        until = _aware(now) + timedelta(seconds=lease_seconds)
        skipped = list(skip)[:MAX_SKIPPED]
        rows = cursor.execute(
            "WITH c AS (SELECT webhook_id, event_id, due_at FROM sendstream_webhook_jobs"
            "  WHERE head AND due_at <= %s AND NOT (webhook_id = ANY(%s::uuid[]))"
            "  ORDER BY due_at, position LIMIT %s"
            "  FOR UPDATE SKIP LOCKED)"
            " UPDATE sendstream_webhook_jobs j SET due_at = %s FROM c"
            " WHERE j.webhook_id = c.webhook_id AND j.event_id = c.event_id"
            " RETURNING j.webhook_id, j.event_id, j.message_id, j.position, j.occurred_at,"
            " j.payload, j.attempt, c.due_at",
            (now, skipped, limit, until),
        ).fetchall()
        jobs = [
            DeliveryJob(
                webhook_id=r[0],
                event_id=r[1],
                message_id=r[2],
                position=r[3],
                occurred_at=r[4].astimezone(UTC),
                payload=r[5],
                attempt=r[6],
                due_at=r[7].astimezone(UTC),
            )
            for r in rows
        ]
        jobs.sort(key=lambda j: (j.due_at, j.position))
        return jobs

    def record(self, results: Sequence[AttemptResult]) -> None:
        if not results:
            return
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            self._record_in(cursor, results)

    def _record_in(self, cursor: psycopg.Cursor[Any], results: Sequence[AttemptResult]) -> None:
        if not results:
            return
        keys = list(dict.fromkeys((r.webhook_id, r.event_id) for r in results))
        key_columns = ([w for w, _ in keys], [e for _, e in keys])
        find = (
            "SELECT j.webhook_id, j.event_id, j.message_id, j.position, j.attempt"
            " FROM unnest(%s::uuid[], %s::uuid[]) AS k(webhook_id, event_id)"
            " JOIN sendstream_webhook_jobs j"
            "  ON j.webhook_id = k.webhook_id AND j.event_id = k.event_id"
        )
        # A job's group never changes: learn the groups, lock them, then read the jobs
        # again under the locks (and row locks) for their current attempt counts.
        groups = {(r[0], r[2]) for r in cursor.execute(find, key_columns).fetchall()}
        self._lock_groups(cursor, groups)
        pending = {
            (r[0], r[1]): _Pending(r[2], r[3], r[4])
            for r in cursor.execute(
                find + " ORDER BY j.webhook_id, j.event_id FOR UPDATE OF j", key_columns
            ).fetchall()
        }
        missing = [k for k in keys if k not in pending]
        logged: dict[_Key, int] = dict.fromkeys(missing, 0)
        if missing:
            for w, e, last in cursor.execute(
                "SELECT a.webhook_id, a.event_id, MAX(a.attempt)"
                " FROM unnest(%s::uuid[], %s::uuid[]) AS k(webhook_id, event_id)"
                " JOIN sendstream_webhook_attempts a"
                "  ON a.webhook_id = k.webhook_id AND a.event_id = k.event_id"
                " GROUP BY a.webhook_id, a.event_id",
                ([w for w, _ in missing], [e for _, e in missing]),
            ).fetchall():
                logged[w, e] = last
        plan = _plan(results, pending, logged)

        log: list[list[Any]] = [[] for _ in range(11)]
        for r, number in plan.log:
            values = (
                r.webhook_id,
                r.event_id,
                number,
                r.attempted_at,
                r.url,
                r.status_code,
                r.latency_ms,
                r.error,
                r.response_snippet,
                r.succeeded,
                r.next_due_at is None,
            )
            for column, value in zip(log, values, strict=True):
                column.append(value)
        cursor.execute(
            "INSERT INTO sendstream_webhook_attempts (webhook_id, event_id, attempt,"
            " attempted_at, url, status_code, latency_ms, error, response_snippet, succeeded,"
            " finished)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::integer[],"
            " %s::timestamptz[], %s::text[], %s::integer[], %s::float8[], %s::text[],"
            " %s::text[], %s::boolean[], %s::boolean[])",
            log,
        )
        if plan.rescheduled:
            items = sorted(plan.rescheduled.items())
            cursor.execute(
                "UPDATE sendstream_webhook_jobs j SET attempt = u.attempt, due_at = u.due_at"
                " FROM unnest(%s::uuid[], %s::uuid[], %s::integer[], %s::timestamptz[])"
                "  AS u(webhook_id, event_id, attempt, due_at)"
                " WHERE j.webhook_id = u.webhook_id AND j.event_id = u.event_id",
                (
                    [w for (w, _), _ in items],
                    [e for (_, e), _ in items],
                    [n for _, (n, _) in items],
                    [due for _, (_, due) in items],
                ),
            )
        if plan.finished:
            done = sorted(plan.finished)
            cursor.execute(
                "DELETE FROM sendstream_webhook_jobs j"
                " USING unnest(%s::uuid[], %s::uuid[]) AS d(webhook_id, event_id)"
                " WHERE j.webhook_id = d.webhook_id AND j.event_id = d.event_id",
                ([w for w, _ in done], [e for _, e in done]),
            )
            ordered = sorted(plan.groups)
            cursor.execute(_PG_NORMALISE_HEADS, ([w for w, _ in ordered], [m for _, m in ordered]))
        changes = sorted(
            [(w, n, True) for w, n in plan.reset.items()]
            + [(w, n, False) for w, n in plan.add.items()]
        )
        webhooks = [w for w, _, _ in changes]
        # Lock every counter row in key order first (creating those missing), so that
        # concurrent ``record`` calls cannot lock two webhooks in opposite orders.
        cursor.execute(_PG_LOCK_FAILURES, (webhooks,))
        cursor.execute(
            _PG_UPDATE_FAILURES,
            (webhooks, [n for _, n, _ in changes], [reset for _, _, reset in changes]),
        )

    def consecutive_failures(self, webhook_id: UUID) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT consecutive FROM sendstream_webhook_failures WHERE webhook_id = %s",
                (webhook_id,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def pending_count(self, webhook_id: UUID | None = None) -> int:
        with self._lock:
            if webhook_id is None:
                row = self._db.execute("SELECT COUNT(*) FROM sendstream_webhook_jobs").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM sendstream_webhook_jobs WHERE webhook_id = %s",
                    (webhook_id,),
                ).fetchone()
        assert row is not None
        return int(row[0])

    def drop_jobs(self, webhook_id: UUID) -> int:
        # Whole groups go (a group belongs to one webhook), so no head needs handing on.
        # Rows are locked in key order first, the order ``record`` locks them in.
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM sendstream_webhook_jobs WHERE webhook_id = %s"
                " ORDER BY event_id FOR UPDATE",
                (webhook_id,),
            )
            cursor.execute(
                "DELETE FROM sendstream_webhook_jobs WHERE webhook_id = %s", (webhook_id,)
            )
            return cursor.rowcount

    def reset_failures(self, webhook_id: UUID) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM sendstream_webhook_failures WHERE webhook_id = %s", (webhook_id,)
            )

    def attempts(
        self,
        webhook_id: UUID,
        start_from: int,
        retrieve_count: int,
        succeeded: bool | None = None,
    ) -> tuple[int, list[Attempt]]:
        # succeeded is INCLUDEd in the log index, so the filter is read from the index as
        # it is walked newest first; one snapshot makes the total and the page agree.
        where = (webhook_id, succeeded, succeeded)
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            total_row = cursor.execute(
                "SELECT COUNT(*) FROM sendstream_webhook_attempts"
                " WHERE webhook_id = %s AND (%s::boolean IS NULL OR succeeded = %s)",
                where,
            ).fetchone()
            rows = cursor.execute(
                "SELECT webhook_id, event_id, attempt, attempted_at, url, status_code,"
                " latency_ms, error, response_snippet, succeeded FROM sendstream_webhook_attempts"
                " WHERE webhook_id = %s AND (%s::boolean IS NULL OR succeeded = %s)"
                " ORDER BY attempted_at DESC, id DESC LIMIT %s OFFSET %s",
                (*where, max(retrieve_count, 0), max(start_from, 0)),
            ).fetchall()
        assert total_row is not None
        return int(total_row[0]), [
            Attempt(
                webhook_id=r[0],
                event_id=r[1],
                attempt=r[2],
                attempted_at=r[3].astimezone(UTC),
                url=r[4],
                status_code=r[5],
                latency_ms=r[6],
                error=r[7],
                response_snippet=r[8],
                succeeded=r[9],
            )
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
