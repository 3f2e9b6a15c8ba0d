"""The ``EventSource`` contract, written once and run against both adapters.

* ``embedded``: ``NotificationLogSource`` reading an engine's notification log, its
  position kept in the event store's tracking table.
* ``kafka``: a ``Relay`` publishes the same notification log into the real broker
  (``kafka_broker``), and a ``KafkaEventSource`` reads it back. Skipped unless
  SENDSTREAM_TEST_KAFKA=1.

The events come from real aggregates saved through the engine (accounts, domains,
keys, submissions and messages taken through delivery), so several streams are
interleaved in the log and each message has several versions.

What every adapter must do: hand out each event of the requested streams exactly
once per read-through, in log order per aggregate, with the same envelope fields;
never hand out events of other streams; after ``commit()`` a new source of the same
consumer resumes after the committed point; without it, a new source reads again
(at least once); ``rewind()`` goes back to the last commit; polling an empty stream
returns ``[]`` once its timeout is up.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import orjson
import pytest
from eventsourcing.persistence import Notification

from adapters.kafka import KafkaEventPublisher, KafkaEventSource
from adapters.ports import EventSource
from domain.content import Address, EmailContent
from domain.envelope import EventEnvelope, event_id_for
from engine.application import SenderContext
from engine.eventlog.followers import NotificationLogSource
from engine.eventlog.relay import ALL_STREAMS, Relay
from engine.runtime.composition import Engine
from tests.services import RunningService

READ = ("message", "submission")  # the streams most tests ask for
TIMEOUT = 30.0  # how long a test waits for events that must come
QUIET = 1.0  # how long a source is given to show an event that must not come

# The fields every envelope carries on its own; whatever else the event holds is ``data``.
_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


# --- the two adapters behind one face --------------------------------------------------


class StreamUnderTest(Protocol):
    """One ``EventSource`` adapter over the events an engine has stored."""

    engine: Engine

    def publish(self) -> None:
        """Make every event stored so far readable by sources (a no-op when embedded)."""
        ...

    def open(self, consumer: str, streams: Sequence[str] = READ) -> EventSource:
        """A new source for ``consumer`` (a consumer name, or a Kafka group)."""
        ...


class EmbeddedStream:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self) -> None:
        pass

    def open(self, consumer: str, streams: Sequence[str] = READ) -> EventSource:
        engine = self.engine
        return NotificationLogSource(engine.app, engine.tracking, consumer, streams, engine.signal)


class KafkaStream:
    def __init__(self, engine: Engine, bootstrap_servers: str, prefix: str) -> None:
        self.engine = engine
        self._servers = bootstrap_servers
        self._prefix = prefix
        self._publisher = KafkaEventPublisher(bootstrap_servers, topic_prefix=prefix)
        relay_source = NotificationLogSource(
            engine.app, engine.tracking, f"relay-{prefix}", ALL_STREAMS
        )
        self._relay = Relay(relay_source, self._publisher)
        self._sources: list[KafkaEventSource] = []

    def publish(self) -> None:
        while self._relay.run_once(timeout=0):
            pass

    def open(self, consumer: str, streams: Sequence[str] = READ) -> EventSource:
        source = KafkaEventSource(
            self._servers,
            group_id=f"{self._prefix}-{consumer}",
            streams=streams,
            topic_prefix=self._prefix,
            # The broker holds a new member's join for about half the session timeout:
            # a short one keeps these tests quick (the engine keeps the adapter's default).
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        self._sources.append(source)
        return source

    def close(self) -> None:
        for source in self._sources:
            source.close()
        self._publisher.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def stream(
    request: pytest.FixtureRequest, make_engine: Callable[..., Engine]
) -> Iterator[StreamUnderTest]:
    if request.param == "embedded":
        yield EmbeddedStream(make_engine(roles=frozenset(), start=False))
        return
    broker: RunningService = request.getfixturevalue("kafka_broker")  # skips unless Kafka mode
    engine = make_engine(roles=frozenset(), start=False)
    kafka = KafkaStream(engine, broker.url, prefix=f"c{uuid.uuid4().hex[:12]}")
    try:
        yield kafka
    finally:
        kafka.close()


@pytest.fixture
def consumer() -> str:
    """A consumer (embedded) or group (Kafka) name no other test uses."""
    return f"contract-{uuid.uuid4().hex[:12]}"


# --- traffic: real aggregates saved through the engine ---------------------------------


def open_account(engine: Engine, domain: str) -> SenderContext:
    """Account, SenderDomain and SenderApiKey events, saved by the application."""
    keys = engine.app.bootstrap(domain)
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    return sender


def send(engine: Engine, sender: SenderContext, submissions: int) -> list[UUID]:
    """Submissions of two recipients each, saved through the writer; returns the message ids."""
    message_ids: list[UUID] = []
    for n in range(submissions):
        content = EmailContent(
            subject=f"Contract {n}",
            sender=Address(f"news@{sender.domain_name}", "News"),
            to=(Address(f"to{n}@example.org", "To"),),
            cc=(Address(f"cc{n}@example.org", "Cc"),),
            plain="hello",
            tags=("contract",),
        )
        submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
        engine.writer.save([submission, *messages])
        message_ids += [m.id for m in messages]
    return message_ids


def deliver(engine: Engine, message_ids: Sequence[UUID]) -> None:
    """Attempt, then deliver, one message at a time: the messages' versions interleave."""
    for message_id in message_ids:
        message = engine.app.message(message_id)
        message.start_attempt()
        engine.writer.save([message])
    for message_id in message_ids:
        message = engine.app.message(message_id)
        message.record_delivered(250, "2.0.0", "ok")
        engine.writer.save([message])


