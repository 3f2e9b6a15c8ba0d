"""The message clock: queues messages whose SendAt or retry time has come.

It follows the notification log itself in both modes (it keeps its timers
next to the event store, and its position with them in one transaction),
then issues ``queue`` commands when timers fall due.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from adapters.faults import log_failure
from adapters.schedule_store import ScheduleStore
from domain.message import IllegalTransition, Message, MessageStatus
from engine.application import Sendstream
from engine.eventlog.followers import stream_of, to_envelope
from engine.eventlog.writer import BatchWriter

log = logging.getLogger(__name__)

# Timers are set by these (whose data must be decoded) …
_SETTING_EVENTS = {
    "Message.Scheduled": "send_at",
    "Message.Deferred": "retry_at",
    "Message.Postponed": "until",
}
# … and cleared by these, for which the aggregate id alone is enough. A message with a
# timer leaves its Scheduled, Deferred or Postponed state only by being queued or failed (Delivered
# and Bounced come after a Queued), so no other event needs reading at all.
_CLEARING_EVENTS = frozenset({"Message.Queued", "Message.Failed"})
SCHEDULER_TOPICS = [
    get_topic(getattr(Message, name.partition(".")[2]))
    for name in sorted({*_SETTING_EVENTS, *_CLEARING_EVENTS})
]


class Scheduler:
    def __init__(
        self, app: Sendstream, writer: BatchWriter, store: ScheduleStore, batch_size: int = 2000
    ) -> None:
        self._app = app
        self._writer = writer
        self._store = store
        self._batch_size = batch_size

    def follow_once(self) -> int:
        """Read the next page of the log and update the timers; returns events read."""
        start = self._store.position() or 0
        notifications = self._app.recorder.select_notifications(
            start=start, limit=self._batch_size, topics=SCHEDULER_TOPICS, inclusive_of_start=False
        )
        if not notifications:
            return 0
        due: dict[UUID, datetime] = {}
        clear: set[UUID] = set()
        for notification in notifications:
            event_type = stream_of(notification.topic)[1]
            if event_type in _CLEARING_EVENTS:
                aggregate_id = UUID(str(notification.originator_id))
                due.pop(aggregate_id, None)
                clear.add(aggregate_id)
            elif event_type in _SETTING_EVENTS:
                envelope = to_envelope(self._app, notification)
                due[envelope.aggregate_id] = envelope.data[_SETTING_EVENTS[event_type]]
                clear.discard(envelope.aggregate_id)
        self._store.apply(due.items(), clear, notifications[-1].id)
        return len(notifications)

    def queue_due(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        ready: list[Message] = []
        for message_id in self._store.due(now, self._batch_size):
            message = self._app.message(message_id)
            if message.status in (MessageStatus.SCHEDULED, MessageStatus.DEFERRED):
                try:
                    message.queue()
                except IllegalTransition:
                    continue
                ready.append(message)
        if ready:
            try:
                self._writer.save(ready)
            except IntegrityError:
                log.info("scheduler: a message changed while being queued; retrying next tick")
        return len(ready)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                while self.follow_once() >= self._batch_size:
                    pass
                self.queue_due()
            except Exception as error:
                log_failure(log, "scheduler: tick failed", error)
            stop.wait(interval)
