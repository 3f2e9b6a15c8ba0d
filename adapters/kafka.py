"""Kafka adapter (kafka-python): the event stream at scale.

One topic per stream (``{prefix}.{stream}``), keyed by aggregate id so that one
aggregate's events stay in one partition and therefore in order. Delivery is
at least once: the publisher returns only once the broker acknowledged every
record, and a source commits only when its caller says the effects are durable.

Tested against Tansu (a Kafka-protocol broker); see ``tests/adapters/test_kafka.py``.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    for_code,
)

from domain.envelope import SCHEMA_VERSION, EventEnvelope

__all__ = [
    "DEFAULT_TOPIC_PREFIX",
    "EnvelopeDecodeError",
    "KafkaEventPublisher",
    "KafkaEventSource",
    "PublishError",
    "UnsupportedSchemaError",
    "decode_envelope",
    "encode_envelope",
    "ensure_topics",
    "topic_for",
]

logger = logging.getLogger(__name__)

DEFAULT_TOPIC_PREFIX = "sendstream"

# How long the relay waits to read a record back from the broker.
_READ_SECONDS = 3.0

# Kafka's own rule for topic names.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

_REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "event_id": str,
    "position": int,
    "stream": str,
    "event_type": str,
    "aggregate_id": str,
    "aggregate_version": int,
    "occurred_at": str,
    "data": dict,
}


class EnvelopeDecodeError(ValueError):
    """A record on the stream is not an envelope this code can read."""


class UnsupportedSchemaError(EnvelopeDecodeError):
    """The envelope was written by a newer Sendstream than the one reading it.

    Raised rather than guessed at: an old consumer must be upgraded, not skip events.
    """


class PublishError(RuntimeError):
    """The broker did not acknowledge every record of a ``publish`` call.

    Some records may have been written: callers retry the whole batch (at least once).
    """


# --- the wire format -------------------------------------------------------------------


def encode_envelope(envelope: EventEnvelope) -> bytes:
    """The envelope as an orjson document; UUIDs and datetimes in ``data`` become strings."""
    if envelope.occurred_at.utcoffset() is None:
        raise ValueError(f"occurred_at must carry a timezone: {envelope.occurred_at!r}")
    return orjson.dumps(
        {
            "schema": envelope.schema,
            "event_id": envelope.event_id,
            "position": envelope.position,
            "stream": envelope.stream,
            "event_type": envelope.event_type,
            "aggregate_id": envelope.aggregate_id,
            "aggregate_version": envelope.aggregate_version,
            "occurred_at": envelope.occurred_at,
            "data": envelope.data,
        }
    )


def decode_envelope(payload: bytes) -> EventEnvelope:
    """The inverse of ``encode_envelope``; ``data`` values stay as JSON (strings, not UUIDs)."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeDecodeError(f"envelope is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise EnvelopeDecodeError(f"envelope must be a JSON object, got {type(document).__name__}")
    schema = document.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise EnvelopeDecodeError(f"envelope has no valid schema version: {schema!r}")
    if schema > SCHEMA_VERSION:
        raise UnsupportedSchemaError(
            f"envelope schema {schema} is newer than this reader's {SCHEMA_VERSION}; "
            "upgrade this consumer"
        )
    for field, expected in _REQUIRED_FIELDS.items():
        value = document.get(field)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise EnvelopeDecodeError(f"envelope field {field!r} is missing or invalid: {value!r}")
    try:
        occurred_at = datetime.fromisoformat(document["occurred_at"])
        event_id = UUID(document["event_id"])
        aggregate_id = UUID(document["aggregate_id"])
    except ValueError as exc:
        raise EnvelopeDecodeError(f"envelope field is malformed: {exc}") from exc
    if occurred_at.utcoffset() is None:
        raise EnvelopeDecodeError(f"occurred_at has no timezone: {document['occurred_at']!r}")
    return EventEnvelope(
        event_id=event_id,
        position=document["position"],
        stream=document["stream"],
        event_type=document["event_type"],
        aggregate_id=aggregate_id,
        aggregate_version=document["aggregate_version"],
        occurred_at=occurred_at,
        data=document["data"],
        schema=schema,
    )


