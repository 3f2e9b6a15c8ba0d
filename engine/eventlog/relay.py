"""The relay: publishes every recorded event, in log order, to Kafka.

Its position lives in the event store's tracking table and moves only after
the broker has acknowledged the batch, so a crash can republish (consumers
deduplicate by event id) but can never skip an event.
"""

from __future__ import annotations

import threading

from adapters.ports import EventPublisher
from engine.eventlog.followers import NotificationLogSource, run_until_stopped

# The streams known today, for creating their topics up front. The relay itself follows
# every stream (a new aggregate's events must never be skipped), and the publisher
# creates a topic for a stream it has not seen.
ALL_STREAMS = (
    "message", "submission", "account", "senderdomain", "senderapikey", "suppressionlist",
    "webhook",
)  # fmt: skip


class Relay:
    def __init__(
        self, source: NotificationLogSource, publisher: EventPublisher, batch_size: int = 1000
    ) -> None:
        self._source = source
        self._publisher = publisher
        self._batch_size = batch_size

    def run_once(self, timeout: float = 1.0) -> int:
        envelopes = self._source.poll(self._batch_size, timeout)
        if envelopes:
            try:
                self._publisher.publish(envelopes)
            except Exception:
                self._source.rewind()
                raise
        self._source.commit()
        return len(envelopes)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("relay", self.run_once, stop)
