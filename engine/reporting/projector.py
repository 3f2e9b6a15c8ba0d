"""The projector: keeps the ClickHouse reporting tables in step with the event stream."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, wait
from uuid import UUID

from adapters.ports import EventSource, ReportingStore
from adapters.thread_names import named_executor
from domain.envelope import EventEnvelope
from domain.message import Message
from engine.application import Sendstream
from engine.eventlog.followers import run_until_stopped
from projections.events import EVENT_TYPES, MessageFacts, insert_new_events, rows_for


def projected_event_types() -> list[type]:
    """The event classes the ``events`` table maps, so that the notification log hands
    the projector nothing else (no submission, with its content, read for nothing)."""
    return [getattr(Message, name.partition(".")[2]) for name in EVENT_TYPES]


class MessageFactsCache:
    """Later events carry only their own fields; the projector needs the message's identity too."""

    def __init__(self, app: Sendstream, size: int = 200_000) -> None:
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

    Within one ``run_once`` up to ``pipeline`` batches are read: the rows of
    each batch are mapped (Python, holding the GIL) while the previous batch is
    written by a writer thread (chdb and the network release the GIL), so a
    busy stream is projected at the speed of the slower of the two rather than
    their sum. The source is committed only once every batch read is written.
    """

    def __init__(
        self,
        app: Sendstream,
        source: EventSource,
        store: ReportingStore,
        batch_size: int = 5000,
        pipeline: int = 8,
        linger: float = 0.5,
        linger_from: int = 100,
    ) -> None:
        self._source = source
        self._linger = linger
        self._linger_from = linger_from
        self._store = store
        self._batch_size = batch_size
        self._pipeline = max(1, pipeline)
        self._facts = MessageFactsCache(app)
        self._writer = named_executor("projector-write", max_workers=1)

    def run_once(self, timeout: float = 0.5) -> int:
        read = 0
        writing: Future[int] | None = None
        try:
            for _ in range(self._pipeline):
                # Wait for events only when there is nothing in hand yet.
                envelopes = self._source.poll(self._batch_size, timeout if not read else 0)
                if not envelopes:
                    break
                if not read and len(envelopes) >= self._linger_from:
                    envelopes += self._fill(len(envelopes))
                read += len(envelopes)
                # Encoded here, not by the writer: it is Python work, and the writer's
                # own work (chdb) runs without the GIL beside the next batch's mapping.
                lines: list[str] = []
                rows = rows_for(envelopes, self._facts, self._facts.remember, lines)
                if writing is not None:
                    writing.result()
                    writing = None
                if rows:
                    writing = self._writer.submit(insert_new_events, self._store, rows, lines=lines)
                if len(envelopes) < self._batch_size:
                    break  # the stream is drained: commit now rather than wait for more
            if writing is not None:
                writing.result()
        except Exception:
            if writing is not None:
                wait([writing])
            self._source.rewind()
            raise
        if read:
            self._source.commit()
        return read

    def _fill(self, have: int) -> list[EventEnvelope]:
        """More events for a batch begun with ``have``, for up to ``linger`` seconds.

        Each insert makes a part in the events table and in every rollup, which ClickHouse
        then merges in the background: a trickle written as it comes costs more CPU in
        merges than in everything else the projector does (measured: a third of the
        engine's CPU per message). Lingering puts reports at most that much later, and
        only on a busy stream (a first poll of ``linger_from`` events or more): a quiet
        one is written at once."""
        more: list[EventEnvelope] = []
        deadline = time.monotonic() + self._linger
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
