"""The Kafka adapter against a real Kafka-protocol broker (Tansu, from ``kafka_broker``).

Each test uses its own topic prefix and group ids, so the session's one broker is
shared without tests seeing each other's events.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.kafka import (
    EnvelopeDecodeError,
    KafkaEventPublisher,
    KafkaEventSource,
    PublishError,
    UnsupportedSchemaError,
    decode_envelope,
    encode_envelope,
    topic_for,
)
from domain.envelope import SCHEMA_VERSION, EventEnvelope, event_id_for
from tests.services import RunningService, start_kafka_broker

pytestmark = pytest.mark.kafka

STREAMS = ("message", "submission", "campaign")
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# --- helpers ---------------------------------------------------------------------------


def make_envelopes(
    count: int, streams: Sequence[str] = STREAMS, aggregates_per_stream: int = 4
) -> list[EventEnvelope]:
    """``count`` envelopes in store order, spread round-robin over streams and aggregates."""
    aggregates = [
        (stream, uuid.uuid4()) for stream in streams for _ in range(aggregates_per_stream)
    ]
    versions: dict[UUID, int] = defaultdict(int)
    envelopes = []
    for position in range(1, count + 1):
        stream, aggregate_id = aggregates[position % len(aggregates)]
        versions[aggregate_id] += 1
        version = versions[aggregate_id]
        envelopes.append(
            EventEnvelope(
                event_id=event_id_for(aggregate_id, version),
                position=position,
                stream=stream,
                event_type=f"{stream.capitalize()}.Happened",
                aggregate_id=aggregate_id,
                aggregate_version=version,
                occurred_at=T0 + timedelta(milliseconds=position),
                data={"n": position, "tags": ["a", "b"], "nested": {"ok": True}},
            )
        )
    return envelopes


def read_exactly(
    source: KafkaEventSource, count: int, timeout: float = 30.0
) -> list[EventEnvelope]:
    """Poll until ``count`` envelopes came back, never asking for more than that."""
    received: list[EventEnvelope] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        assert time.monotonic() < deadline, f"read {len(received)} of {count} envelopes"
        received += source.poll(count - len(received), 0.5)
    assert len(received) == count
    return received


def assert_nothing_more(source: KafkaEventSource, wait: float = 1.5) -> None:
    assert source.poll(100, wait) == []


def assert_in_order_per_aggregate(envelopes: Sequence[EventEnvelope]) -> None:
    versions: dict[UUID, list[int]] = defaultdict(list)
    for envelope in envelopes:
        versions[envelope.aggregate_id].append(envelope.aggregate_version)
    for aggregate_id, seen in versions.items():
        assert seen == sorted(seen), f"aggregate {aggregate_id} out of order: {seen}"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def publisher(kafka_broker: RunningService, prefix: str) -> Iterator[KafkaEventPublisher]:
    publisher = KafkaEventPublisher(kafka_broker.url, topic_prefix=prefix)
    yield publisher
    publisher.close()


@pytest.fixture
def open_source(kafka_broker: RunningService, prefix: str) -> Iterator[Any]:
    """Sources for this test's topics, joined to their group; all closed at the end."""
    sources: list[KafkaEventSource] = []

    def open_(group: str, streams: Sequence[str] = STREAMS, wait: bool = True) -> KafkaEventSource:
        source = KafkaEventSource(
            kafka_broker.url, group_id=f"{prefix}-{group}", streams=streams, topic_prefix=prefix
        )
        sources.append(source)
        if wait:
            source.wait_until_assigned(timeout=30)
        return source

    yield open_
    for source in sources:
        source.close()


# --- the wire format -------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
timezones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
envelopes = st.builds(
    EventEnvelope,
    event_id=st.uuids(),
    position=st.integers(min_value=1, max_value=2**62),
    stream=st.sampled_from(STREAMS),
    event_type=st.text(min_size=1, max_size=40),
    aggregate_id=st.uuids(),
    aggregate_version=st.integers(min_value=1, max_value=2**31),
    occurred_at=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=timezones
    ),
    data=st.dictionaries(st.text(max_size=20), json_values, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(envelopes)
def test_encode_then_decode_gives_the_same_envelope(envelope: EventEnvelope) -> None:
    assert decode_envelope(encode_envelope(envelope)) == envelope


def test_the_payload_is_the_documented_json() -> None:
    envelope = make_envelopes(1)[0]
    document = orjson.loads(encode_envelope(envelope))
    assert document == {
        "schema": SCHEMA_VERSION,
        "event_id": str(envelope.event_id),
        "position": envelope.position,
        "stream": envelope.stream,
        "event_type": envelope.event_type,
        "aggregate_id": str(envelope.aggregate_id),
        "aggregate_version": envelope.aggregate_version,
        "occurred_at": envelope.occurred_at.isoformat(),
        "data": envelope.data,
    }


def test_uuids_and_datetimes_in_data_come_back_as_strings() -> None:
    message_id = uuid.uuid4()
    envelope = make_envelopes(1)[0]
    envelope = EventEnvelope(
        **{
            **envelope.__dict__,
            "data": {"message_id": message_id, "at": T0, "list": [message_id]},
        }
    )
    decoded = decode_envelope(encode_envelope(envelope))
    assert decoded.data == {
        "message_id": str(message_id),
        "at": "2026-11-25T12:00:00+00:00",
        "list": [str(message_id)],
    }


def test_a_newer_schema_is_refused_with_a_clear_error() -> None:
    document = orjson.loads(encode_envelope(make_envelopes(1)[0]))
    document["schema"] = SCHEMA_VERSION + 1
    with pytest.raises(UnsupportedSchemaError, match=r"newer than this reader"):
        decode_envelope(orjson.dumps(document))


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"event_id": "x"}',
        orjson.dumps({"schema": 1, "event_id": "not-a-uuid"}),
    ],
)
def test_malformed_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(EnvelopeDecodeError):
        decode_envelope(payload)


