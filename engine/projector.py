"""The projector: keeps the ClickHouse reporting tables in step with the event stream."""

from __future__ import annotations

import threading
from collections import OrderedDict
from uuid import UUID

from adapters.ports import EventSource, ReportingStore
from engine.application import Sendstream
from engine.stream import run_until_stopped
from projections.events import MessageFacts, facts_from_accepted, insert_new_events, rows_for


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
    def __init__(
        self,
        app: Sendstream,
        source: EventSource,
        store: ReportingStore,
        batch_size: int = 5000,
    ) -> None:
        self._source = source
        self._store = store
        self._batch_size = batch_size
        self._facts = MessageFactsCache(app)

    def run_once(self, timeout: float = 0.5) -> int:
        envelopes = self._source.poll(self._batch_size, timeout)
        try:
            for envelope in envelopes:
                # Learn each message's identity from its first event, so that its later
                # events (in later batches) never need the event store.
                if envelope.event_type == "Message.Accepted":
                    facts = facts_from_accepted(envelope.aggregate_id, envelope.data)
                    self._facts.remember(facts)
            rows = rows_for(envelopes, self._facts) if envelopes else []
            if rows:
                insert_new_events(self._store, rows)
        except Exception:
            self._source.rewind()
            raise
        self._source.commit()
        return len(envelopes)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("projector", self.run_once, stop)