def topic_for(stream: str, topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The topic that carries one stream's events."""
    topic = f"{topic_prefix}.{stream}"
    if not _TOPIC_NAME.match(topic):
        raise ValueError(f"not a valid Kafka topic name: {topic!r}")
    return topic


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    client_id: str = "sendstream-admin",
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are.

    An existing topic with fewer partitions than asked is only reported: adding
    partitions moves keys, so an aggregate's next events could be read before its
    earlier ones. The README says how an operator grows them (drain first).
    """
    wanted = sorted(set(topics))
    if not wanted:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    try:
        existing = set(admin.list_topics())
        _report_fewer_partitions(admin, [t for t in wanted if t in existing], partitions)
        missing = [topic for topic in wanted if topic not in existing]
        if not missing:
            return
        result = admin.create_topics(
            {
                topic: {"num_partitions": partitions, "replication_factor": replication_factor}
                for topic in missing
            },
            raise_errors=False,
        )
        for outcome in result["topics"]:
            error = for_code(outcome["error_code"])
            # Another process may have created it between our listing and our request.
            if outcome["error_code"] != 0 and error is not TopicAlreadyExistsError:
                raise error(f"cannot create topic {outcome['name']!r}: {outcome['error_message']}")
        logger.info("created Kafka topics %s", ", ".join(missing))
    finally:
        admin.close()


def _report_fewer_partitions(admin: KafkaAdminClient, topics: list[str], partitions: int) -> None:
    if not topics or partitions <= 1:
        return
    for described in admin.describe_topics(topics):
        have = len(described.get("partitions") or ())
        if 0 < have < partitions:
            logger.warning(
                "topic %s has %d partitions, KAFKA_PARTITIONS asks for %d: at most %d "
                "processes of a role share its work until an operator grows it (README: "
                "Kafka partitions)",
                described.get("name"), have, partitions, have,
            )  # fmt: skip


def group_offsets(
    bootstrap_servers: str, group_id: str, client_id: str = "sendstream-admin"
) -> dict[tuple[str, int], tuple[int, int | None]]:
    """Each partition a consumer group has committed in: ``(committed, end)`` offsets, the
    end as the broker reports it (None if it did not). Empty for a group never committed."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    try:
        committed = admin.list_group_offsets({group_id: None}).get(group_id, {})
    finally:
        admin.close()
    if not committed:
        return {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, client_id=client_id)
    try:
        ends = consumer.end_offsets(list(committed))
    finally:
        consumer.close()
    return {
        (partition.topic, partition.partition): (int(offset.offset), ends.get(partition))
        for partition, offset in committed.items()
    }


# --- publishing ------------------------------------------------------------------------


class KafkaEventPublisher:
    """Puts envelopes on their stream's topic and waits for the broker to acknowledge them.

    The producer is idempotent (``acks='all'``), so its own retries never duplicate a
    record; a failed ``publish`` raises and the caller publishes the batch again.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        *,
        streams: Sequence[str] = (),
        partitions: int = 1,
        replication_factor: int = 1,
        timeout: float = 30.0,
        client_id: str = "sendstream-publisher",
        linger_ms: int = 5,
        batch_size: int = 256 * 1024,
        expected_groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``expected_groups``: the consumer groups of the installation (``{prefix}-name``)
        and the streams each reads, counted by ``processed_by_every_group`` even before
        they first commit (a group that had not would otherwise be passed over)."""
        self._bootstrap_servers = bootstrap_servers
        self._topic_prefix = topic_prefix
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._timeout = timeout
        self._known_topics: set[str] = set()
        self._streams = tuple(streams)
        # Per partition, the offset after the last record the broker acknowledged: a
        # broker that holds fewer has lost what it had acknowledged (a restart without
        # its data), and the relay must publish it again.
        self._acknowledged: dict[TopicPartition, int] = {}
        self._groups = f"{topic_prefix}-"
        self._expected = {
            f"{topic_prefix}-{name}": {topic_for(stream, topic_prefix) for stream in streams}
            for name, streams in (expected_groups or {}).items()
        }
        self._mark = f"{topic_prefix}.relay"
        self._admin: KafkaAdminClient | None = None
        self._reader: KafkaConsumer | None = None
        # Every record is acknowledged or failed by the producer itself within
        # ``timeout``, so when ``publish`` returns or raises nothing is left in flight.
        delivery_timeout_ms = max(int(timeout * 1000), 2 * linger_ms + 1000)
        self._producer_settings: dict[str, object] = dict(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            batch_size=batch_size,
            delivery_timeout_ms=delivery_timeout_ms,
            request_timeout_ms=min(30_000, delivery_timeout_ms - linger_ms),
            max_block_ms=delivery_timeout_ms,
            # Topics are made by ensure_topics, with our partitions: a send to a topic a
            # broker lost would otherwise make it again with the broker's own number
            # (Tansu: 4), and consumers still holding ours left the others unread.
            allow_auto_create_topics=False,
        )
        self._producer: KafkaProducer | None = KafkaProducer(**self._producer_settings)
        self._ensure_streams(streams)

    def publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Returns only once every envelope is acknowledged; raises ``PublishError`` otherwise."""
        if not envelopes:
            return
        try:
            self._publish(envelopes)
        except PublishError:
            self._start_again()
            raise
        except KafkaError as exc:
            self._start_again()
            raise PublishError(f"the broker is unavailable: {exc}") from exc

    def _current_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self._producer_settings)
        return self._producer

    def _start_again(self) -> None:
        """A new producer, and the topics checked again. A broker that restarted without
        its data forgets the idempotent producer's id, and kafka-python's producer then
        fails every send (UnknownProducerIdError, then UnknownError on a new id) until it
        is replaced; the topics it had may be gone too."""
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.close(timeout=0)
        self._producer = None  # made again when next needed: the broker may still be away
        self._known_topics.clear()

    def _publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        self._ensure_streams({envelope.stream for envelope in envelopes})
        producer = self._current_producer()
        futures = []
        try:
            for envelope in envelopes:
                futures.append(
                    producer.send(
                        topic_for(envelope.stream, self._topic_prefix),
                        value=encode_envelope(envelope),
                        key=str(envelope.aggregate_id).encode(),
                        headers=[
                            ("event_id", str(envelope.event_id).encode()),
                            ("position", str(envelope.position).encode()),
                            ("event_type", envelope.event_type.encode()),
                        ],
                    )
                )
        except KafkaError as exc:
            raise PublishError(
                f"could not hand envelope {len(futures)} to the producer: {exc}"
            ) from exc
        try:
            # The margin lets the producer expire what it could not deliver first.
            producer.flush(timeout=self._timeout + 5.0)
        except KafkaError as exc:
            raise PublishError(f"broker did not acknowledge the batch in time: {exc}") from exc
        failures: list[BaseException] = []
        for future in futures:
            if not future.is_done:
                failures.append(TimeoutError("record still in flight after flush"))
            elif future.failed():
                failures.append(future.exception)
        if failures:
            raise PublishError(
                f"{len(failures)} of {len(envelopes)} envelopes were not acknowledged; "
                f"first error: {failures[0]!r}"
            ) from failures[0]
        for future in futures:
            written = future.value
            partition = TopicPartition(written.topic, written.partition)
            self._acknowledged[partition] = max(
                self._acknowledged.get(partition, 0), written.offset + 1
            )

    def lost_acknowledged(self) -> bool:
        """Whether the broker has lost what it acknowledged: it restarted without its data
        (a broker keeping topics in memory, or one whose disk was lost). The publisher
        leaves a mark (a record on ``{prefix}.relay``) and looks for it; a broker without
        the mark says so. On a new installation there was nothing to lose either way.
        Raises ``KafkaError`` if the broker cannot be asked.

        Not by comparing end offsets: the test broker (Tansu) reports end offsets that
        lag what it has acknowledged and consumers read (730 of 750, seconds later)."""
        try:
            return not self._mark_present()
        except Exception:
            self._close_inspectors()  # their connections may be to the broker that went
            raise

    def _mark_present(self) -> bool:
        if self._mark not in self._admin_client().list_topics():
            return False
        reader = self._records_reader()
        first = TopicPartition(self._mark, 0)
        reader.assign([first])
        reader.seek_to_beginning(first)
        deadline = time.monotonic() + _READ_SECONDS
        while time.monotonic() < deadline:
            if reader.poll(timeout_ms=200, max_records=1).get(first):
                return True
        return False

    def _leave_mark(self) -> None:
        ensure_topics(self._bootstrap_servers, [self._mark], partitions=1)
        self._current_producer().send(self._mark, value=b"relay").get(timeout=self._timeout)

    def forget_acknowledged(self) -> None:
        """Once the relay has gone back to publish again what the broker lost: the topics
        made again as configured (consumers waiting on a topic that is gone block their
        commits), and the mark left again, last, so that a failure before it is met by
        the next check as the same loss."""
        self._acknowledged.clear()
        self._known_topics.clear()
        self._ensure_streams(self._streams)
        self._leave_mark()

    def processed_by_every_group(self, published: int) -> int | None:
        """The log position up to which every consumer group of this installation (its
        groups are named ``{prefix}-…``) has committed everything it reads, at most
        ``published``, the position up to which the broker has acknowledged everything.
        A group behind in a partition has processed up to just before the record at its
        committed offset, whose position the record carries. None if it cannot be told
        now (the broker away, or a record it acknowledged not read back in time)."""
        try:
            return self._processed_by_every_group(published)
        except KafkaError as exc:
            logger.warning("could not read the consumer groups' positions: %s", exc)
            self._close_inspectors()
            return None

    def _processed_by_every_group(self, published: int) -> int | None:
        admin = self._admin_client()
        listed = [str(group["group_id"]) for group in admin.list_groups()]
        ours = sorted({g for g in listed if g.startswith(self._groups)} | set(self._expected))
        reader = self._records_reader()
        lowest: dict[TopicPartition, int] = {}  # the lowest offset any group committed
        for group in ours:  # one at a time: brokers before Kafka 3.0 answer one a request
            committed = admin.list_group_offsets({group: None}).get(group, {})
            # A group reads every partition of the topics it has committed in; one it has
            # not committed in yet is read from its start.
            topics = {partition.topic for partition in committed} | self._expected.get(group, set())
            for topic in topics:
                for number in sorted(reader.partitions_for_topic(topic) or ()):
                    partition = TopicPartition(topic, number)
                    found = committed.get(partition)
                    offset = max(found.offset, 0) if found is not None else 0
                    lowest[partition] = min(lowest.get(partition, offset), offset)
        behind = {
            partition: offset
            for partition, offset in lowest.items()
            if offset < self._acknowledged.get(partition, sys.maxsize)
        }
        positions = self._positions_at(behind)
        low = published
        for partition, offset in behind.items():
            if partition in positions:
                low = min(low, positions[partition] - 1)
            elif partition in self._acknowledged:
                return None  # acknowledged, yet not read back in time
            else:
                # Nothing at that offset: the partition ends there. This publisher is
                # the only one, so the end moves only with what it publishes next.
                self._acknowledged[partition] = offset
        return low

    def _positions_at(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The log position of the record at each offset, for those that have one."""
        if not offsets:
            return {}
        reader = self._records_reader()
        reader.assign(list(offsets))
        for partition, offset in offsets.items():
            reader.seek(partition, offset)
        found: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + _READ_SECONDS
        while len(found) < len(offsets) and time.monotonic() < deadline:
            for partition, records in reader.poll(timeout_ms=200, max_records=500).items():
                if partition in found or not records:
                    continue
                found[partition] = next(
                    (int(value) for name, value in records[0].headers or () if name == "position"),
                    0,
                )
                reader.pause(partition)
        return found

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap_servers, client_id="sendstream-relay-admin"
            )
        return self._admin

    def _records_reader(self) -> KafkaConsumer:
        if self._reader is None:
            self._reader = KafkaConsumer(
                bootstrap_servers=self._bootstrap_servers,
                client_id="sendstream-relay-reader",
                enable_auto_commit=False,
                allow_auto_create_topics=False,
            )
        return self._reader

    def _close_inspectors(self) -> None:
        for client in (self._admin, self._reader):
            if client is not None:
                with contextlib.suppress(KafkaError):
                    client.close()
        self._admin, self._reader = None, None

    def close(self) -> None:
        self._close_inspectors()
        if self._producer is None:
            return
        try:
            self._producer.close(timeout=self._timeout)
        except KafkaError:
            logger.warning("Kafka producer closed with records still unacknowledged")

    def _ensure_streams(self, streams: Iterable[str]) -> None:
        topics = {topic_for(stream, self._topic_prefix) for stream in streams}
        missing = topics - self._known_topics
        if missing:
            ensure_topics(
                self._bootstrap_servers,
                missing,
                partitions=self._partitions,
                replication_factor=self._replication_factor,
            )
            self._known_topics |= missing


