"""The webhook intake: turns the event stream into stored calls to customers' endpoints.

It reads the stream (Kafka, or the notification log), maps message events to ``events``
rows as the projector does, and stores one call per listening webhook in the store of
:mod:`adapters.webhook_store`, then commits its position. Storing is idempotent per
(webhook, event), so a redelivered batch stores nothing twice: at-least-once without
double calls. The callers (:mod:`engine.webhooks.calls`) make the stored calls.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from adapters.ports import EventSource
from adapters.webhook_store import WebhookStore
from engine.application import Sendstream
from engine.eventlog.followers import run_until_stopped
from engine.reporting.projector import MessageFactsCache
from engine.webhooks.commands import WebhookRegistry, jobs_for_rows
from projections.events import rows_for

# Events that change who listens: the registry forgets what it knew.
_WEBHOOK_CHANGES = ("Webhook.", "SenderDomain.WebhookAttached", "SenderDomain.WebhookDetached",
                    "SenderDomain.Deleted")  # fmt: skip


class WebhookIntake:
    """Stream → stored calls; commits the stream only once its calls are stored."""

    def __init__(
        self,
        app: Sendstream,
        source: EventSource,
        store: WebhookStore,
        registry: WebhookRegistry,
        batch_size: int = 2000,
    ) -> None:
        self._source = source
        self._store = store
        self._registry = registry
        self._batch_size = batch_size
        self._facts = MessageFactsCache(app)

    def run_once(self, timeout: float = 0.5) -> int:
        envelopes = self._source.poll(self._batch_size, timeout)
        if not envelopes:
            return 0
        try:
            if any(e.event_type.startswith(_WEBHOOK_CHANGES) for e in envelopes):
                self._registry.forget()
            rows = rows_for(envelopes, self._facts, self._facts.remember)
            jobs = jobs_for_rows(self._registry, rows, datetime.now(UTC))
            if jobs:
                self._store.enqueue(jobs, None)
        except Exception:
            self._source.rewind()
            raise
        self._source.commit()
        return len(envelopes)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("webhook-intake", self.run_once, stop)
