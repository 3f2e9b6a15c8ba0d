"""What keeps the engine's cost per message down keeps its promises too: followers that skip
what they do not need still see what they do, the campaign runner scans the log once,
the projector batches a trickle, threads are named for the kernel, and SQLite commits
with the durability the settings choose."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest

from adapters.ports import ReportingStore
from adapters.thread_names import NamedThread, named_executor
from domain.envelope import EventEnvelope
from engine.application import Sendstream
from engine.eventlog.followers import NotificationLogSource
from engine.reporting.projector import Projector
from engine.runtime.composition import Engine, Role
from engine.settings import Settings
from tests.integration.conftest import wait_for

# The notification log, SQLite and threads: nothing here goes through Kafka.
pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc"),
]


def send_some(engine: Engine, count: int) -> list[str]:
    import asyncio

    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    body: dict[str, Any] = {
        "Subject": "Hi", "ContentType": "plain", "PlainContent": "Hello",
        "From": {"email": "news@example.com", "name": "News"},
    }  # fmt: skip

    async def main() -> list[str]:
        return [
            await engine.sending.send(
                sender, {**body, "To": [{"email": f"u{n}@example.org", "name": "U"}]}
            )
            for n in range(count)
        ]

    return asyncio.run(main())


def test_a_follower_never_decodes_what_it_declines(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 3)
    asked: list[tuple[UUID, str]] = []

    def wanted(originator: UUID, event_type: str) -> bool:
        asked.append((originator, event_type))
        return event_type != "Message.Queued"

    source = NotificationLogSource(
        engine.app, engine.tracking, "declines", ("message",), wanted=wanted
    )
    envelopes: list[EventEnvelope] = []
    while batch := source.poll(100, 0.2):
        envelopes += batch
    types = {envelope.event_type for envelope in envelopes}
    assert "Message.Accepted" in types and "Message.Queued" not in types
    assert ("Message.Queued" in {t for _, t in asked}) and all(
        isinstance(originator, UUID) for originator, _ in asked
    )
    # what was declined is passed over for good: the position is past it
    source.commit()
    again = NotificationLogSource(engine.app, engine.tracking, "declines", ("message",))
    assert again.poll(100, 0.2) == []


def test_a_new_follower_starts_where_the_one_it_replaces_stopped(
    make_engine: Callable[..., Engine],
) -> None:
    # A delivery share that has never run starts where undivided delivery stopped: what
    # that delivered is not read again, what came after is.
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 2)
    before = NotificationLogSource(engine.app, engine.tracking, "delivery", ("message",))
    while before.poll(100, 0.2):
        before.commit()
    send_some(engine, 1)

    share = NotificationLogSource(
        engine.app, engine.tracking, "delivery-1of2", ("message",), start_from="delivery"
    )
    fresh = NotificationLogSource(engine.app, engine.tracking, "never-ran", ("message",))

    after = share.poll(100, 0.2)
    assert {e.event_type for e in after} == {"Message.Accepted", "Message.Queued"}
    assert len({e.aggregate_id for e in after}) == 1
    assert len({e.aggregate_id for e in fresh.poll(100, 0.2)}) == 3


def test_a_reader_of_rare_events_moves_past_the_others_once(
    make_engine: Callable[..., Engine],
) -> None:
    # The audit reader reads account changes among a stream of messages: when none of its
    # kinds comes up, its next read starts after what it has seen, not at its last change.
    from domain.account import Account
    from engine.reporting.audit import audited_event_types

    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 3)  # an account, a domain and a key, then messages
    rare = NotificationLogSource(
        engine.app, engine.tracking, "rare", None, event_types=audited_event_types()
    )
    changes = rare.poll(100, 0.2)
    assert changes and all(e.stream != "message" for e in changes)
    assert rare.poll(100, 0) == []
    rare.commit()
    newest = engine.app.recorder.max_notification_id()
    assert engine.tracking.max_tracking_id("rare") == newest
    opened = next(e for e in changes if e.event_type == "Account.Opened")
    account = engine.app.account(opened.aggregate_id)
    assert isinstance(account, Account)
    account.set_time_zone("Europe/Paris")
    engine.app.save(account)
    (changed,) = rare.poll(100, 0.2)
    assert changed.event_type == "Account.TimeZoneSet"


def test_a_commit_that_landed_before_its_answer_was_lost_is_a_commit(
    make_engine: Callable[..., Engine],
) -> None:
    # Fresh-clone CI, a PostgreSQL restart: the store retried an insert of the relay's
    # position whose first attempt had landed, and the retry's conflict was taken for a
    # failure (a traceback, and the batch read again).
    from eventsourcing.persistence import Tracking

    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 1)
    source = NotificationLogSource(engine.app, engine.tracking, "landed", None)
    assert source.poll(100, 0.2)
    newest = engine.app.recorder.max_notification_id()
    engine.tracking.insert_tracking(Tracking("landed", newest))  # the first attempt
    source.commit()
    assert source.committed_position == newest
    assert NotificationLogSource(engine.app, engine.tracking, "landed", None).poll(100, 0) == []


def test_the_campaign_runner_reads_past_other_events_once(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API, Role.CAMPAIGNS}))
    send_some(engine, 5)
    runner = engine.campaign_runner
    assert runner is not None
    newest = engine.app.recorder.max_notification_id()
    wait_for(lambda: runner._position >= newest)
    assert not runner._watch  # nothing but messages: nothing to watch


class Trickle:
    """An ``EventSource`` that hands out one envelope per poll, as a busy stream trickles."""

    def __init__(self, envelopes: list[EventEnvelope]) -> None:
        self._envelopes = envelopes
        self.polls = 0

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        self.polls += 1
        return [self._envelopes.pop(0)] if self._envelopes else []

    def commit(self) -> None: ...

    def rewind(self) -> None: ...


def test_the_projector_gathers_a_trickle_into_one_batch(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 5)
    source = NotificationLogSource(engine.app, engine.tracking, "all", ("message",))
    envelopes = source.poll(1000, 0.5)
    assert len(envelopes) == 10  # Accepted and Queued of each
    trickle = Trickle(list(envelopes))
    projector = Projector(engine.app, trickle, engine.reporting, batch_size=6)
    first = trickle.poll(6, 0)
    gathered = projector._fill(len(first), 5.0)
    assert len(first) + len(gathered) == 6  # up to the batch size, not one insert each
    started = time.monotonic()
    assert len(projector._fill(0, 5.0)) == 4
    assert time.monotonic() - started < 1  # the stream ran dry: no waiting out the interval


def test_the_projector_writes_a_quiet_stream_at_once_and_gathers_a_busy_one(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 2)
    source = NotificationLogSource(engine.app, engine.tracking, "all", ("message",))
    envelopes = source.poll(1000, 0.5)
    trickle = Trickle(list(envelopes))
    projector = Projector(engine.app, trickle, engine.reporting, interval=5.0)

    started = time.monotonic()
    assert projector.run_once(timeout=0) == 1  # the first event is written at once,
    assert time.monotonic() - started < 4  # not held for the interval
    assert projector.run_once(timeout=0) == 3  # the rest are gathered into one insert
    assert engine.reporting.query("SELECT count() AS n FROM events") == [{"n": 4}]


class Batches:
    """An ``EventSource`` that hands out what it holds, ``max_records`` at a time."""

    def __init__(self, envelopes: list[EventEnvelope]) -> None:
        self._envelopes = envelopes
        self.committed = False

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        batch, self._envelopes = self._envelopes[:max_records], self._envelopes[max_records:]
        return batch

    def commit(self) -> None:
        self.committed = True

    def rewind(self) -> None: ...


class CountedInserts:
    """The reporting store, counting the rows of each insert."""

    def __init__(self, store: ReportingStore) -> None:
        self._store = store
        self.inserts: list[int] = []

    def insert_tab_separated(self, table: str, columns: Sequence[str], payload: bytes) -> None:
        self.inserts.append(payload.count(b"\n"))
        self._store.insert_tab_separated(table, columns, payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_the_projector_writes_the_batches_of_a_run_in_few_inserts(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 7)
    source = NotificationLogSource(engine.app, engine.tracking, "all", ("message",))
    envelopes = source.poll(1000, 0.5)
    assert len(envelopes) == 14  # Accepted and Queued of each
    batches, store = Batches(list(envelopes)), CountedInserts(engine.reporting)
    projector = Projector(
        engine.app, batches, cast(ReportingStore, store), batch_size=2, insert_rows=5
    )

    assert projector.run_once(timeout=0) == 14
    assert store.inserts == [6, 6, 2]  # seven batches of two, written at five rows or more
    assert batches.committed
    assert engine.reporting.query("SELECT count() AS n FROM events") == [{"n": 14}]

    again = Projector(engine.app, Batches(list(envelopes)), engine.reporting, insert_rows=5)
    assert again.run_once(timeout=0) == 14  # a replay of the same events adds nothing
    assert engine.reporting.query("SELECT count() AS n FROM events") == [{"n": 14}]


class LosesItsPartitions(Batches):
    """A Kafka-like source whose group moves its partitions away during the second poll."""

    def __init__(self, envelopes: list[EventEnvelope], store: ReportingStore) -> None:
        super().__init__(envelopes)
        self._store = store
        self._polls = 0
        self._make_durable: Callable[[], None] | None = None
        self.stored_at_handover: int | None = None

    def on_handover(self, make_durable: Callable[[], None]) -> None:
        self._make_durable = make_durable

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        self._polls += 1
        if self._polls == 2 and self._make_durable is not None:
            self._make_durable()
            rows = self._store.query("SELECT count() AS n FROM events")
            self.stored_at_handover = int(rows[0]["n"])
        return super().poll(max_records, timeout)


def test_the_projector_writes_what_it_read_before_its_partitions_move(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 3)
    source = NotificationLogSource(engine.app, engine.tracking, "all", ("message",))
    envelopes = source.poll(1000, 0.5)
    moving = LosesItsPartitions(list(envelopes), engine.reporting)
    projector = Projector(engine.app, moving, engine.reporting, batch_size=4, insert_rows=100)

    assert projector.run_once(timeout=0) == 6
    assert moving.stored_at_handover == 4  # the first batch, written before the move
    assert engine.reporting.query("SELECT count() AS n FROM events") == [{"n": 6}]


def test_threads_carry_their_names_to_the_kernel() -> None:
    seen: dict[str, str] = {}

    def record() -> None:
        seen[threading.current_thread().name] = (
            Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        )

    thread = NamedThread(target=record, name="projector")
    thread.start()
    thread.join()
    with named_executor("delivery-io") as pool:
        pool.submit(record).result()
    assert seen["projector"] == "projector"
    assert [comm for name, comm in seen.items() if name != "projector"] == ["delivery-io"]


@pytest.mark.parametrize(("setting", "level"), [("", 1), ("normal", 1), ("full", 2)])
def test_sqlite_commits_with_the_durability_chosen(
    tmp_path: Path, setting: str, level: int
) -> None:
    values = {"SENDSTREAM_DATA_DIR": tmp_path}
    if setting:
        values["SQLITE_SYNCHRONOUS"] = setting  # type: ignore[assignment]
    app = Sendstream(Settings(**values))  # type: ignore[arg-type]
    with app.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == level
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    app.close()


def test_a_bad_durability_setting_stops_start_up(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="SQLITE_SYNCHRONOUS"):
        Settings(SENDSTREAM_DATA_DIR=tmp_path, SQLITE_SYNCHRONOUS="off")  # type: ignore[arg-type]


class FailsOnce:
    """A transport with a bug: its first send raises (the worker must not lose the message
    it had claimed for it)."""

    renders_messages = False

    def __init__(self) -> None:
        self.calls = 0

    async def send(
        self, mail_from: str, recipient: str, message: bytes, sources: Any = None
    ) -> Any:
        from adapters.sandbox import SANDBOX_REPLY

        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in the transport")
        return SANDBOX_REPLY

    async def close(self) -> None: ...


def test_a_message_claimed_by_a_failed_batch_is_settled_not_stranded(
    make_engine: Callable[..., Engine],
) -> None:
    import asyncio

    from domain.message import MessageStatus, message_id_for
    from engine.delivery.worker import INTERRUPTED, DeliveryWorker

    engine = make_engine(roles=frozenset({Role.API}))
    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    from domain.message import Message
    from domain.submission import Submission

    # What the engine's worker reads (Engine._run_delivery): not its own claims.
    kinds = [Submission.Received, Message.Accepted, Message.Queued]  # type: ignore[attr-defined]
    source = NotificationLogSource(
        engine.app, engine.tracking, "delivery-test", ("message", "submission"),
        event_types=kinds,
    )  # fmt: skip
    worker = DeliveryWorker(engine.app, engine.writer, source, FailsOnce())  # type: ignore[arg-type]
    first = second = UUID(int=0)

    async def main() -> None:
        nonlocal first, second
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.3)  # sent after the worker started: it builds them from the stream
        body = {
            "Subject": "Hi", "ContentType": "plain", "PlainContent": "Hello",
            "From": {"email": "news@example.com", "name": "News"},
        }  # fmt: skip
        ids = [
            await engine.sending.send(
                sender, {**body, "To": [{"email": f"v{n}@example.org", "name": "V"}]}
            )
            for n in range(2)
        ]
        first, second = (message_id_for(UUID(i), 0) for i in ids)
        for _ in range(200):
            statuses = {engine.app.message(m).status for m in (first, second)}
            if MessageStatus.SENDING not in statuses and MessageStatus.QUEUED not in statuses:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    failed = engine.app.message(first)
    assert failed.status is MessageStatus.FAILED and failed.failure_reason == INTERRUPTED
    assert engine.app.message(second).status is MessageStatus.DELIVERED


def test_a_delivery_share_fed_the_whole_stream_delivers_its_own_messages_only(
    make_engine: Callable[..., Engine],
) -> None:
    # A Kafka source hands a share every message; the worker itself keeps to its share.
    import asyncio

    from adapters.sandbox import SandboxTransport
    from domain.message import MessageStatus, message_id_for
    from domain.share import DeliveryShare
    from engine.delivery.worker import DeliveryWorker

    engine = make_engine(roles=frozenset({Role.API}))
    ids = [message_id_for(UUID(i), 0) for i in send_some(engine, 12)]
    share = DeliveryShare(2, 2)
    source = NotificationLogSource(engine.app, engine.tracking, "share", ("message",))
    worker = DeliveryWorker(engine.app, engine.writer, source, SandboxTransport(), share=share)

    async def main() -> None:
        while await worker.run_once(wait=0.2):
            pass

    asyncio.run(main())
    statuses = {m: engine.app.message(m).status for m in ids}
    mine = [m for m in ids if share.holds(m)]
    assert mine and len(mine) < len(ids)
    assert all(statuses[m] is MessageStatus.DELIVERED for m in mine)
    assert all(statuses[m] is MessageStatus.QUEUED for m in ids if m not in mine)


def test_a_webhook_change_makes_the_intake_ask_again_who_listens(
    make_engine: Callable[..., Engine],
) -> None:
    from engine.reporting.projector import MessageFactsCache
    from engine.webhooks.commands import WebhookRegistry
    from engine.webhooks.intake import WebhookInterest

    engine = make_engine(roles=frozenset({Role.API}))
    keys = engine.app.bootstrap("example.com")
    registry = WebhookRegistry(engine.app, lifetime=3600)
    registry.for_domain(UUID(keys["DomainID"]))
    interest = WebhookInterest(registry, MessageFactsCache(engine.app))
    assert registry._domains
    assert interest.wants(UUID(keys["DomainID"]), "SenderDomain.WebhookAttached")
    assert not registry._domains  # what follows in the same page is judged afresh
