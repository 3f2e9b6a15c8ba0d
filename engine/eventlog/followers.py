"""The event stream as the engine sees it: envelopes from the notification log.

Embedded mode: every consumer follows the event store's notification log directly,
keeping its position in the event store's tracking table. Kafka mode: the relay
follows the log and publishes to Kafka, and consumers read Kafka
(``adapters.kafka``). Both sources hand out the same ``EventEnvelope``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    Recording,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import get_topic

from adapters.event_store import rewind_tracking
from adapters.faults import log_failure
from adapters.ports import EventSource
from domain.envelope import EventEnvelope, event_id_for
from engine.application import Sendstream
from engine.settings import Settings

log = logging.getLogger(__name__)

_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def stream_of(topic: str) -> tuple[str, str]:
    """``domain.message:Message.Delivered`` → (``message``, ``Message.Delivered``)."""
    qualname = topic.partition(":")[2]
    aggregate = qualname.partition(".")[0]
    return aggregate.lower(), qualname


def to_envelope(
    app: Sendstream, notification: Notification, recent: RecentEvents | None = None
) -> EventEnvelope:
    """The envelope of a logged event; decoded from the store unless this process just wrote it."""
    stream, event_type = stream_of(notification.topic)
    event = recent.get(notification.id) if recent is not None else None
    if event is None:
        event = app.mapper.to_domain_event(notification)
    data: dict[str, Any] = {k: v for k, v in event.__dict__.items() if k not in _ENVELOPE_FIELDS}
    aggregate_id = event.originator_id
    assert isinstance(aggregate_id, UUID)
    occurred_at = getattr(event, "timestamp", None)
    assert isinstance(occurred_at, datetime)
    return EventEnvelope(
        event_id=event_id_for(aggregate_id, event.originator_version),
        position=notification.id,
        stream=stream,
        event_type=event_type,
        aggregate_id=aggregate_id,
        aggregate_version=event.originator_version,
        occurred_at=occurred_at,
        data=data,
        event=event,
    )


class RecentEvents:
    """The domain events this process has just committed, by notification id.

    Followers in the same process (projector, delivery, scheduler) take them from
    here instead of decoding the stored JSON again; anything else (older events,
    another process's) is read from the store as usual.
    """

    def __init__(self, size: int = 50_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        # Bounded by the events' stored size as well: a submission carries its whole
        # content, so a count alone would let a day of large HTML sends hold gigabytes.
        # Followers in this process read within a second or two of the commit; one that
        # falls further behind decodes from the store, as another process would.
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._events: OrderedDict[int, tuple[DomainEventProtocol[UUID], int]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, recordings: Sequence[Recording[UUID]]) -> None:
        with self._lock:
            for recording in recordings:
                size = len(recording.notification.state)
                self._events[recording.notification.id] = (recording.domain_event, size)
                self._bytes += size
            while self._events and (
                len(self._events) > self._size or self._bytes > self._max_bytes
            ):
                _, (_, evicted) = self._events.popitem(last=False)
                self._bytes -= evicted

    def get(self, notification_id: int) -> DomainEventProtocol[UUID] | None:
        found = self._events.get(notification_id)
        return found[0] if found is not None else None


class NewEventSignal:
    """Wakes followers in this process as soon as the writer commits, instead of polling slowly."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, generation: int, timeout: float) -> int:
        with self._condition:
            if self._generation == generation:
                self._condition.wait(timeout)
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation


# Whether a consumer wants an event, asked by (aggregate id, "Message.Delivered") before
# the event is decoded.
Wanted = Callable[[UUID, str], bool]


def _originator(notification: Notification) -> UUID:
    originator = notification.originator_id
    return originator if isinstance(originator, UUID) else UUID(str(originator))


class NotificationLogSource:
    """An ``EventSource`` that reads the event store's notification log from a tracked position."""

    def __init__(
        self,
        app: Sendstream,
        tracking: TrackingRecorder,
        consumer: str,
        streams: Sequence[str] | None,
        signal: NewEventSignal | None = None,
        poll_interval: float = 0.05,
        event_types: Sequence[type] | None = None,
        recent: RecentEvents | None = None,
        wanted: Wanted | None = None,
        start_from: str | None = None,
    ) -> None:
        """``streams=None`` follows every stream, including those of aggregates added later.

        ``event_types`` narrows the read to those events in the database itself, so a
        consumer that needs one kind of event never decodes the others. ``wanted`` is
        asked of each event by its aggregate and type before it is decoded: those it
        declines are passed over as if of another stream. A consumer that has never
        committed starts where ``start_from`` (another consumer) is, if it has begun.
        """
        self._wanted = wanted
        self._app = app
        self._tracking = tracking
        self._consumer = consumer
        self._streams = None if streams is None else frozenset(streams)
        self._topics = [get_topic(cls) for cls in event_types] if event_types else []
        self._recent = recent
        self._signal = signal
        self._poll_interval = poll_interval
        self._committed = (
            tracking.max_tracking_id(consumer)
            or (tracking.max_tracking_id(start_from) if start_from else None)
            or 0
        )
        self._read_up_to = self._committed

    @property
    def committed_position(self) -> int:
        return self._committed

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        deadline = time.monotonic() + timeout
        while True:
            generation = self._signal.generation if self._signal else 0
            envelopes = self._read(max_records)
            if envelopes:
                return envelopes
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Another process's commits raise no signal here, so never sleep long on it.
            wait = min(remaining, self._poll_interval if self._signal is None else 0.2)
            if self._signal is not None:
                self._signal.wait(generation, wait)
            else:
                time.sleep(wait)

    def _read(self, max_records: int) -> list[EventEnvelope]:
        # Read past the events of other streams without returning them, but never
        # more than a few pages in one call, so that poll() stays responsive.
        for _ in range(20):
            # The newest event before the read: when none of this reader's kinds come up to
            # there, the next read starts after it. Without that, a reader of rare events
            # (the audit reader among a stream of messages) would scan everything since
            # its last one at every commit: the log has no index by topic. (Events are
            # numbered in commit order, by SQLite's one writer and PostgreSQL's table lock.)
            newest = self._app.recorder.max_notification_id() if self._topics else None
            notifications = self._app.recorder.select_notifications(
                start=self._read_up_to,
                limit=max_records,
                topics=self._topics,
                inclusive_of_start=False,
            )
            if not notifications:
                if newest is not None and newest > self._read_up_to:
                    self._read_up_to = newest
                return []
            self._read_up_to = notifications[-1].id
            wanted = (
                notifications
                if self._streams is None
                else [n for n in notifications if stream_of(n.topic)[0] in self._streams]
            )
            if self._wanted is not None:
                keep = self._wanted
                wanted = [
                    n for n in wanted
                    if keep(_originator(n), stream_of(n.topic)[1])
                ]  # fmt: skip
            if wanted:
                return [to_envelope(self._app, n, self._recent) for n in wanted]
        return []

    def commit(self) -> None:
        if self._read_up_to > self._committed:
            try:
                self._tracking.insert_tracking(Tracking(self._consumer, self._read_up_to))
            except IntegrityError:
                # The store's own retry of an insert whose answer was lost (the database
                # restarting) meets the row the first attempt wrote: committed already.
                if (self._tracking.max_tracking_id(self._consumer) or 0) < self._read_up_to:
                    raise
            self._committed = self._read_up_to

    def rewind(self) -> None:
        """Forget what was read but not committed (used after a failed batch)."""
        self._read_up_to = self._committed

    def restart_from(self, position: int) -> None:
        """Read again everything after ``position``, in this run and after a restart."""
        rewind_tracking(self._tracking, self._consumer, position)
        self._committed = self._read_up_to = position

    def close(self) -> None:
        pass


def open_event_source(
    settings: Settings,
    app: Sendstream,
    tracking: TrackingRecorder,
    consumer: str,
    streams: Sequence[str],
    signal: NewEventSignal | None = None,
    event_types: Sequence[type] | None = None,
    recent: RecentEvents | None = None,
    wanted: Wanted | None = None,
    start_from: str | None = None,
) -> EventSource:
    """Kafka when configured, else the notification log: consumers never know which.

    ``event_types`` and ``wanted`` are hints: the log decodes only those events; Kafka
    sources deliver the whole stream and the consumer ignores the rest, as it must anyway.
    ``start_from`` is the log's too: a new Kafka group reads its topics from their start.
    """
    if settings.uses_kafka:
        from adapters.kafka import KafkaEventSource

        return KafkaEventSource(
            settings.kafka_bootstrap_servers,
            group_id=f"{settings.kafka_topic_prefix}-{consumer}",
            streams=streams,
            topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions,
        )
    return NotificationLogSource(
        app, tracking, consumer, streams, signal, event_types=event_types, recent=recent,
        wanted=wanted, start_from=start_from,
    )  # fmt: skip


def run_until_stopped(name: str, step: Callable[[], object], stop: threading.Event) -> None:
    """A follower's loop: one batch per step; a failed step is logged and tried again.

    Each step rewinds its own source when it fails, so the retry starts from the last
    commit and nothing is skipped.
    """
    while not stop.is_set():
        try:
            step()
        except Exception as error:
            log_failure(log, f"{name}: batch failed; it will be read again from the last commit",
                        error)  # fmt: skip
            stop.wait(1.0)