def test_a_naive_occurred_at_is_refused() -> None:
    envelope = make_envelopes(1)[0]
    naive = EventEnvelope(**{**envelope.__dict__, "occurred_at": datetime(2026, 1, 1)})
    with pytest.raises(ValueError, match="timezone"):
        encode_envelope(naive)


def test_stream_names_must_make_valid_topics() -> None:
    assert topic_for("message", "sendstream") == "sendstream.message"
    with pytest.raises(ValueError, match="topic"):
        topic_for("bad stream", "sendstream")


# --- against the broker ----------------------------------------------------------------


def test_a_fresh_group_reads_everything_in_order_per_aggregate(
    kafka_broker: RunningService, prefix: str, open_source: Any
) -> None:
    published = make_envelopes(300)
    # Three partitions per topic: order then rests on the aggregate-id key alone.
    publisher = KafkaEventPublisher(kafka_broker.url, topic_prefix=prefix, partitions=3)
    try:
        publisher.publish(published[:150])
        publisher.publish(published[150:])
    finally:
        publisher.close()

    source = open_source("fresh")
    assert len(source.assignment()) == 3 * len(STREAMS)
    received = read_exactly(source, len(published))

    assert sorted(e.event_id for e in received) == sorted(e.event_id for e in published)
    assert {e.event_id: e for e in received} == {e.event_id: e for e in published}
    assert_in_order_per_aggregate(received)
    assert_nothing_more(source)


