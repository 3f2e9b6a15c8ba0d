"""The relay: publishes every recorded event, in log order, to Kafka.

Its position lives in the event store's tracking table and moves only after
the broker has acknowledged the batch, so a crash can republish (consumers
deduplicate by event id) but can never skip an event.

A broker can also lose what it acknowledged: one that keeps its topics in memory, or
whose disk is lost, restarts empty, and the consumer groups' offsets go with it. Every
``check_every`` seconds, and before publishing again after a failure, the relay asks the
broker whether it still holds what it acknowledged, and records how far every consumer
group has processed (``REPLAY_FROM``, in the tracking table). If the broker lost it, the
relay goes back to that position and publishes again: nothing any group had not yet
processed is skipped, and what it had is read again and passed over.
"""

from __future__ import annotations

import logging
import threading
import time

from eventsourcing.persistence import Tracking, TrackingRecorder

from adapters.ports import EventPublisher, ForgetfulBroker
from engine.eventlog.followers import NotificationLogSource, run_until_stopped

log = logging.getLogger(__name__)

# The streams known today, for creating their topics up front. The relay itself follows
# every stream (a new aggregate's events must never be skipped), and the publisher
# creates a topic for a stream it has not seen.
ALL_STREAMS = (
    "message", "submission", "account", "senderdomain", "senderapikey", "suppressionlist",
    "webhook", "batch",
)  # fmt: skip

# The tracking name under which the relay keeps the position every group has processed.
REPLAY_FROM = "relay-replay-from"


class Relay:
    def __init__(
        self,
        source: NotificationLogSource,
        publisher: EventPublisher,
        batch_size: int = 1000,
        *,
        tracking: TrackingRecorder | None = None,
        check_every: float = 10.0,
    ) -> None:
        self._source = source
        self._publisher = publisher
        self._batch_size = batch_size
        self._tracking = tracking
        self._check_every = check_every
        self._next_check = 0.0
        self._must_check = False
        self._replay_from = (tracking.max_tracking_id(REPLAY_FROM) or 0) if tracking else 0

    def run_once(self, timeout: float = 1.0) -> int:
        if not self._broker_checked():
            time.sleep(min(timeout, 1.0))
            return 0
        envelopes = self._source.poll(self._batch_size, timeout)
        if envelopes:
            try:
                self._publisher.publish(envelopes)
            except Exception:
                self._source.rewind()
                self._must_check = True
                raise
        self._source.commit()
        return len(envelopes)

    def _broker_checked(self) -> bool:
        """False while a check that must come before publishing again cannot be made."""
        publisher = self._publisher
        if not isinstance(publisher, ForgetfulBroker) or self._tracking is None:
            return True
        if not self._must_check and time.monotonic() < self._next_check:
            return True
        try:
            lost = publisher.lost_acknowledged()
        except Exception as exc:
            log.warning("relay: could not ask the broker what it holds: %s", exc)
            self._must_check = True
            return False
        self._must_check = False
        self._next_check = time.monotonic() + self._check_every
        if lost and self._source.committed_position > self._replay_from:
            log.warning(
                "relay: the broker lost events it had acknowledged (it restarted without its "
                "data); publishing again from position %d, what every consumer group had "
                "processed", self._replay_from,
            )  # fmt: skip
        if lost:
            self._source.restart_from(self._replay_from)
            try:
                publisher.forget_acknowledged()
            except Exception as exc:
                log.warning("relay: could not make the broker's topics again: %s", exc)
                self._must_check = True
                return False
            return True
        processed = publisher.processed_by_every_group(self._source.committed_position)
        if processed is not None and processed > self._replay_from:
            self._tracking.insert_tracking(Tracking(REPLAY_FROM, processed))
            self._replay_from = processed
        return True

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("relay", self.run_once, stop)
