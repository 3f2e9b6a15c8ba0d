"""Contract tests of the webhook delivery store, run against SQLite and PostgreSQL alike.

Time never passes by itself here: every call is given its ``now``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from adapters.webhook_store import (
    MAX_SKIPPED,
    Attempt,
    AttemptResult,
    DeliveryJob,
    PostgresWebhookStore,
    SqliteWebhookStore,
    WebhookStore,
    open_webhook_store,
)

POSTGRES_URL = os.environ.get("SENDSTREAM_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE = 30.0

OpenStore = Callable[[], WebhookStore]


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) after the test."""
    schema = f"t_webhooks_{uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Open stores on one backing database (one SQLite file, or one PostgreSQL schema)."""
    stores: list[WebhookStore] = []
    if request.param == "sqlite":
        path = tmp_path / "webhooks.sqlite"

        def make() -> WebhookStore:
            store = SqliteWebhookStore(path)
            stores.append(store)
            return store
    else:
        schema = request.getfixturevalue("postgres_schema")

        def make() -> WebhookStore:
            store = PostgresWebhookStore(POSTGRES_URL, schema=schema)
            stores.append(store)
            return store

    yield make
    for store in stores:
        store.close()  # closing twice is harmless


@pytest.fixture
def store(open_store: OpenStore) -> WebhookStore:
    return open_store()


def make_job(
    webhook_id: UUID,
    position: int,
    *,
    message_id: UUID | None = None,
    due_at: datetime = T0,
    payload: bytes | None = None,
    event_id: UUID | None = None,
) -> DeliveryJob:
    return DeliveryJob(
        webhook_id=webhook_id,
        event_id=event_id or uuid4(),
        message_id=message_id or uuid4(),
        position=position,
        occurred_at=T0 - seconds(5),
        payload=payload if payload is not None else f"call {position}".encode(),
        attempt=0,
        due_at=due_at,
    )


def result_for(
    job: DeliveryJob,
    at: datetime,
    *,
    succeeded: bool,
    next_due_at: datetime | None = None,
    status_code: int | None = None,
) -> AttemptResult:
    return AttemptResult(
        webhook_id=job.webhook_id,
        event_id=job.event_id,
        attempted_at=at,
        url="https://hooks.example.com/in",
        status_code=status_code if status_code is not None else (200 if succeeded else 503),
        latency_ms=12.5,
        error="" if succeeded else "HTTP 503",
        response_snippet="ok" if succeeded else "busy",
        succeeded=succeeded,
        next_due_at=next_due_at,
    )


def event_ids(jobs: Sequence[DeliveryJob]) -> list[UUID]:
    return [j.event_id for j in jobs]


# --- enqueue and position ----------------------------------------------------------------


def test_a_new_store_is_empty(store: WebhookStore) -> None:
    webhook = uuid4()
    assert store.position() is None
    assert store.pending_count() == 0
    assert store.pending_count(webhook) == 0
    assert store.consecutive_failures(webhook) == 0
    assert store.claim_due(T0, 10, LEASE) == []
    assert store.attempts(webhook, 0, 10) == (0, [])


