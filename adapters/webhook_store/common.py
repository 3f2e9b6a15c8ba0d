"""What both dialects of the webhook store share: its contract (``WebhookStore`` and the
records it takes and gives) and the bookkeeping of ``record``, worked out in Python the same
way for SQLite and PostgreSQL before each writes it in its own SQL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

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


class WebhookStore(ABC):
    """The store's contract. Each dialect opens its own write transaction (``_write``) and
    claims and records inside one (``_claim_in``, ``_record_in``); the methods that
    combine them are the same for both."""

    @abstractmethod
    def enqueue(self, jobs: Sequence[DeliveryJob], position: int | None) -> int:
        """Add jobs and record the consumer's stream position (if not None) in ONE transaction.

        A job whose (webhook_id, event_id) is already pending OR was already finished is
        ignored (at-least-once redelivery of the stream must not deliver twice). Returns
        how many were new.
        """

    @abstractmethod
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
        if limit <= 0:
            return []
        with self._write() as transaction:
            return self._claim_in(transaction, now, limit, lease_seconds, skip)

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
        if not results and limit <= 0:
            return []
        with self._write() as transaction:
            if results:
                self._record_in(transaction, results)
            if limit <= 0:
                return []
            return self._claim_in(transaction, now, limit, lease_seconds, skip)

    def record(self, results: Sequence[AttemptResult]) -> None:
        """Log attempts, count failures, reschedule or finish jobs, in ONE transaction.

        For each result: append to the attempt log (attempt number = job's attempt + 1);
        if succeeded, the webhook's consecutive failures go back to 0, else up by 1; if
        next_due_at is None the job is finished (removed from pending and remembered, so
        enqueue ignores it later), else attempt += 1 and due_at = next_due_at. A result
        whose job no longer exists (dropped meanwhile) is still logged, numbered after
        the attempts already logged for it.
        """
        if not results:
            return
        with self._write() as transaction:
            self._record_in(transaction, results)

    @abstractmethod
    def consecutive_failures(self, webhook_id: UUID) -> int: ...

    @abstractmethod
    def pending_count(self, webhook_id: UUID | None = None) -> int: ...

    @abstractmethod
    def drop_jobs(self, webhook_id: UUID) -> int:
        """Remove a webhook's pending jobs (webhook deleted or disabled); returns how many."""

    @abstractmethod
    def reset_failures(self, webhook_id: UUID) -> None:
        """Consecutive failures back to 0 (the customer changed the URL or parameters)."""

    @abstractmethod
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

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A write transaction: the dialect's handle to it (a connection, a cursor)."""

    @abstractmethod
    def _claim_in(
        self,
        transaction: Any,
        now: datetime,
        limit: int,
        lease_seconds: float,
        skip: Collection[UUID],
    ) -> list[DeliveryJob]:
        """``claim_due``'s work inside ``transaction``, for a ``limit`` of at least one."""

    @abstractmethod
    def _record_in(self, transaction: Any, results: Sequence[AttemptResult]) -> None:
        """``record``'s work inside ``transaction``, for at least one result."""


Key = tuple[UUID, UUID]  # (webhook_id, event_id)
Group = tuple[UUID, UUID]  # (webhook_id, message_id)


def aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"webhook store times must be timezone-aware, not {value!r}")
    return value


@dataclass
class Pending:
    """What ``record`` needs of a pending job."""

    message_id: UUID
    position: int
    attempt: int


@dataclass
class Plan:
    """What one ``record`` call writes, worked out from the results in order."""

    log: list[tuple[AttemptResult, int]]  # (result, attempt number)
    finished: set[Key]  # pending jobs that finish
    rescheduled: dict[Key, tuple[int, datetime]]  # job → (attempt, due at)
    groups: set[Group]  # groups whose head may have finished
    reset: dict[UUID, int]  # webhook → failures since its last success in this batch
    add: dict[UUID, int]  # webhook → failures to add (no success in this batch)


def plan_record(
    results: Sequence[AttemptResult],
    pending: dict[Key, Pending],
    logged: dict[Key, int],
) -> Plan:
    """Apply ``results`` in order to the jobs they name (``pending``, found ones only) and
    to the attempt numbers already logged for jobs not pending (``logged``)."""
    plan = Plan([], set(), {}, set(), {}, {})
    jobs: dict[Key, Pending | None] = dict(pending)
    for result in results:
        aware(result.attempted_at)
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
                plan.rescheduled[key] = (number, aware(result.next_due_at))
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
