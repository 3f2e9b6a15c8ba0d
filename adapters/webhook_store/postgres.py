"""The webhook store in PostgreSQL, for installations whose event store is there: several
processes on several machines share one schema (claims with ``SKIP LOCKED``, advisory
locks per (webhook, message) group). Sets of values travel as arrays through ``unnest``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.postgres_schema import ensure_objects
from adapters.webhook_store.common import (
    MAX_SKIPPED,
    Attempt,
    AttemptResult,
    DeliveryJob,
    Group,
    Key,
    Pending,
    WebhookStore,
    aware,
    plan_record,
)

if TYPE_CHECKING:
    import psycopg


_SCHEMA = (
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

# As in SQLite: a head unless a lower position is pending; jobs of one group arriving in
# one statement do not see each other, and _NORMALISE_HEADS puts that right.
_INSERT_JOBS = (
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
_NORMALISE_HEADS = (
    "UPDATE sendstream_webhook_jobs j SET head = (j.position = g.low)"
    " FROM (SELECT j.webhook_id, j.message_id, MIN(j.position) AS low"
    "  FROM unnest(%s::uuid[], %s::uuid[]) AS t(webhook_id, message_id)"
    "  JOIN sendstream_webhook_jobs j"
    "   ON j.webhook_id = t.webhook_id AND j.message_id = t.message_id"
    "  GROUP BY j.webhook_id, j.message_id) AS g"
    " WHERE j.webhook_id = g.webhook_id AND j.message_id = g.message_id"
    " AND j.head IS DISTINCT FROM (j.position = g.low)"
)
_LOCK_FAILURES = (
    "INSERT INTO sendstream_webhook_failures"
    " SELECT w, 0 FROM unnest(%s::uuid[]) AS w ORDER BY w"
    " ON CONFLICT (webhook_id)"
    " DO UPDATE SET consecutive = sendstream_webhook_failures.consecutive"
)
_UPDATE_FAILURES = (
    "UPDATE sendstream_webhook_failures f"
    " SET consecutive = CASE WHEN u.reset THEN u.n ELSE f.consecutive + u.n END"
    " FROM unnest(%s::uuid[], %s::integer[], %s::boolean[]) AS u(webhook_id, n, reset)"
    " WHERE f.webhook_id = u.webhook_id"
)


def _lock_key(data: bytes) -> int:
    """A signed 64-bit advisory-lock key."""
    digest = hashlib.blake2b(data, digest_size=8, person=b"sendstream-wh").digest()
    return int.from_bytes(digest, "big", signed=True)


def _group_lock_key(group: Group) -> int:
    return _lock_key(group[0].bytes + group[1].bytes)


class PostgresWebhookStore(WebhookStore):
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
        from adapters.postgres_connection import SchemaConnection

        self._lock = threading.Lock()
        self._connection = SchemaConnection(conninfo, schema)
        ensure_objects(self._db, schema, _SCHEMA, owner="webhook store")

    @property
    def _db(self) -> psycopg.Connection[Any]:
        return self._connection.db

    @contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            yield cursor

    def _lock_groups(self, cursor: psycopg.Cursor[Any], groups: set[Group]) -> None:
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
                aware(j.occurred_at),
                j.payload,
                j.attempt,
                aware(j.due_at),
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        groups = {(j.webhook_id, j.message_id) for j in jobs}
        added = 0
        with self._write() as cursor:
            if jobs:
                self._lock_groups(cursor, groups)
                cursor.execute(_INSERT_JOBS, columns)
                added = cursor.rowcount
                ordered = sorted(groups)
                cursor.execute(_NORMALISE_HEADS, ([w for w, _ in ordered], [m for _, m in ordered]))
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

    def _claim_in(
        self,
        cursor: psycopg.Cursor[Any],
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID],
    ) -> list[DeliveryJob]:
        until = aware(now) + timedelta(seconds=lease_seconds)
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

    def _record_in(self, cursor: psycopg.Cursor[Any], results: Sequence[AttemptResult]) -> None:
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
            (r[0], r[1]): Pending(r[2], r[3], r[4])
            for r in cursor.execute(
                find + " ORDER BY j.webhook_id, j.event_id FOR UPDATE OF j", key_columns
            ).fetchall()
        }
        missing = [k for k in keys if k not in pending]
        logged: dict[Key, int] = dict.fromkeys(missing, 0)
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
        plan = plan_record(results, pending, logged)

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
            cursor.execute(_NORMALISE_HEADS, ([w for w, _ in ordered], [m for _, m in ordered]))
        changes = sorted(
            [(w, n, True) for w, n in plan.reset.items()]
            + [(w, n, False) for w, n in plan.add.items()]
        )
        webhooks = [w for w, _, _ in changes]
        # Lock every counter row in key order first (creating those missing), so that
        # concurrent ``record`` calls cannot lock two webhooks in opposite orders.
        cursor.execute(_LOCK_FAILURES, (webhooks,))
        cursor.execute(
            _UPDATE_FAILURES,
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
        with self._write() as cursor:
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
            self._connection.close()