def record_traffic(engine: Engine) -> None:
    """Events of six streams, interleaved in the notification log."""
    sender = open_account(engine, "example.com")
    first = send(engine, sender, submissions=2)
    other = open_account(engine, "example.net")
    second = send(engine, other, submissions=1)
    deliver(engine, [*first, *second])
    engine.app.suppress(sender.account_id, "gone@example.org", "test", datetime.now(UTC))


# --- what the event store says, read independently of the adapters --------------------


def json_form(value: Any) -> Any:
    """A value as it reads once encoded as JSON: UUIDs and datetimes become strings."""
    return orjson.loads(orjson.dumps(value))


def envelope_key(envelope: EventEnvelope) -> tuple[Any, ...]:
    """Every field of an envelope, with ``data`` in its JSON form (Kafka gives strings)."""
    return (
        envelope.event_id,
        envelope.position,
        envelope.stream,
        envelope.event_type,
        envelope.aggregate_id,
        envelope.aggregate_version,
        envelope.occurred_at,
        json_form(envelope.data),
    )


def notifications(engine: Engine) -> list[Notification]:
    return list(engine.app.recorder.select_notifications(start=1, limit=1_000_000))


def expected(engine: Engine, streams: Sequence[str] | None = READ) -> list[EventEnvelope]:
    """The envelopes of ``streams`` (None: all) in the log, built from the stored events."""
    result: list[EventEnvelope] = []
    for notification in notifications(engine):
        event = engine.app.mapper.to_domain_event(notification)
        event_type = type(event).__qualname__  # "Message.Delivered"
        stream = event_type.partition(".")[0].lower()
        if streams is not None and stream not in streams:
            continue
        result.append(
            EventEnvelope(
                event_id=event_id_for(event.originator_id, event.originator_version),
                position=notification.id,
                stream=stream,
                event_type=event_type,
                aggregate_id=event.originator_id,
                aggregate_version=event.originator_version,
                occurred_at=event.timestamp,  # type: ignore[attr-defined]
                data={k: v for k, v in event.__dict__.items() if k not in _ENVELOPE_FIELDS},
            )
        )
    return result


# --- reading ----------------------------------------------------------------------------


def read(source: EventSource, count: int, max_records: int = 100) -> list[EventEnvelope]:
    """Poll until ``count`` envelopes came, never asking for more than are still due."""
    received: list[EventEnvelope] = []
    deadline = time.monotonic() + TIMEOUT
    while len(received) < count:
        assert time.monotonic() < deadline, f"read {len(received)} of {count} envelopes"
        received += source.poll(min(max_records, count - len(received)), 0.5)
    assert len(received) == count, f"asked for {count}, got {len(received)}"
    return received


def assert_drained(source: EventSource) -> None:
    """Nothing more comes: no duplicate, no event of another stream."""
    assert source.poll(100, QUIET) == []


def assert_in_log_order_per_aggregate(envelopes: Sequence[EventEnvelope]) -> None:
    positions: dict[UUID, list[int]] = defaultdict(list)
    versions: dict[UUID, list[int]] = defaultdict(list)
    for envelope in envelopes:
        positions[envelope.aggregate_id].append(envelope.position)
        versions[envelope.aggregate_id].append(envelope.aggregate_version)
    for aggregate_id, seen in positions.items():
        assert seen == sorted(seen), f"aggregate {aggregate_id} out of log order: {seen}"
        assert versions[aggregate_id] == sorted(versions[aggregate_id])


def ids(envelopes: Sequence[EventEnvelope]) -> list[UUID]:
    return [envelope.event_id for envelope in envelopes]


# --- the contract -----------------------------------------------------------------------