def test_records_carry_key_and_headers(
    kafka_broker: RunningService, prefix: str, publisher: KafkaEventPublisher
) -> None:
    from kafka import KafkaConsumer

    envelope = make_envelopes(1, streams=("message",))[0]
    publisher.publish([envelope])
    consumer = KafkaConsumer(
        topic_for("message", prefix),
        bootstrap_servers=kafka_broker.url,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        record = next(iter(consumer))
    finally:
        consumer.close()
    assert record.key == str(envelope.aggregate_id).encode()
    assert dict(record.headers) == {
        "event_id": str(envelope.event_id).encode(),
        "position": str(envelope.position).encode(),
        "event_type": envelope.event_type.encode(),
    }
    assert decode_envelope(record.value) == envelope


def test_a_new_member_resumes_after_the_committed_point(
    publisher: KafkaEventPublisher, open_source: Any
) -> None:
    published = make_envelopes(30)
    publisher.publish(published)

    first = open_source("workers")
    done = read_exactly(first, 10)
    first.commit()
    read_exactly(first, 5)  # read but never committed: it must come again
    first.close()

    second = open_source("workers")
    rest = read_exactly(second, 20)
    assert_nothing_more(second)
    assert {e.event_id for e in done} | {e.event_id for e in rest} == {
        e.event_id for e in published
    }
    assert not {e.event_id for e in done} & {e.event_id for e in rest}


def test_without_a_commit_a_new_member_reads_everything_again(
    publisher: KafkaEventPublisher, open_source: Any
) -> None:
    published = make_envelopes(12)
    publisher.publish(published)

    first = open_source("forgetful")
    assert {e.event_id for e in read_exactly(first, 12)} == {e.event_id for e in published}
    first.close()

    second = open_source("forgetful")
    assert {e.event_id for e in read_exactly(second, 12)} == {e.event_id for e in published}
    assert_nothing_more(second)


def test_groups_are_independent_and_each_sees_everything(
    publisher: KafkaEventPublisher, open_source: Any
) -> None:
    published = make_envelopes(40)
    publisher.publish(published)
    sources = [open_source("projector", wait=False), open_source("delivery", wait=False)]

    def join_and_read(source: KafkaEventSource) -> list[EventEnvelope]:
        source.wait_until_assigned(timeout=30)
        envelopes = read_exactly(source, len(published))
        source.commit()
        return envelopes

    with ThreadPoolExecutor(len(sources)) as pool:  # the two groups join concurrently
        results = list(pool.map(join_and_read, sources))
    for received in results:
        assert [e.event_id for e in received if e.stream == "message"] == [
            e.event_id for e in published if e.stream == "message"
        ]
        assert {e.event_id for e in received} == {e.event_id for e in published}


def test_rewind_returns_what_was_read_but_not_committed(
    publisher: KafkaEventPublisher, open_source: Any
) -> None:
    published = make_envelopes(10, streams=("message",))
    publisher.publish(published)
    source = open_source("rewinder", streams=("message",))

    assert read_exactly(source, 4) == published[:4]
    source.commit()
    assert read_exactly(source, 3) == published[4:7]
    source.rewind()
    assert read_exactly(source, 6) == published[4:]


def test_events_published_after_joining_arrive(
    publisher: KafkaEventPublisher, open_source: Any
) -> None:
    source = open_source("live", streams=("message",))
    assert_nothing_more(source, wait=0.5)
    published = make_envelopes(5, streams=("message",))
    publisher.publish(published)
    assert read_exactly(source, 5) == published


def test_publish_raises_when_the_broker_is_gone(
    tmp_path: Any, kafka_broker: RunningService
) -> None:
    doomed = start_kafka_broker(tmp_path / "doomed")
    publisher = KafkaEventPublisher(doomed.url, topic_prefix="doomed", timeout=3.0)
    try:
        publisher.publish(make_envelopes(3, streams=("message",)))  # the topic now exists
        doomed.stop()
        with pytest.raises(PublishError):
            publisher.publish(make_envelopes(3, streams=("message",)))
    finally:
        doomed.stop()
        publisher.close()


def test_an_unreadable_record_stops_the_source_instead_of_being_skipped(
    kafka_broker: RunningService, prefix: str, publisher: KafkaEventPublisher, open_source: Any
) -> None:
    from kafka import KafkaProducer

    published = make_envelopes(3, streams=("message",))
    publisher.publish(published[:1])
    raw = KafkaProducer(bootstrap_servers=kafka_broker.url)
    raw.send(topic_for("message", prefix), value=b'{"schema": 99}').get(timeout=10)
    raw.close()
    publisher.publish(published[1:])
    source = open_source("strict", streams=("message",))

    for _ in range(2):  # the same batch fails again: nothing is skipped past
        with pytest.raises(UnsupportedSchemaError, match="offset 1"):
            read_exactly(source, 3, timeout=10)
    source.rewind()
    with pytest.raises(UnsupportedSchemaError):
        read_exactly(source, 3, timeout=10)


def published_in_partitions(
    kafka_broker: RunningService, prefix: str, count: int, partitions: int
) -> list[EventEnvelope]:
    """``count`` envelopes of ``count // 10`` messages, published over ``partitions``."""
    publisher = KafkaEventPublisher(kafka_broker.url, topic_prefix=prefix, partitions=partitions)
    published = make_envelopes(count, streams=("message",), aggregates_per_stream=count // 10)
    try:
        publisher.publish(published)
    finally:
        publisher.close()
    return published


def test_members_of_one_group_share_the_partitions(
    kafka_broker: RunningService, prefix: str, open_source: Any
) -> None:
    published = published_in_partitions(kafka_broker, prefix, 600, partitions=6)
    members = [open_source("shared", streams=("message",), wait=False) for _ in range(2)]
    read: list[list[EventEnvelope]] = [[], []]
    deadline = time.monotonic() + 60

    def consume(number: int) -> None:
        while sum(map(len, read)) < len(published) and time.monotonic() < deadline:
            read[number] += members[number].poll(50, 0.3)
            members[number].commit()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(consume, [0, 1]))

    assert all(read), "each member had partitions of its own to read"
    owned = [{p.partition for p in member.assignment()} for member in members]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == set(range(6))
    received = read[0] + read[1]
    assert sorted(e.event_id for e in received) == sorted(e.event_id for e in published)
    assert_in_order_per_aggregate(read[0])
    assert_in_order_per_aggregate(read[1])


def test_a_member_finishes_what_it_read_before_its_partitions_move(
    kafka_broker: RunningService, prefix: str, open_source: Any
) -> None:
    published = published_in_partitions(kafka_broker, prefix, 400, partitions=4)
    first = open_source("handover", streams=("message",))
    first_read = read_exactly(first, 100)  # never committed: a slow consumer mid-batch
    made_durable: list[float] = []
    first.on_handover(lambda: made_durable.append(time.monotonic()))

    second_read: list[tuple[float, EventEnvelope]] = []
    deadline = time.monotonic() + 60

    def later_member() -> None:
        second = open_source("handover", streams=("message",), wait=False)
        while {e.event_id for e in first_read} | {e.event_id for _, e in second_read} != {
            e.event_id for e in published
        }:
            assert time.monotonic() < deadline
            second_read.extend((time.monotonic(), e) for e in second.poll(50, 0.3))
            second.commit()

    with ThreadPoolExecutor(1) as pool:
        joining = pool.submit(later_member)
        while not joining.done():  # slowly, so that work is left when the second joins
            first_read.extend(first.poll(5, 0.3))
            time.sleep(0.2)
        joining.result()

    assert made_durable, "the first member was asked to finish before its partitions moved"
    # What the second member reads of the first one's uncommitted events, it reads after
    # the first one finished them.
    first_ids = {e.event_id for e in first_read[:100]}
    again = [at for at, e in second_read if e.event_id in first_ids]
    assert all(at > made_durable[0] for at in again)
