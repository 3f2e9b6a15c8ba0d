"""The projector: keeps the ClickHouse reporting tables in step with the event stream."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, wait
from uuid import UUID

from adapters.ports import EventSource, HandsOverWork, ReportingStore
from adapters.thread_names import named_executor
from domain.envelope import EventEnvelope
from domain.message import Message
from engine.application import Sendstream
from engine.eventlog.followers import run_until_stopped
from projections.events import (
    EVENT_TYPES,
    EncodedEvents,
    MessageFacts,
    encode_events,
    insert_new_encoded,
)


def projected_event_types() -> list[type]:
    """The event classes the ``events`` table maps, so that the notification log hands
    the projector nothing else (no submission, with its content, read for nothing)."""
    return [getattr(Message, name.partition(".")[2]) for name in EVENT_TYPES]


class MessageFactsCache:
    """Later events carry only their own fields; the projector needs the message's identity too."""

    def __init__(self, app: Sendstream, size: int = 100_000) -> None:
        # About 1.6 kB a message: 160 MB when full, which covers the few minutes between
        # a message's acceptance and its delivery even with a backlog; later events
        # (opens, clicks, bounces days later) read the message from the store.
        self._app = app
        self._size = size
        self._items: OrderedDict[UUID, MessageFacts] = OrderedDict()

    def remember(self, facts: MessageFacts) -> None:
        self._items[facts.message_id] = facts
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def peek(self, message_id: UUID) -> MessageFacts | None:
        """The facts if they are at hand, without reading the store."""
        return self._items.get(message_id)

    def __call__(self, message_id: UUID) -> MessageFacts | None:
        facts = self._items.get(message_id)
        if facts is None:
            message = self._app.message(message_id)
            facts = MessageFacts(
                message_id=message.id,
                submission_id=message.submission_id,
                account_id=message.account_id,
                domain_id=message.domain_id,
                recipient=message.recipient,
                sender=message.sender,
                subject=message.subject,
                tags=tuple(message.tags),
                campaign_id=str(message.campaign_id or ""),
                custom_id=str(message.custom_id or ""),
            )
            self.remember(facts)
        return facts


class Projector:
    """Maps stream events to reporting rows and writes each event once.

    Within one ``run_once`` up to ``pipeline`` batches are read: their rows are
    mapped (Python, holding the GIL) while earlier ones are written by a writer
    thread (chdb and the network release the GIL), so a busy stream is projected
    at the speed of the slower of the two rather than their sum. The source is
    committed only once every batch read is written.

    Inserts are few and large. Each costs ClickHouse about 80 ms of CPU whatever
    its size (a part in ``events`` and in each rollup, each view's query, the
    merges that follow), more than mapping and writing 2,000 rows, so mapped
    batches are written together, up to ``insert_rows`` rows at once, and a
    stream is written at most once per ``interval`` seconds: a run that starts
    sooner after the last insert gathers events until then. A quiet stream is
    written at once; a busy one appears in the reports up to ``interval`` later.
    """

    def __init__(
        self,
        app: Sendstream,
        source: EventSource,
        store: ReportingStore,
        batch_size: int = 10_000,
        pipeline: int = 8,
        interval: float = 1.0,
        insert_rows: int = 50_000,
    ) -> None:
        self._source = source
        self._interval = interval
        self._store = store
        self._batch_size = batch_size
        self._pipeline = max(1, pipeline)
        self._insert_rows = insert_rows
        self._facts = MessageFactsCache(app)
        self._writer = named_executor("projector-write", max_workers=1)
        self._last_insert = -interval
        # What this run has read and not yet written, and the insert under way.
        self._pending = EncodedEvents([], [], set())
        self._writing: Future[int] | None = None
        self._lock = threading.Lock()
        if isinstance(source, HandsOverWork):
            source.on_handover(self._make_durable)

    def run_once(self, timeout: float = 0.5) -> int:
        read = 0
        try:
            for _ in range(self._pipeline):
                # Wait for events only when there is nothing in hand yet.
                envelopes = self._source.poll(self._batch_size, timeout if not read else 0)
                if not envelopes:
                    break
                if not read:
                    envelopes += self._fill(
                        len(envelopes), self._last_insert + self._interval - time.monotonic()
                    )
                read += len(envelopes)
                # Encoded here, not by the writer: it is Python work, and the writer's
                # own work (chdb) runs without the GIL beside the next batch's mapping.
                encoded = encode_events(envelopes, self._facts, self._facts.remember)
                with self._lock:
                    self._pending.extend(encoded)
                    if len(self._pending) >= self._insert_rows:
                        self._finish_writing()
                        self._writing = self._writer.submit(
                            insert_new_encoded, self._store, self._pending
                        )
                        self._pending = EncodedEvents([], [], set())
                if len(envelopes) < self._batch_size:
                    break  # the stream is drained: commit now rather than wait for more
            self._make_durable()
        except Exception:
            if self._writing is not None:
                wait([self._writing])
                self._writing = None
            self._pending = EncodedEvents([], [], set())
            self._source.rewind()
            raise
        if read:
            self._last_insert = time.monotonic()
            self._source.commit()
        return read

    def _finish_writing(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _make_durable(self) -> None:
        """Write everything read so far: at the end of a run, and before the source hands
        events to another projector (which must not insert them at the same time)."""
        with self._lock:  # a Kafka source calls it from its own network thread
            self._finish_writing()
            pending, self._pending = self._pending, EncodedEvents([], [], set())
            if pending:
                insert_new_encoded(self._store, pending)

    def _fill(self, have: int, seconds: float) -> list[EventEnvelope]:
        """More events for a batch begun with ``have``, for up to ``seconds``; none if the
        stream runs dry first."""
        more: list[EventEnvelope] = []
        deadline = time.monotonic() + seconds
        while have + len(more) < self._batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            found = self._source.poll(self._batch_size - have - len(more), remaining)
            if not found:
                break
            more += found
        return more

    def run(self, stop: threading.Event) -> None:
        try:
            run_until_stopped("projector", self.run_once, stop)
        finally:
            self._writer.shutdown(wait=True)
