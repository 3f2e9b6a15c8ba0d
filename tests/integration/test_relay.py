"""The relay against the real Kafka-protocol broker: every stored event reaches Kafka.

The relay follows the notification log (its position in the event store's tracking
table) and publishes to Kafka; the position moves only after the broker has
acknowledged a batch. So a relay that stops or fails may publish a batch again
(consumers deduplicate by event id), but never skips an event.

Kafka mode only (SENDSTREAM_TEST_KAFKA=1). What reached the broker is read back
with a plain group-less consumer, partition by partition up to the end offsets, so
nothing here waits on a guess of how long the broker takes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from adapters.kafka import (
    KafkaEventPublisher,
    KafkaEventSource,
    PublishError,
    decode_envelope,
    topic_for,
)
from domain.content import Address, EmailContent
from domain.envelope import EventEnvelope, event_id_for
from engine.eventlog.followers import NotificationLogSource
from engine.eventlog.relay import ALL_STREAMS, Relay
from engine.runtime.composition import Engine
from tests.integration.conftest import wait_for
from tests.services import RunningService

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        os.environ.get("SENDSTREAM_TEST_KAFKA", "0") != "1",
        reason="relay tests need the Kafka-protocol broker: SENDSTREAM_TEST_KAFKA=1",
    ),
]

BATCH = 5
RELAY = "relay"  # the relay's consumer name in the tracking table (each test has its own store)


# --- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


@pytest.fixture
def engine(make_engine: Callable[..., Engine], kafka_broker: RunningService) -> Engine:
    """An engine with no workers: the tests drive their own relays over its event store."""
    return make_engine(roles=frozenset(), start=False)


@pytest.fixture
def publishers(kafka_broker: RunningService, prefix: str) -> Iterator[Callable[[], Any]]:
    """Real publishers on this test's topics, all closed at the end."""
    opened: list[KafkaEventPublisher] = []

    def open_() -> KafkaEventPublisher:
        publisher = KafkaEventPublisher(kafka_broker.url, topic_prefix=prefix)
        opened.append(publisher)
        return publisher

    yield open_
    for publisher in opened:
        publisher.close()


def new_relay(engine: Engine, publisher: Any, batch_size: int = BATCH) -> Relay:
    """A relay as a restarted process builds it: its position read back from tracking."""
    source = NotificationLogSource(engine.app, engine.tracking, RELAY, None)
    return Relay(source, publisher, batch_size=batch_size)


def drain(relay: Relay) -> None:
    while relay.run_once(timeout=0):
        pass


def record_traffic(engine: Engine, submissions: int = 3) -> None:
    """Accounts, domains, keys, submissions and messages through delivery: 4 + 9n events."""
    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    message_ids: list[UUID] = []
    for n in range(submissions):
        content = EmailContent(
            subject=f"Relay {n}",
            sender=Address("news@example.com", "News"),
            to=(Address(f"to{n}@example.org", "To"),),
            cc=(Address(f"cc{n}@example.org", "Cc"),),
            plain="hello",
        )
        submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
        engine.writer.save([submission, *messages])
        message_ids += [m.id for m in messages]
    for message_id in message_ids:
        message = engine.app.message(message_id)
        message.start_attempt()
        message.record_delivered(250, "2.0.0", "ok")
        engine.writer.save([message])


def notifications(engine: Engine) -> list[Notification]:
    return list(engine.app.recorder.select_notifications(start=1, limit=1_000_000))


def event_id_of(notification: Notification) -> UUID:
    return event_id_for(UUID(str(notification.originator_id)), notification.originator_version)