def test_a_read_through_returns_each_event_of_the_requested_streams_exactly_once(
    stream: StreamUnderTest, consumer: str
) -> None:
    engine = stream.engine
    record_traffic(engine)
    stream.publish()
    wanted = expected(engine)
    others = {e.stream for e in expected(engine, None)} - set(READ)
    assert others >= {"account", "senderdomain", "senderapikey"}, "the log must hold others"

    source = stream.open(consumer)
    received = read(source, len(wanted))
    assert_drained(source)

    assert not [k for k, n in Counter(ids(received)).items() if n > 1], "an event came twice"
    assert {e.stream for e in received} == set(READ)
    assert sorted(map(envelope_key, received)) == sorted(map(envelope_key, wanted))
    assert_in_log_order_per_aggregate(received)
    # Every version of every aggregate of the requested streams is there, from the first.
    versions: dict[UUID, list[int]] = defaultdict(list)
    for envelope in received:
        versions[envelope.aggregate_id].append(envelope.aggregate_version)
    assert all(seen == list(range(1, len(seen) + 1)) for seen in versions.values())
    assert max(len(seen) for seen in versions.values()) == 4  # Accepted … Delivered

    # Events stored after the source caught up arrive on the same source, and only they.
    sender = open_account(engine, "example.org")
    new_messages = send(engine, sender, submissions=1)
    deliver(engine, new_messages)
    stream.publish()
    already = set(ids(wanted))
    fresh = [e for e in expected(engine) if e.event_id not in already]
    assert len(fresh) == 1 + 2 * 4  # a submission, and two messages of four events
    later = read(source, len(fresh))
    assert_drained(source)
    assert sorted(map(envelope_key, later)) == sorted(map(envelope_key, fresh))
    assert_in_log_order_per_aggregate(received + later)


def test_polling_an_empty_stream_returns_nothing_once_its_timeout_is_up(
    stream: StreamUnderTest, consumer: str
) -> None:
    empty = stream.open(f"{consumer}-before", streams=("message",))
    assert empty.poll(10, 0.3) == []  # nothing stored at all yet

    record_traffic(engine := stream.engine)
    stream.publish()
    assert not expected(engine, ("campaign",))
    source = stream.open(consumer, streams=("campaign",))  # a stream with no events
    assert source.poll(10, 0.3) == []
    assert source.poll(10, 0.3) == []
    source.commit()  # committing nothing is allowed
    source.rewind()
    assert source.poll(10, 0.3) == []


def test_after_a_commit_a_new_source_resumes_after_the_committed_point(
    stream: StreamUnderTest, consumer: str
) -> None:
    engine = stream.engine
    record_traffic(engine)
    stream.publish()
    wanted = expected(engine)

    first = stream.open(consumer)
    done = read(first, 7)
    first.commit()
    uncommitted = read(first, 5)  # read but never committed: these must come again
    first.close()

    second = stream.open(consumer)
    rest = read(second, len(wanted) - len(done))
    assert_drained(second)
    assert not set(ids(done)) & set(ids(rest)), "a committed event was read again"
    assert set(ids(done)) | set(ids(rest)) == set(ids(wanted))
    assert set(ids(uncommitted)) <= set(ids(rest)), "read but uncommitted events must come again"
    assert_in_log_order_per_aggregate(done + rest)
    second.commit()
    second.close()

    # Everything committed: a third source sees only what is stored afterwards.
    sender = open_account(engine, "example.org")
    send(engine, sender, submissions=1)
    stream.publish()
    fresh = [e for e in expected(engine) if e.event_id not in set(ids(wanted))]
    third = stream.open(consumer)
    assert sorted(map(envelope_key, read(third, len(fresh)))) == sorted(map(envelope_key, fresh))
    assert_drained(third)


def test_without_a_commit_a_new_source_reads_everything_again(
    stream: StreamUnderTest, consumer: str
) -> None:
    engine = stream.engine
    record_traffic(engine)
    stream.publish()
    wanted = expected(engine)

    first = stream.open(consumer)
    assert sorted(ids(read(first, len(wanted)))) == sorted(ids(wanted))
    first.close()

    second = stream.open(consumer)
    again = read(second, len(wanted))
    assert_drained(second)
    assert sorted(map(envelope_key, again)) == sorted(map(envelope_key, wanted))


def test_rewind_reads_again_from_the_last_commit(stream: StreamUnderTest, consumer: str) -> None:
    engine = stream.engine
    record_traffic(engine)
    stream.publish()
    wanted = expected(engine, ("message",))
    source = stream.open(consumer, streams=("message",))

    head = read(source, 4)
    source.rewind()  # nothing committed yet: back to the very start
    assert ids(read(source, 4)) == ids(head)
    source.commit()

    middle = read(source, 6)
    source.rewind()
    assert ids(read(source, 6)) == ids(middle)
    tail = read(source, len(wanted) - 10)
    assert_drained(source)
    assert ids(head + middle + tail) == ids(wanted)  # one stream: exactly log order

    source.commit()
    source.rewind()  # after a commit of everything, there is nothing to go back to
    assert_drained(source)