def test_a_job_round_trips_with_its_types(store: WebhookStore) -> None:
    job = DeliveryJob(
        webhook_id=uuid4(),
        event_id=uuid4(),
        message_id=uuid4(),
        position=2**40,
        occurred_at=datetime(2029, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        payload=bytes(range(256)) * 3,
        attempt=0,
        due_at=T0,
    )
    assert store.enqueue([job], None) == 1

    [claimed] = store.claim_due(T0, 10, LEASE)

    assert claimed == job
    assert isinstance(claimed.webhook_id, UUID)
    assert isinstance(claimed.payload, bytes)
    assert claimed.occurred_at.utcoffset() == timedelta(0)
    assert claimed.due_at.utcoffset() == timedelta(0)


def test_times_in_other_zones_are_the_same_instants(store: WebhookStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    job = make_job(uuid4(), 1, due_at=T0.astimezone(plus_two))
    store.enqueue([job], None)

    assert store.claim_due(T0 - timedelta(microseconds=1), 10, LEASE) == []
    [claimed] = store.claim_due(T0, 10, LEASE)
    assert claimed.due_at == T0
    assert claimed.due_at.tzinfo is not None
    assert claimed.due_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(store: WebhookStore) -> None:
    job = make_job(uuid4(), 1, due_at=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.enqueue([job], None)
    assert store.pending_count() == 0


def test_enqueue_ignores_a_job_already_pending(store: WebhookStore) -> None:
    webhook = uuid4()
    job = make_job(webhook, 1, payload=b"first")
    again = replace(job, payload=b"second", due_at=T0 - seconds(60))

    assert store.enqueue([job], 1) == 1
    assert store.enqueue([again], 1) == 0
    assert store.enqueue([job, make_job(webhook, 2), job], 2) == 1
    assert store.pending_count(webhook) == 2

    claimed = store.claim_due(T0, 10, LEASE)
    assert [j.payload for j in claimed if j.event_id == job.event_id] == [b"first"]
    assert [j.due_at for j in claimed if j.event_id == job.event_id] == [T0]


def test_enqueue_ignores_a_job_already_finished(store: WebhookStore) -> None:
    webhook = uuid4()
    delivered, given_up = make_job(webhook, 1), make_job(webhook, 2)
    store.enqueue([delivered, given_up], 2)
    store.claim_due(T0, 10, LEASE)
    store.record(
        [
            result_for(delivered, T0, succeeded=True),
            result_for(given_up, T0, succeeded=False, next_due_at=None),
        ]
    )
    assert store.pending_count() == 0

    assert store.enqueue([delivered, given_up], 2) == 0
    assert store.enqueue([delivered, make_job(webhook, 3)], 3) == 1

    assert store.pending_count(webhook) == 1
    assert [j.position for j in store.claim_due(T0 + seconds(60), 10, LEASE)] == [3]


def test_position_is_recorded_with_the_jobs(store: WebhookStore) -> None:
    webhook = uuid4()
    assert store.enqueue([], 5) == 0
    assert store.position() == 5
    assert store.enqueue([make_job(webhook, 6)], 9) == 1
    assert store.position() == 9
    assert store.enqueue([make_job(webhook, 10)], None) == 1
    assert store.position() == 9
    assert store.pending_count() == 2


def test_a_failed_enqueue_records_neither_jobs_nor_position(store: WebhookStore) -> None:
    webhook = uuid4()
    store.enqueue([make_job(webhook, 1)], 1)

    good, bad = make_job(webhook, 2), make_job(webhook, 2**70)  # beyond a 64-bit position
    with pytest.raises(Exception):  # noqa: B017 - each database says so its own way
        store.enqueue([good, bad], 7)

    assert store.position() == 1
    assert store.pending_count() == 1
    assert store.enqueue([good], 2) == 1  # nothing of the failed call was kept


# --- claiming ----------------------------------------------------------------------------


def test_claim_takes_due_jobs_earliest_first_up_to_the_limit(store: WebhookStore) -> None:
    webhook = uuid4()
    offsets = [30, -10, 0, 20, -20, 10, 120]
    jobs = [make_job(webhook, i + 1, due_at=T0 + seconds(s)) for i, s in enumerate(offsets)]
    store.enqueue(jobs, 7)
    by_due = sorted(jobs, key=lambda j: j.due_at)
    now = T0 + seconds(30)

    first = store.claim_due(now, 3, LEASE)
    second = store.claim_due(now, 10, LEASE)

    assert event_ids(first) == event_ids(by_due[:3])
    assert event_ids(second) == event_ids(by_due[3:6])  # not the one due at T0 + 120 s
    assert store.claim_due(now, 10, LEASE) == []
    assert store.pending_count(webhook) == 7  # claiming finishes nothing
    store.record([result_for(j, now, succeeded=True) for j in first + second])
    assert event_ids(store.claim_due(T0 + seconds(120), 10, LEASE)) == [by_due[6].event_id]


def test_claim_with_equal_due_times_goes_by_position(store: WebhookStore) -> None:
    webhook = uuid4()
    jobs = [make_job(webhook, p) for p in (30, 10, 20)]
    store.enqueue(jobs, 30)
    assert [j.position for j in store.claim_due(T0, 10, LEASE)] == [10, 20, 30]


def test_a_later_event_of_a_message_waits_for_the_earlier_one(store: WebhookStore) -> None:
    webhook, other_webhook, message = uuid4(), uuid4(), uuid4()
    earlier = make_job(webhook, 10, message_id=message, due_at=T0 + seconds(60))
    later = make_job(webhook, 11, message_id=message, due_at=T0)
    same_message_elsewhere = make_job(other_webhook, 11, message_id=message, due_at=T0)
    unrelated = make_job(webhook, 12, due_at=T0)
    store.enqueue([earlier, later, same_message_elsewhere, unrelated], 12)

    # The earlier event is not due yet, and the later one waits even so; other webhooks
    # and other messages do not.
    now_claimed = store.claim_due(T0, 10, LEASE)
    assert set(event_ids(now_claimed)) == {same_message_elsewhere.event_id, unrelated.event_id}
    store.record([result_for(j, T0, succeeded=True) for j in now_claimed])

    assert event_ids(store.claim_due(T0 + seconds(60), 10, LEASE)) == [earlier.event_id]
    # Still in flight (claimed, and then failed and rescheduled): the later one waits on.
    assert store.claim_due(T0 + seconds(61), 10, LEASE) == []
    store.record(
        [result_for(earlier, T0 + seconds(61), succeeded=False, next_due_at=T0 + seconds(200))]
    )
    assert store.claim_due(T0 + seconds(100), 10, LEASE) == []

    [retry] = store.claim_due(T0 + seconds(200), 10, LEASE)
    assert retry.event_id == earlier.event_id
    store.record([result_for(earlier, T0 + seconds(201), succeeded=True)])

    assert event_ids(store.claim_due(T0 + seconds(201), 10, LEASE)) == [later.event_id]


def test_a_given_up_event_releases_the_next_one(store: WebhookStore) -> None:
    webhook, message = uuid4(), uuid4()
    jobs = [make_job(webhook, p, message_id=message) for p in (1, 2, 3)]
    store.enqueue(jobs, 3)
    for job in jobs:
        assert event_ids(store.claim_due(T0, 10, LEASE)) == [job.event_id]
        store.record([result_for(job, T0, succeeded=False, next_due_at=None)])
    assert store.claim_due(T0, 10, LEASE) == []
    assert store.pending_count() == 0


def test_message_order_holds_when_events_arrive_out_of_order(store: WebhookStore) -> None:
    webhook, message_a, message_b = uuid4(), uuid4(), uuid4()
    a2 = make_job(webhook, 2, message_id=message_a)
    a1 = make_job(webhook, 1, message_id=message_a)
    b5, b4 = make_job(webhook, 5, message_id=message_b), make_job(webhook, 4, message_id=message_b)
    store.enqueue([a2], 2)
    store.enqueue([a1], 2)  # a separate call
    store.enqueue([b5, b4], 5)  # one call

    claimed = store.claim_due(T0, 10, LEASE)
    assert event_ids(claimed) == [a1.event_id, b4.event_id]
    store.record([result_for(j, T0, succeeded=True) for j in claimed])
    assert event_ids(store.claim_due(T0, 10, LEASE)) == [a2.event_id, b5.event_id]


def test_an_ignored_duplicate_does_not_hold_back_its_message(store: WebhookStore) -> None:
    webhook, message = uuid4(), uuid4()
    first, second = (
        make_job(webhook, 1, message_id=message),
        make_job(webhook, 2, message_id=message),
    )
    store.enqueue([first], 1)
    store.claim_due(T0, 10, LEASE)
    store.record([result_for(first, T0, succeeded=True)])
    store.enqueue([second], 2)

    assert store.enqueue([first], 2) == 0  # redelivered, below a pending job: still ignored
    assert event_ids(store.claim_due(T0, 10, LEASE)) == [second.event_id]


def test_a_claimed_job_is_leased(store: WebhookStore) -> None:
    job = make_job(uuid4(), 1, due_at=T0 - seconds(10))
    store.enqueue([job], 1)

    assert store.claim_due(T0, 10, LEASE) == [job]  # as it was: attempt 0, original due time
    assert store.claim_due(T0, 10, LEASE) == []
    assert store.claim_due(T0 + seconds(LEASE - 0.001), 10, LEASE) == []

    # The claimer died: after the lease the job is due again, attempt count unchanged.
    [again] = store.claim_due(T0 + seconds(LEASE), 10, LEASE)
    assert again.attempt == 0
    assert again.payload == job.payload
    assert again.due_at == T0 + seconds(LEASE)  # the due time the first lease set
    assert store.claim_due(T0 + seconds(LEASE), 10, LEASE) == []


# --- recording attempts ------------------------------------------------------------------


def test_a_success_finishes_the_job_and_resets_failures(store: WebhookStore) -> None:
    webhook = uuid4()
    failing, succeeding = make_job(webhook, 1), make_job(webhook, 2)
    store.enqueue([failing, succeeding], 2)
    store.claim_due(T0, 10, LEASE)
    store.record([result_for(failing, T0, succeeded=False, next_due_at=T0 + seconds(60))])
    assert store.consecutive_failures(webhook) == 1

    store.record([result_for(succeeding, T0 + seconds(1), succeeded=True)])

    assert store.consecutive_failures(webhook) == 0
    assert store.pending_count(webhook) == 1
    assert event_ids(store.claim_due(T0 + seconds(600), 10, LEASE)) == [failing.event_id]


def test_failures_reschedule_count_up_and_give_up(store: WebhookStore) -> None:
    webhook = uuid4()
    job = make_job(webhook, 1)
    store.enqueue([job], 1)

    [claimed] = store.claim_due(T0, 10, LEASE)
    assert claimed.attempt == 0
    store.record([result_for(job, T0 + seconds(1), succeeded=False, next_due_at=T0 + seconds(60))])
    assert store.consecutive_failures(webhook) == 1
    assert store.pending_count(webhook) == 1
    assert store.claim_due(T0 + seconds(59), 10, LEASE) == []  # the retry time, not the lease

    [retry] = store.claim_due(T0 + seconds(60), 10, LEASE)
    assert (retry.attempt, retry.due_at, retry.payload) == (1, T0 + seconds(60), job.payload)
    store.record(
        [result_for(job, T0 + seconds(61), succeeded=False, next_due_at=T0 + seconds(300))]
    )
    assert store.consecutive_failures(webhook) == 2

    [last] = store.claim_due(T0 + seconds(300), 10, LEASE)
    assert last.attempt == 2
    store.record([result_for(job, T0 + seconds(301), succeeded=False, next_due_at=None)])

    assert store.consecutive_failures(webhook) == 3  # giving up is a failure too
    assert store.pending_count(webhook) == 0
    assert store.claim_due(T0 + seconds(10_000), 10, LEASE) == []
    assert store.enqueue([job], 1) == 0
    total, log = store.attempts(webhook, 0, 10)
    assert total == 3
    assert [(a.attempt, a.succeeded) for a in log] == [(3, False), (2, False), (1, False)]


def test_failures_in_one_batch_count_in_order(store: WebhookStore) -> None:
    webhook, other = uuid4(), uuid4()
    jobs = [make_job(webhook, p) for p in range(1, 6)]
    elsewhere = make_job(other, 6)
    store.enqueue([*jobs, elsewhere], 6)
    store.claim_due(T0, 10, LEASE)
    retry = T0 + seconds(60)

    store.record([result_for(j, T0, succeeded=False, next_due_at=retry) for j in jobs[:2]])
    assert store.consecutive_failures(webhook) == 2

    store.record(
        [
            result_for(jobs[2], T0, succeeded=False, next_due_at=retry),
            result_for(elsewhere, T0, succeeded=False, next_due_at=retry),
            result_for(jobs[3], T0, succeeded=True),
            result_for(jobs[4], T0, succeeded=False, next_due_at=retry),
        ]
    )
    assert store.consecutive_failures(webhook) == 1  # one failure since the success
    assert store.consecutive_failures(other) == 1

    store.record([result_for(jobs[4], T0 + seconds(60), succeeded=False, next_due_at=retry)])
    assert store.consecutive_failures(webhook) == 2


def test_two_results_for_one_job_in_one_batch(store: WebhookStore) -> None:
    # A lease ran out and two workers tried the same job: both attempts count.
    webhook = uuid4()
    job = make_job(webhook, 1)
    store.enqueue([job], 1)
    store.claim_due(T0, 10, LEASE)
    store.record(
        [
            result_for(job, T0, succeeded=False, next_due_at=T0 + seconds(60)),
            result_for(job, T0 + seconds(1), succeeded=True),
        ]
    )
    assert store.pending_count() == 0
    assert store.consecutive_failures(webhook) == 0
    _, log = store.attempts(webhook, 0, 10)
    assert [(a.attempt, a.succeeded) for a in log] == [(2, True), (1, False)]

    # A straggler's result after the job finished is logged after them.
    store.record([result_for(job, T0 + seconds(2), succeeded=True)])
    _, log = store.attempts(webhook, 0, 10)
    assert [a.attempt for a in log] == [3, 2, 1]
    assert store.pending_count() == 0


def test_a_result_for_a_dropped_job_is_still_logged(store: WebhookStore) -> None:
    webhook = uuid4()
    job = make_job(webhook, 1)
    store.enqueue([job], 1)
    store.claim_due(T0, 10, LEASE)
    store.record([result_for(job, T0, succeeded=False, next_due_at=T0 + seconds(60))])
    store.claim_due(T0 + seconds(60), 10, LEASE)
    assert store.drop_jobs(webhook) == 1

    store.record(
        [result_for(job, T0 + seconds(61), succeeded=False, next_due_at=T0 + seconds(120))]
    )

    assert store.pending_count() == 0  # not brought back
    assert store.claim_due(T0 + seconds(1000), 10, LEASE) == []
    assert store.consecutive_failures(webhook) == 2
    total, log = store.attempts(webhook, 0, 10)
    assert total == 2
    assert [a.attempt for a in log] == [2, 1]


def test_drop_jobs_removes_only_that_webhooks_pending_jobs(store: WebhookStore) -> None:
    dropped, kept, message = uuid4(), uuid4(), uuid4()
    store.enqueue(
        [
            make_job(dropped, 1, message_id=message),
            make_job(dropped, 2, message_id=message),
            make_job(dropped, 3),
            make_job(kept, 4, message_id=message),
        ],
        4,
    )
    store.claim_due(T0, 1, LEASE)  # claimed jobs go too

    assert store.drop_jobs(dropped) == 3
    assert store.drop_jobs(dropped) == 0
    assert store.pending_count(dropped) == 0
    assert store.pending_count(kept) == 1
    assert [j.webhook_id for j in store.claim_due(T0, 10, LEASE)] == [kept]


def test_reset_failures(store: WebhookStore) -> None:
    webhook, other = uuid4(), uuid4()
    jobs = [make_job(webhook, 1), make_job(other, 2)]
    store.enqueue(jobs, 2)
    store.claim_due(T0, 10, LEASE)
    store.record([result_for(j, T0, succeeded=False, next_due_at=T0 + seconds(9)) for j in jobs])

    store.reset_failures(webhook)
    store.reset_failures(uuid4())  # unknown: nothing to do

    assert store.consecutive_failures(webhook) == 0
    assert store.consecutive_failures(other) == 1
    assert store.pending_count() == 2  # jobs and their log stay
    assert store.attempts(webhook, 0, 10)[0] == 1
    store.claim_due(T0 + seconds(9), 10, LEASE)
    store.record([result_for(jobs[0], T0 + seconds(9), succeeded=False, next_due_at=None)])
    assert store.consecutive_failures(webhook) == 1


# --- the attempt log ---------------------------------------------------------------------


def test_attempts_are_read_newest_first_with_totals_and_filters(store: WebhookStore) -> None:
    webhook, other = uuid4(), uuid4()
    jobs = [make_job(webhook, p) for p in range(1, 8)]
    elsewhere = make_job(other, 8)
    store.enqueue([*jobs, elsewhere], 8)
    store.claim_due(T0, 10, LEASE)
    # Out of time order across calls, with two pairs logged at the same instant.
    times = [10, 30, 20, 20, 50, 40, 40]
    outcomes = [True, False, True, False, False, True, True]
    store.record(
        [
            result_for(j, T0 + seconds(t), succeeded=ok, next_due_at=None if ok else T0)
            for j, t, ok in zip(jobs[:4], times, outcomes, strict=False)
        ]
    )
    store.record(
        [
            result_for(j, T0 + seconds(t), succeeded=ok, next_due_at=None if ok else T0)
            for j, t, ok in zip(jobs[4:], times[4:], outcomes[4:], strict=True)
        ]
    )
    store.record([result_for(elsewhere, T0 + seconds(99), succeeded=True)])

    # Newest first; at equal times the one logged later first.
    newest_first = [jobs[i].event_id for i in (4, 6, 5, 1, 3, 2, 0)]
    total, log = store.attempts(webhook, 0, 100)
    assert total == 7
    assert [a.event_id for a in log] == newest_first
    assert all(a.webhook_id == webhook for a in log)

    assert store.attempts(webhook, 0, 3) == (7, log[:3])
    assert store.attempts(webhook, 3, 3) == (7, log[3:6])
    assert store.attempts(webhook, 6, 3) == (7, log[6:])
    assert store.attempts(webhook, 7, 3) == (7, [])
    assert store.attempts(webhook, 0, 0) == (7, [])

    total, successes = store.attempts(webhook, 0, 100, succeeded=True)
    assert total == 4
    assert [a.event_id for a in successes] == [jobs[i].event_id for i in (6, 5, 2, 0)]
    assert store.attempts(webhook, 1, 2, succeeded=True) == (4, successes[1:3])

    total, failures = store.attempts(webhook, 0, 100, succeeded=False)
    assert total == 3
    assert [a.event_id for a in failures] == [jobs[i].event_id for i in (4, 1, 3)]
    assert not any(a.succeeded for a in failures)

    assert store.attempts(other, 0, 100)[0] == 1
    assert store.attempts(uuid4(), 0, 100) == (0, [])


def test_an_attempt_reads_back_as_recorded(store: WebhookStore) -> None:
    webhook = uuid4()
    job = make_job(webhook, 1)
    store.enqueue([job], 1)
    store.claim_due(T0, 10, LEASE)
    at = T0 + timedelta(seconds=3, microseconds=7)
    store.record(
        [
            AttemptResult(
                webhook_id=webhook,
                event_id=job.event_id,
                attempted_at=at,
                url="https://hooks.example.com/in?a=1&b=ü",
                status_code=0,
                latency_ms=10_000.25,
                error="timed out after 10 s",
                response_snippet="",
                succeeded=False,
                next_due_at=T0 + seconds(60),
            )
        ]
    )

    _, [attempt] = store.attempts(webhook, 0, 10)

    assert attempt == Attempt(
        webhook_id=webhook,
        event_id=job.event_id,
        attempt=1,
        attempted_at=at,
        url="https://hooks.example.com/in?a=1&b=ü",
        status_code=0,
        latency_ms=10_000.25,
        error="timed out after 10 s",
        response_snippet="",
        succeeded=False,
    )
    assert isinstance(attempt.event_id, UUID)
    assert attempt.attempted_at.utcoffset() == timedelta(0)


# --- finished-job memory ----------------------------------------------------------------


def test_finished_jobs_stay_remembered_after_reopening(open_store: OpenStore) -> None:
    first = open_store()
    webhook = uuid4()
    jobs = [make_job(webhook, p) for p in (1, 2, 3)]
    first.enqueue(jobs, 3)
    first.claim_due(T0, 10, LEASE)
    first.record(
        [
            result_for(jobs[0], T0, succeeded=True),
            result_for(jobs[1], T0, succeeded=False, next_due_at=None),
            result_for(jobs[2], T0, succeeded=False, next_due_at=T0 + seconds(60)),
        ]
    )
    first.close()

    reopened = open_store()
    assert reopened.position() == 3
    assert reopened.enqueue(jobs, 3) == 0
    assert reopened.pending_count(webhook) == 1
    assert reopened.consecutive_failures(webhook) == 2
    [retry] = reopened.claim_due(T0 + seconds(60), 10, LEASE)
    assert (retry.event_id, retry.attempt) == (jobs[2].event_id, 1)


def test_a_dropped_job_counts_as_finished_only_if_its_last_result_says_so(
    store: WebhookStore,
) -> None:
    webhook = uuid4()
    retrying, final = make_job(webhook, 1), make_job(webhook, 2)
    store.enqueue([retrying, final], 2)
    store.claim_due(T0, 10, LEASE)
    store.drop_jobs(webhook)
    store.record(
        [
            result_for(retrying, T0, succeeded=False, next_due_at=T0 + seconds(60)),
            result_for(final, T0, succeeded=True),
        ]
    )

    assert store.enqueue([retrying, final], 2) == 1
    assert event_ids(store.claim_due(T0, 10, LEASE)) == [retrying.event_id]


# --- sharing and scale -------------------------------------------------------------------


def test_two_store_objects_see_each_others_writes(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    webhook = uuid4()
    jobs = [make_job(webhook, p) for p in (1, 2)]

    assert first.enqueue(jobs, 2) == 2
    assert second.position() == 2
    assert second.pending_count(webhook) == 2
    assert second.enqueue(jobs, 2) == 0

    claimed = second.claim_due(T0, 1, LEASE)
    assert event_ids(claimed) == [jobs[0].event_id]
    assert event_ids(first.claim_due(T0, 10, LEASE)) == [jobs[1].event_id]  # not the leased one
    assert first.claim_due(T0, 10, LEASE) == []

    second.record([result_for(jobs[0], T0, succeeded=False, next_due_at=None)])
    assert first.consecutive_failures(webhook) == 1
    assert first.pending_count(webhook) == 1
    assert first.attempts(webhook, 0, 10)[0] == 1
    assert first.enqueue([jobs[0]], 2) == 0

    first.drop_jobs(webhook)
    first.reset_failures(webhook)
    assert second.pending_count() == 0
    assert second.consecutive_failures(webhook) == 0


def test_a_batch_of_2000_jobs_round_trips(store: WebhookStore) -> None:
    webhooks = [uuid4() for _ in range(20)]
    messages = [uuid4() for _ in range(400)]  # five events a message, per webhook in order
    jobs = [
        make_job(webhooks[i % 20], i + 1, message_id=messages[i % 400], due_at=T0)
        for i in range(2000)
    ]
    started = time.perf_counter()
    for start in range(0, 2000, 500):
        assert store.enqueue(jobs[start : start + 500], start + 500) == 500
    assert store.pending_count() == 2000

    delivered: list[DeliveryJob] = []
    now = T0
    while batch := store.claim_due(now, 500, LEASE):
        delivered += batch
        store.record([result_for(j, now, succeeded=True) for j in batch])
        now += seconds(1)
    elapsed = time.perf_counter() - started

    assert sorted(j.position for j in delivered) == list(range(1, 2001))
    # Each message's events went out in stream order.
    order: dict[tuple[UUID, UUID], list[int]] = {}
    for j in delivered:
        order.setdefault((j.webhook_id, j.message_id), []).append(j.position)
    assert all(positions == sorted(positions) for positions in order.values())
    assert store.pending_count() == 0
    assert sum(store.attempts(w, 0, 1)[0] for w in webhooks) == 2000
    assert store.attempts(webhooks[0], 0, 1000, succeeded=False) == (0, [])
    assert store.enqueue(jobs, 2000) == 0
    print(f"{type(store).__name__}: 2000 jobs round trip in {elapsed:.3f} s")


# --- opening by URL ----------------------------------------------------------------------


def test_open_webhook_store_picks_sqlite_for_a_path(tmp_path: Path) -> None:
    for target in (tmp_path / "a" / "webhooks.sqlite", str(tmp_path / "b.sqlite")):
        store = open_webhook_store(target)
        try:
            assert isinstance(store, SqliteWebhookStore)
            store.enqueue([], 3)
            assert store.position() == 3
        finally:
            store.close()
    assert (tmp_path / "a" / "webhooks.sqlite").exists()


@pytest.mark.postgres
def test_open_webhook_store_picks_postgres_for_a_url(postgres_schema: str) -> None:
    url = POSTGRES_URL.replace("postgresql://", "postgres://", 1)
    store = open_webhook_store(f"{url}?schema={postgres_schema}")
    check = PostgresWebhookStore(POSTGRES_URL, schema=postgres_schema)
    try:
        assert isinstance(store, PostgresWebhookStore)
        store.enqueue([make_job(uuid4(), 1)], 1)
        assert check.position() == 1
        assert check.pending_count() == 1
    finally:
        store.close()
        check.close()


# --- claiming around skipped webhooks ----------------------------------------------------


def test_claim_leaves_the_jobs_of_skipped_webhooks_pending(store: WebhookStore) -> None:
    skipped, also_skipped, other, message = uuid4(), uuid4(), uuid4(), uuid4()
    # Ten due jobs of the skipped webhook, all due before any of the other webhook's.
    early = [make_job(skipped, p, due_at=T0 - seconds(100 - p)) for p in range(1, 11)]
    # A message of the skipped webhook (its later job waits behind its head as ever) and
    # the same message at the other webhook, which is not held back by the skip.
    skipped_head = make_job(skipped, 11, message_id=message, due_at=T0 - seconds(50))
    skipped_next = make_job(skipped, 12, message_id=message, due_at=T0 - seconds(50))
    elsewhere = make_job(also_skipped, 13, due_at=T0 - seconds(200))
    # The other webhook's: two at T0 (in position order), one earlier, one not yet due.
    later, first, earliest = (
        make_job(other, 22, due_at=T0),
        make_job(other, 21, due_at=T0),
        make_job(other, 23, message_id=message, due_at=T0 - seconds(1)),
    )
    not_due = make_job(other, 20, due_at=T0 + seconds(1))
    store.enqueue([*early, skipped_head, skipped_next, elsewhere, later, first, earliest], 23)
    store.enqueue([not_due], 23)

    claimed = store.claim_due(T0, 2, LEASE, skip=[skipped, also_skipped])
    assert event_ids(claimed) == [earliest.event_id, first.event_id]  # the limit: others only
    assert event_ids(store.claim_due(T0, 10, LEASE, skip={skipped, also_skipped})) == [
        later.event_id
    ]
    assert store.claim_due(T0, 10, LEASE, skip=(skipped, also_skipped)) == []

    # Skipped means untouched: still pending, due when they were, claimable without skip.
    assert store.pending_count(skipped) == 12
    assert store.pending_count(also_skipped) == 1
    assert event_ids(store.claim_due(T0, 100, LEASE, skip=[skipped])) == [elsewhere.event_id]
    unskipped = store.claim_due(T0, 100, LEASE)
    assert unskipped == [*early, skipped_head]  # as enqueued: attempt 0, original due times
    store.record([result_for(skipped_head, T0, succeeded=True)])
    assert store.claim_due(T0, 100, LEASE, skip=[skipped]) == []
    assert event_ids(store.claim_due(T0, 100, LEASE)) == [skipped_next.event_id]
    assert event_ids(store.claim_due(T0 + seconds(1), 100, LEASE, skip=[skipped])) == [
        not_due.event_id
    ]


def test_an_empty_skip_or_one_of_webhooks_with_nothing_pending_changes_nothing(
    open_store: OpenStore,
) -> None:
    store = open_store()
    webhooks = [uuid4() for _ in range(3)]
    offsets = [5, -3, 0, 0, -7, 2, -1, 0, 9]
    jobs = [
        make_job(webhooks[i % 3], 100 - i, due_at=T0 + seconds(s)) for i, s in enumerate(offsets)
    ]
    store.enqueue(jobs, 100)
    by_due = sorted((j for j in jobs if j.due_at <= T0), key=lambda j: (j.due_at, j.position))
    idle = uuid4()  # a webhook with nothing pending, ever

    assert event_ids(store.claim_due(T0, 2, LEASE)) == event_ids(by_due[:2])
    assert event_ids(store.claim_due(T0, 2, LEASE, skip=[])) == event_ids(by_due[2:4])
    assert event_ids(store.claim_due(T0, 1, LEASE, skip=frozenset())) == event_ids(by_due[4:5])
    assert event_ids(store.claim_due(T0, 10, LEASE, skip=[idle])) == event_ids(by_due[5:])
    assert store.claim_due(T0, 10, LEASE, skip=[idle]) == []
    assert store.claim_due(T0, 0, LEASE, skip=[webhooks[0]]) == []
    assert store.pending_count() == len(jobs)
    assert store.pending_count(idle) == 0


def test_claim_honours_the_first_max_skipped_webhooks_and_claims_the_rest(
    store: WebhookStore,
) -> None:
    skip = [UUID(int=i + 1) for i in range(MAX_SKIPPED + 500)]
    honoured = [skip[0], skip[MAX_SKIPPED // 2], skip[MAX_SKIPPED - 1]]
    beyond = [skip[MAX_SKIPPED], skip[-1]]
    other = uuid4()
    jobs = {w: make_job(w, p) for p, w in enumerate([*honoured, *beyond, other], start=1)}
    store.enqueue(list(jobs.values()), len(jobs))

    claimed = store.claim_due(T0, 100, LEASE, skip=skip)

    assert [j.webhook_id for j in claimed] == [*beyond, other]
    for webhook in honoured:
        assert store.pending_count(webhook) == 1
    assert [j.webhook_id for j in store.claim_due(T0, 100, LEASE, skip=skip)] == []
    assert store.claim_due(T0, 100, LEASE) == [jobs[w] for w in honoured]


def test_claim_with_a_huge_skip_list_binds_no_more_than_max_skipped(store: WebhookStore) -> None:
    # Beyond any SQLite build's bound on parameters (32,766 by default, 250,000 in some
    # distributions' builds) and PostgreSQL's 65,535 per statement.
    skip = [UUID(int=i + 1) for i in range(300_000)]
    honoured, beyond = make_job(skip[0], 1), make_job(skip[-1], 2)
    store.enqueue([honoured, beyond], 2)

    assert store.claim_due(T0, 10, LEASE, skip=skip) == [beyond]
    assert store.claim_due(T0, 10, LEASE, skip=set(skip[:MAX_SKIPPED])) == []
    assert store.claim_due(T0, 10, LEASE) == [honoured]


# --- batches larger than one statement's worth of lookups --------------------------------


def group_key(job: DeliveryJob) -> tuple[UUID, UUID]:
    return (job.webhook_id, job.message_id)


def test_enqueue_of_1300_jobs_in_one_call_keeps_each_message_in_order(
    store: WebhookStore,
) -> None:
    rng = random.Random(1300)
    webhooks = [uuid4() for _ in range(4)]
    # 1,000 (webhook, message) groups: 100 of three jobs, 200 of two, 700 of one, their
    # positions interleaved across the stream; each group's jobs listed lowest first.
    pool = list(range(1, 1401))
    rng.shuffle(pool)
    groups: list[list[DeliveryJob]] = []
    for size, count in ((3, 100), (2, 200), (1, 700)):
        for _ in range(count):
            webhook, message = rng.choice(webhooks), uuid4()
            taken = sorted(pool.pop() for _ in range(size))
            groups.append([make_job(webhook, p, message_id=message) for p in taken])
    triples, pairs = groups[:100], groups[100:300]
    early = [g[1] for g in triples[:40]]  # a middle job, before its lower one arrives
    late = [g[0] for g in triples[40:70]] + [g[0] for g in pairs[:30]]  # lowest, last
    later_ids = {j.event_id for j in early + late}
    big = [j for g in groups for j in g if j.event_id not in later_ids]
    rng.shuffle(big)  # a message's jobs out of position order within the call
    duplicates = [rng.choice(big) for _ in range(5)]

    assert store.enqueue(early, 100) == 40
    assert store.enqueue([*big[:700], *early, *duplicates, *big[700:]], 1400) == len(big) == 1300
    assert store.pending_count() == 1340
    assert sum(store.pending_count(w) for w in webhooks) == 1340

    # Only the lowest pending position of each group is claimable.
    late_ids = {j.event_id for j in late}
    heads = {min(j.position for j in g if j.event_id not in late_ids) for g in groups}
    claimed = store.claim_due(T0, 5000, LEASE)
    assert [j.position for j in claimed] == sorted(heads)

    # The late jobs sit below the (leased) heads of their groups and take their place.
    assert store.enqueue(late, 1400) == 60
    assert store.claim_due(T0 + seconds(LEASE - 1), 5000, LEASE) == sorted(
        late, key=lambda j: j.position
    )
    # Once the leases run out, the other groups' heads come again; the demoted ones wait.
    late_groups = {group_key(j) for j in late}
    again = store.claim_due(T0 + seconds(LEASE), 5000, LEASE)
    assert [j.position for j in again] == sorted(
        j.position for j in claimed if group_key(j) not in late_groups
    )

    # Delivering the heads hands each group on to its next job, in position order.
    delivered: dict[tuple[UUID, UUID], list[int]] = {}
    in_flight = sorted(late, key=lambda j: j.position) + again
    now = T0 + seconds(LEASE)
    rounds = 0
    while in_flight:
        store.record([result_for(j, now, succeeded=True) for j in in_flight])
        for j in in_flight:
            delivered.setdefault(group_key(j), []).append(j.position)
        expected = {
            g[len(delivered.get(group_key(g[0]), []))].event_id
            for g in groups
            if len(delivered.get(group_key(g[0]), [])) < len(g)
        }
        in_flight = store.claim_due(now, 5000, LEASE)
        assert {j.event_id for j in in_flight} == expected
        assert in_flight == sorted(in_flight, key=lambda j: (j.due_at, j.position))
        assert all(j.attempt == 0 for j in in_flight)
        rounds += 1
    assert rounds == 3

    assert delivered == {group_key(g[0]): [j.position for j in g] for g in groups}
    assert store.pending_count() == 0
    assert sum(store.attempts(w, 0, 1)[0] for w in webhooks) == 1400
    all_jobs = [j for g in groups for j in g]
    assert store.enqueue(all_jobs, 1400) == 0  # redelivered: nothing goes out twice
    assert store.claim_due(now + seconds(3600), 5000, LEASE) == []


def test_record_of_1100_mixed_results_in_one_call(store: WebhookStore) -> None:
    rng = random.Random(1100)
    a, b, c, d = (uuid4() for _ in range(4))  # d's jobs are dropped before their results
    positions = iter(range(1, 10_000))

    def jobs_of(webhook: UUID, count: int) -> list[DeliveryJob]:
        return [make_job(webhook, next(positions)) for _ in range(count)]

    a_jobs, b_jobs, c_jobs, d_jobs = (
        jobs_of(a, 460),
        jobs_of(b, 300),
        jobs_of(c, 150),
        jobs_of(d, 120),
    )
    b_pairs = [
        [make_job(b, p, message_id=m) for p in (next(positions), next(positions))]
        for m in (uuid4() for _ in range(50))
    ]
    everything = [*a_jobs, *b_jobs, *(j for pair in b_pairs for j in pair), *c_jobs, *d_jobs]
    assert store.enqueue(everything, 2000) == 1130

    # Earlier attempts: a[:100] and every c failed once, d[:40] twice and d[40:100] once.
    retry_at = T0 + seconds(10)
    earlier = [
        *(result_for(j, T0, succeeded=False, next_due_at=retry_at) for j in a_jobs[:100]),
        *(result_for(j, T0, succeeded=False, next_due_at=retry_at) for j in c_jobs),
        *(result_for(j, T0, succeeded=False, next_due_at=retry_at) for j in d_jobs[:100]),
        *(
            result_for(j, T0 + seconds(1), succeeded=False, next_due_at=retry_at)
            for j in d_jobs[:40]
        ),
    ]
    store.record(earlier)
    assert store.drop_jobs(d) == 120
    assert [store.consecutive_failures(w) for w in (a, b, c, d)] == [100, 0, 150, 140]

    retry, later_retry, given_up = T0 + seconds(1000), T0 + seconds(2000), None
    ok: dict[str, bool] = {"success": True, "failure": False}

    def outcome(job: DeliveryJob, kind: str, due: datetime | None = None) -> AttemptResult:
        return result_for(job, T0, succeeded=ok[kind], next_due_at=due)

    # (result, the attempt number it must be logged with)
    middle: list[tuple[AttemptResult, int]] = [
        *((outcome(j, "success"), 2) for j in a_jobs[1:50]),
        *((outcome(j, "failure", retry), 2) for j in a_jobs[51:100]),
        *((outcome(j, "success"), 1) for j in a_jobs[100:250]),
        *((outcome(j, "failure", retry), 1) for j in a_jobs[250:350]),
        *((outcome(j, "failure", given_up), 1) for j in a_jobs[351:400]),
        *((outcome(j, "success"), 1) for j in a_jobs[400:460]),
        *((outcome(j, "success"), 1) for j in b_jobs[:150]),
        *((outcome(j, "failure", retry), 1) for j in b_jobs[150:250]),
        *((outcome(j, "failure", given_up), 1) for j in b_jobs[250:300]),
        *((outcome(head, "success"), 1) for head, _ in b_pairs[:20]),
        *((outcome(head, "failure", given_up), 1) for head, _ in b_pairs[20:35]),
        *((outcome(head, "failure", retry), 1) for head, _ in b_pairs[35:50]),
        *((outcome(j, "failure", retry), 2) for j in c_jobs[:100]),
        *((outcome(j, "failure", given_up), 2) for j in c_jobs[100:]),
        *((outcome(j, "failure", retry), 3) for j in d_jobs[:40]),
        *((outcome(j, "failure", given_up), 2) for j in d_jobs[40:100]),
        *((outcome(j, "failure", retry), 1) for j in d_jobs[100:]),
    ]
    rng.shuffle(middle)
    # Second results for jobs already in the batch, after their first (order is kept).
    seconds_results: list[tuple[AttemptResult, int]] = [
        (outcome(a_jobs[100], "success"), 2),  # a straggler after the success: logged only
        (outcome(a_jobs[250], "failure", later_retry), 2),  # rescheduled twice
        (outcome(a_jobs[251], "success"), 2),  # retried and then delivered
        (outcome(a_jobs[352], "failure", retry), 2),  # given up stays given up
        *((outcome(tail, "success"), 1) for _, tail in b_pairs[:5]),  # the whole group done
        *((outcome(tail, "success"), 1) for _, tail in b_pairs[35:40]),  # a tail before its head
        *((outcome(j, "failure", given_up), 4) for j in d_jobs[:10]),  # dropped: numbered on
    ]
    # The last result of b is a success; of a, a success then two failures.
    ending: list[tuple[AttemptResult, int]] = [
        (outcome(a_jobs[0], "success"), 2),
        (outcome(b_jobs[0], "success"), 2),  # b_jobs[0] succeeded earlier in this batch
        (outcome(a_jobs[50], "failure", retry), 2),
        (outcome(a_jobs[350], "failure", given_up), 1),
    ]
    batch = [*middle, *seconds_results, *ending]
    batch = [(replace(r, attempted_at=T0 + seconds(100 + i)), n) for i, (r, n) in enumerate(batch)]
    assert len(batch) >= 1100

    store.record([r for r, _ in batch])

    # The attempt log: every result, numbered on from what each job had, newest first.
    for webhook in (a, b, c, d):
        before = [r for r in earlier if r.webhook_id == webhook]
        numbers: dict[UUID, int] = {}
        expected = []
        for r in before:
            numbers[r.event_id] = numbers.get(r.event_id, 0) + 1
            expected.append((r.event_id, numbers[r.event_id], False, r.attempted_at))
        expected += [
            (r.event_id, n, r.succeeded, r.attempted_at)
            for r, n in batch
            if r.webhook_id == webhook
        ]
        expected.reverse()
        total, log = store.attempts(webhook, 0, 10_000)
        assert total == len(expected)
        assert [(x.event_id, x.attempt, x.succeeded, x.attempted_at) for x in log] == expected
    assert store.attempts(a, 0, 10_000, succeeded=True)[0] == 49 + 150 + 60 + 3

    assert [store.consecutive_failures(w) for w in (a, b, c, d)] == [2, 0, 300, 140 + 130]
    # a: 50 failed twice (50:100) + 99 (250:350 less the delivered 251); b: 100 singles,
    # 15 + 15 tails released, 5 retried heads, 10 whole pairs; c: 100; d: dropped.
    assert [store.pending_count(w) for w in (a, b, c, d)] == [50 + 99, 100 + 30 + 5 + 20, 100, 0]

    # The heads that finished handed their groups on; the tails that finished did not.
    # (Leased for longer than the test looks ahead, so that claims do not come back.)
    hold = 100_000.0
    released = [tail for _, tail in b_pairs[5:35]]
    assert store.claim_due(T0 + seconds(999), 5000, hold) == released
    retried = store.claim_due(retry, 5000, hold)
    expected_retries = {
        **{j.event_id: 2 for j in a_jobs[50:100]},
        **{j.event_id: 1 for j in a_jobs[252:350]},
        **{j.event_id: 1 for j in b_jobs[150:250]},
        **{head.event_id: 1 for head, _ in b_pairs[35:50]},
        **{j.event_id: 2 for j in c_jobs[:100]},
    }
    assert {j.event_id: j.attempt for j in retried} == expected_retries
    assert all(j.due_at == retry for j in retried)
    assert [j.position for j in retried] == sorted(j.position for j in retried)
    assert store.claim_due(later_retry - seconds(1), 5000, hold) == []
    [twice] = store.claim_due(later_retry, 5000, hold)
    assert (twice.event_id, twice.attempt, twice.due_at) == (a_jobs[250].event_id, 2, later_retry)

    # Redelivered by the stream: only the dropped jobs whose results did not finish them
    # come back; nothing finished is delivered twice.
    assert store.enqueue(everything, 2000) == 40 - 10 + 20
    assert store.pending_count(d) == 50
    assert {j.event_id for j in store.claim_due(later_retry, 5000, hold)} == {
        j.event_id for j in d_jobs[10:40] + d_jobs[100:]
    }


def test_record_and_claim_records_first_then_claims_in_one_call(store: WebhookStore) -> None:
    hook, other = uuid4(), uuid4()
    message = uuid4()
    first = make_job(hook, 1, message_id=message)
    second = make_job(hook, 2, message_id=message)  # waits behind `first`
    failing = make_job(other, 3)
    store.enqueue([first, second, failing], None)
    claimed = store.claim_due(T0, 10, LEASE)
    assert event_ids(claimed) == [first.event_id, failing.event_id]

    # The head's success hands the group on, so the same call claims the next job; the
    # failure's retry is not due yet and is not claimed.
    results = [
        result_for(first, T0 + seconds(1), succeeded=True),
        result_for(failing, T0 + seconds(1), succeeded=False, next_due_at=T0 + seconds(60)),
    ]
    again = store.record_and_claim(results, T0 + seconds(2), 10, LEASE)
    assert event_ids(again) == [second.event_id]
    assert store.attempts(hook, 0, 10)[0] == 1
    assert store.consecutive_failures(other) == 1
    due = {j.event_id: j.attempt for j in store.claim_due(T0 + seconds(60), 10, LEASE)}
    assert due[failing.event_id] == 1  # (and `second`, its lease over, attempt 0)
    assert due[second.event_id] == 0

    # Nothing to record and nothing to claim: nothing happens.
    assert store.record_and_claim([], T0 + seconds(90), 0, LEASE) == []
    # Results only (limit 0): recorded, nothing claimed.
    done = result_for(second, T0 + seconds(91), succeeded=True)
    assert store.record_and_claim([done], T0 + seconds(91), 0, LEASE) == []
    assert store.pending_count(hook) == 0