# --- consuming -------------------------------------------------------------------------


class KafkaEventSource:
    """A consumer group's cursor over some streams; the Kafka form of ``EventSource``.

    Offsets are committed only by ``commit()``, never automatically, so a crash
    between ``poll`` and ``commit`` means the events come again (at least once).

    The broker holds a new member's first JoinGroup for about half the session
    timeout (Tansu: ~3 s at 6 s, ~23 s with kafka-python's 45 s default); the
    short session timeout here keeps start-up quick.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        streams: Sequence[str],
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        client_id: str = "sendstream-source",
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        max_poll_interval_ms: int = 60_000,
        max_poll_records: int = 500,
    ) -> None:
        if not streams:
            raise ValueError("a source needs at least one stream")
        self._topics = sorted({topic_for(stream, topic_prefix) for stream in streams})
        # Subscribing to a topic that does not exist yet leaves the member without
        # partitions until the next metadata refresh; create them up front instead.
        ensure_topics(
            bootstrap_servers,
            self._topics,
            partitions=partitions,
            replication_factor=replication_factor,
        )
        self._make_durable: Callable[[], None] | None = None
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            max_poll_records=max_poll_records,
            # A broker that lost its data may make a topic again with its own number of
            # partitions (Tansu: 4) before the relay makes it with ours. A member whose
            # metadata still says ours takes part in a split that leaves the others
            # unread until it refreshes: every 10 s here, not kafka-python's 5 minutes.
            allow_auto_create_topics=False,
            metadata_max_age_ms=10_000,
        )
        self._consumer.subscribe(topics=self._topics, listener=_Handover(self))

    def on_handover(self, make_durable: Callable[[], None]) -> None:
        """See :class:`adapters.ports.HandsOverWork`: called inside ``poll`` when the group
        takes partitions from this member."""
        self._make_durable = make_durable

    def _hand_over(self, revoked: set[TopicPartition]) -> None:
        # Runs on kafka-python's network thread, where the consumer's own blocking calls
        # (commit) are refused: the work is finished, not committed. The next owner reads
        # the uncommitted events again, after they are durable, and skips what is done.
        if self._make_durable is not None:
            try:
                self._make_durable()
            except Exception:
                logger.exception(
                    "could not finish the work read from %s before handing it over",
                    _describe(revoked),
                )

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns right now (empty until the group is joined)."""
        assigned: set[TopicPartition] = self._consumer.assignment()
        return assigned

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        """Up to ``max_records`` envelopes after the last ones returned, each partition in order.

        Partitions are merged by event-store position, so a batch spanning several
        streams comes out close to the order the events were stored in.
        """
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        per_partition: list[list[EventEnvelope]] = []
        for partition, records in sorted(batches.items(), key=lambda item: _partition_key(item[0])):
            decoded: list[EventEnvelope] = []
            for record in records:
                try:
                    decoded.append(decode_envelope(record.value))
                except EnvelopeDecodeError as exc:
                    # Put the whole batch back: skipping it would let the next commit
                    # count these events as processed. The consumer stays stuck, loudly.
                    for unread, batch in batches.items():
                        if batch:
                            self._consumer.seek(unread, batch[0].offset)
                    raise type(exc)(
                        f"{partition.topic}[{partition.partition}] offset {record.offset}: {exc}"
                    ) from exc
            per_partition.append(decoded)
        if len(per_partition) == 1:
            return per_partition[0]
        # heapq.merge only ever takes the head of one list, so each partition keeps its order.
        return list(heapq.merge(*per_partition, key=lambda envelope: envelope.position))

    def commit(self) -> None:
        """Commit, synchronously, the position after everything ``poll`` returned."""
        try:
            self._consumer.commit()
        except (CommitFailedError, RebalanceInProgressError):
            # The group rebalanced since the last poll: those partitions belong to
            # another member now, which re-reads from the last committed offset.
            logger.warning("commit failed after a rebalance; uncommitted events will come again")
        except KafkaTimeoutError:
            # kafka-python retries a commit the broker refuses for a passing reason (a
            # topic it no longer knows, after a restart without its data) for 30 s. The
            # work is done and durable; only its commit is missing.
            logger.warning("the broker did not take the commit in time; uncommitted events "
                           "will come again")  # fmt: skip

    def rewind(self) -> None:
        """Forget what was returned but not committed: the next ``poll`` reads it again.

        For a consumer whose batch failed. Without it the consumer's position has
        already moved past the failed batch, and the next successful ``commit``
        would count the failed events as processed.
        """
        for partition in self._consumer.assignment():
            committed = self._consumer.committed(partition)
            if committed is None:
                self._consumer.seek_to_beginning(partition)
            else:
                self._consumer.seek(partition, committed)

    def wait_until_assigned(self, timeout: float = 30.0) -> set[TopicPartition]:
        """Block until the group has given this member its partitions.

        Records fetched while waiting are not lost: the next ``poll`` returns them.
        """
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"consumer group did not assign partitions of {self._topics} "
                    f"within {timeout:.1f}s"
                )
            batches = self._consumer.poll(timeout_ms=100, max_records=1)
            for partition, records in batches.items():
                if records:
                    self._consumer.seek(partition, records[0].offset)
        return self.assignment()

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def __enter__(self) -> KafkaEventSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _partition_key(partition: TopicPartition) -> tuple[str, int]:
    return (partition.topic, partition.partition)


def _describe(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in sorted(partitions, key=_partition_key))


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Logs each rebalance; before partitions go, finishes what was read from them."""

    def __init__(self, source: KafkaEventSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            logger.info("handing over %s", _describe(revoked))
            self._source._hand_over(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("assigned %s", _describe(assigned) or "no partitions")