def records_on(bootstrap_servers: str, prefix: str) -> list[ConsumerRecord]:
    """Every record on this test's topics, read up to each partition's end offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(f"{prefix}."))
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "could not read the topics to their end"
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        return records
    finally:
        consumer.close()


def position_of(record: ConsumerRecord) -> int:
    return int(dict(record.headers)["position"])


def positions_on(bootstrap_servers: str, prefix: str) -> Counter[int]:
    """How many times each notification position reached Kafka."""
    return Counter(position_of(r) for r in records_on(bootstrap_servers, prefix))


def assert_nothing_skipped(engine: Engine, published: Counter[int]) -> None:
    missing = [n.id for n in notifications(engine) if n.id not in published]
    assert not missing, f"notifications never published: {missing}"


def republished(published: Counter[int]) -> list[int]:
    return sorted(position for position, times in published.items() if times > 1)


class FailingPublisher:
    """Wraps a real publisher; its ``fail_on``-th call raises, before or after publishing.

    ``after_publish`` is the broker acknowledging a batch whose acknowledgement the
    relay never learns of (a timeout, a crash before the commit): the batch is on Kafka.
    """

    def __init__(self, inner: KafkaEventPublisher, fail_on: int, after_publish: bool) -> None:
        self._inner = inner
        self._fail_on = fail_on
        self._after_publish = after_publish
        self.calls: list[list[int]] = []  # the positions asked for, call by call

    def publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        self.calls.append([e.position for e in envelopes])
        failing = len(self.calls) == self._fail_on
        if failing and not self._after_publish:
            raise PublishError("injected: the broker did not acknowledge the batch")
        self._inner.publish(envelopes)
        if failing:
            raise PublishError("injected: the acknowledgement was lost")

    def close(self) -> None:
        self._inner.close()


# --- the relay ---------------------------------------------------------------------------


def test_every_event_is_published_once_with_its_headers_and_key(
    engine: Engine, publishers: Callable[[], KafkaEventPublisher], kafka_broker: RunningService,
    prefix: str,
) -> None:  # fmt: skip
    record_traffic(engine)
    drain(new_relay(engine, publishers()))

    records = records_on(kafka_broker.url, prefix)
    log = notifications(engine)
    assert sorted(position_of(r) for r in records) == [n.id for n in log]  # each exactly once
    by_position = {position_of(r): r for r in records}
    for notification in log:
        record = by_position[notification.id]
        event = engine.app.mapper.to_domain_event(notification)
        event_type = type(event).__qualname__
        event_id = event_id_of(notification)
        assert record.topic == topic_for(event_type.partition(".")[0].lower(), prefix)
        assert record.key == str(notification.originator_id).encode()
        assert dict(record.headers) == {
            "event_id": str(event_id).encode(),
            "position": str(notification.id).encode(),
            "event_type": event_type.encode(),
        }
        envelope = decode_envelope(record.value)
        assert (envelope.event_id, envelope.position, envelope.aggregate_version) == (
            event_id, notification.id, notification.originator_version,
        )  # fmt: skip
    # One partition per topic: each topic holds its events in log order.
    for topic in {r.topic for r in records}:
        positions = [position_of(r) for r in records if r.topic == topic]
        assert positions == sorted(positions), f"{topic} out of log order"
    assert engine.tracking.max_tracking_id(RELAY) == log[-1].id


@pytest.mark.parametrize("stop", ["between-batches", "after-publish-before-commit"])
def test_a_new_relay_resumes_after_the_last_acknowledged_batch(
    engine: Engine, publishers: Callable[[], KafkaEventPublisher], kafka_broker: RunningService,
    prefix: str, stop: str,
) -> None:  # fmt: skip
    record_traffic(engine)
    log = notifications(engine)
    batches_done = 3

    if stop == "between-batches":
        first = new_relay(engine, publishers())
        for _ in range(batches_done):
            assert first.run_once(timeout=0) == BATCH
        lost_batch: list[int] = []
    else:  # the broker took batch 4, then the relay died before moving its position
        failing = FailingPublisher(publishers(), fail_on=batches_done + 1, after_publish=True)
        first = new_relay(engine, failing)
        for _ in range(batches_done):
            assert first.run_once(timeout=0) == BATCH
        with pytest.raises(PublishError):
            first.run_once(timeout=0)
        lost_batch = failing.calls[-1]
    acknowledged = log[batches_done * BATCH - 1].id
    assert engine.tracking.max_tracking_id(RELAY) == acknowledged
    del first  # stopped: nothing of it survives but the tracking table

    drain(new_relay(engine, publishers()))

    published = positions_on(kafka_broker.url, prefix)
    assert_nothing_skipped(engine, published)
    assert republished(published) == lost_batch  # at most the one unacknowledged batch
    assert len(lost_batch) <= BATCH
    assert engine.tracking.max_tracking_id(RELAY) == log[-1].id


@pytest.mark.parametrize("after_publish", [False, True], ids=["not-published", "ack-lost"])
def test_a_failed_publish_keeps_the_position_and_the_batch_is_published_again(
    engine: Engine, publishers: Callable[[], KafkaEventPublisher], kafka_broker: RunningService,
    prefix: str, after_publish: bool,
) -> None:  # fmt: skip
    record_traffic(engine)
    failing = FailingPublisher(publishers(), fail_on=3, after_publish=after_publish)
    source = NotificationLogSource(engine.app, engine.tracking, RELAY, None)
    relay = Relay(source, failing, batch_size=BATCH)

    assert relay.run_once(timeout=0) == BATCH
    assert relay.run_once(timeout=0) == BATCH
    before = engine.tracking.max_tracking_id(RELAY)
    with pytest.raises(PublishError):
        relay.run_once(timeout=0)
    assert engine.tracking.max_tracking_id(RELAY) == before, "position moved past a failed batch"
    assert source.committed_position == before

    assert relay.run_once(timeout=0) == BATCH
    assert failing.calls[3] == failing.calls[2], "the failed batch must be published again"
    assert engine.tracking.max_tracking_id(RELAY) == failing.calls[3][-1]
    drain(relay)

    published = positions_on(kafka_broker.url, prefix)
    assert_nothing_skipped(engine, published)
    assert republished(published) == (failing.calls[2] if after_publish else [])

    # A consumer that keeps the first copy of each event id holds every event once.
    log = notifications(engine)
    reader = KafkaEventSource(
        kafka_broker.url,
        group_id=f"{prefix}-dedupe",
        streams=ALL_STREAMS,
        topic_prefix=prefix,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    try:
        seen: list[EventEnvelope] = []
        deadline = time.monotonic() + 30
        while len(seen) < published.total():
            assert time.monotonic() < deadline, f"read {len(seen)} of {published.total()}"
            seen += reader.poll(500, 0.5)
        assert reader.poll(500, 0.5) == []
    finally:
        reader.close()
    kept: dict[UUID, EventEnvelope] = {}
    for envelope in seen:
        kept.setdefault(envelope.event_id, envelope)
    assert len(seen) - len(kept) == (BATCH if after_publish else 0)
    assert sorted(e.position for e in kept.values()) == [n.id for n in log]
    assert set(kept) == {event_id_of(n) for n in log}


def test_the_running_relay_retries_a_failed_batch_by_itself(
    engine: Engine, publishers: Callable[[], KafkaEventPublisher], kafka_broker: RunningService,
    prefix: str,
) -> None:  # fmt: skip
    record_traffic(engine)
    failing = FailingPublisher(publishers(), fail_on=2, after_publish=False)
    relay = new_relay(engine, failing)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        last = notifications(engine)[-1].id
        wait_for(lambda: engine.tracking.max_tracking_id(RELAY) == last)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert failing.calls[2] == failing.calls[1]  # the failed batch, again
    published = positions_on(kafka_broker.url, prefix)
    assert_nothing_skipped(engine, published)
    assert not republished(published)


def test_events_of_every_aggregate_reach_kafka(
    engine: Engine, publishers: Callable[[], KafkaEventPublisher], kafka_broker: RunningService,
    prefix: str,
) -> None:  # fmt: skip
    record_traffic(engine, submissions=1)
    keys = engine.app.bootstrap("example.net")
    engine.app.suppress(UUID(keys["AccountID"]), "gone@example.org", "bounce", datetime.now(UTC))
    record_traffic(engine, submissions=1)
    drain(new_relay(engine, publishers()))

    assert engine.tracking.max_tracking_id(RELAY) == notifications(engine)[-1].id
    assert_nothing_skipped(engine, positions_on(kafka_broker.url, prefix))


def test_the_publisher_knows_how_far_every_consumer_group_has_processed(
    engine: Engine, kafka_broker: RunningService, publishers: Callable[[], Any], prefix: str
) -> None:
    """What the relay would publish again if the broker lost its topics: everything after
    the last event every group of this installation has committed, no less."""
    record_traffic(engine)
    publisher = publishers()
    relay = new_relay(engine, publisher)
    drain(relay)
    published = max(n.id for n in notifications(engine))
    assert publisher.processed_by_every_group(published) == published  # no group yet

    behind = KafkaEventSource(kafka_broker.url, f"{prefix}-projector", ["message"],
                              topic_prefix=prefix)  # fmt: skip
    caught_up = KafkaEventSource(kafka_broker.url, f"{prefix}-webhooks", ["message", "account"],
                                 topic_prefix=prefix)  # fmt: skip
    try:
        behind.wait_until_assigned()
        read = behind.poll(4, timeout=10)
        assert read
        behind.commit()
        caught_up.wait_until_assigned()
        while caught_up.poll(100, timeout=2):
            pass
        caught_up.commit()
        messages = sorted(n.id for n in notifications(engine) if "Message" in n.topic)
        first_unread = messages[messages.index(read[-1].position) + 1]
        assert publisher.processed_by_every_group(published) == first_unread - 1
        while behind.poll(100, timeout=2):
            pass
        behind.commit()
        assert publisher.processed_by_every_group(published) == published
    finally:
        behind.close()
        caught_up.close()
    # The publisher's mark: none on a new broker (nothing was lost, but nothing tells), then
    # held: nothing lost since.
    assert publisher.lost_acknowledged()
    publisher.forget_acknowledged()  # what the relay does then: topics made, mark left
    assert not publisher.lost_acknowledged()
