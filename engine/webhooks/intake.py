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
from uuid import UUID

from adapters.ports import EventSource
from adapters.webhook_store import WebhookStore
from domain.account import SenderDomain
from domain.envelope import EventEnvelope
from domain.webhook import Webhook
from engine.application import Sendstream
from engine.eventlog.followers import run_until_stopped
from engine.reporting.projector import MessageFactsCache, projected_event_types
from engine.webhooks.commands import WebhookRegistry, jobs_for_rows
from projections.events import EVENT_TYPES, facts_from_accepted, rows_for

# Events that change who listens: the registry forgets what it knew.
_WEBHOOK_CHANGES = ("Webhook.", "SenderDomain.WebhookAttached", "SenderDomain.WebhookDetached",
                    "SenderDomain.Deleted")  # fmt: skip


def intake_event_types() -> list[type]:
    """The event classes the intake reads: the message events rows are made of, and those
    that change who listens."""
    changes = [
        cls
        for owner in (Webhook, SenderDomain)
        for cls in vars(owner).values()
        if isinstance(cls, type)
        and issubclass(cls, owner.Event)
        and f"{owner.__name__}.{cls.__name__}".startswith(_WEBHOOK_CHANGES)
    ]
    return [*projected_event_types(), *changes]


class WebhookInterest:
    """Asked of each event before it is decoded (``NotificationLogSource``'s ``wanted``):
    a message event of a domain known to have no webhooks is not worth decoding, and most
    domains have none."""

    def __init__(self, registry: WebhookRegistry, facts: MessageFactsCache) -> None:
        self._registry = registry
        self._facts = facts

    def wants(self, message_id: UUID, event_type: str) -> bool:
        if event_type.startswith(_WEBHOOK_CHANGES):
            # Asked in log order: the events after this one are judged by who listens now.
            self._registry.forget()
            return True
        if event_type not in EVENT_TYPES:
            return False
        if event_type == "Message.Accepted":
            return True  # it names the message's domain
        facts = self._facts.peek(message_id)
        return facts is None or bool(self._registry.for_domain(facts.domain_id).by_event)


class WebhookIntake:
    """Stream → stored calls; commits the stream only once its calls are stored."""

    def __init__(
        self,
        app: Sendstream,
        source: EventSource,
        store: WebhookStore,
        registry: WebhookRegistry,
        batch_size: int = 2000,
        facts: MessageFactsCache | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._registry = registry
        self._batch_size = batch_size
        self._facts = facts or MessageFactsCache(app)

    def run_once(self, timeout: float = 0.5) -> int:
        envelopes = self._source.poll(self._batch_size, timeout)
        if not envelopes:
            return 0
        try:
            if any(e.event_type.startswith(_WEBHOOK_CHANGES) for e in envelopes):
                self._registry.forget()
            listened = [e for e in envelopes if self._listened(e)]
            rows = rows_for(listened, self._facts, self._facts.remember) if listened else []
            jobs = jobs_for_rows(self._registry, rows, datetime.now(UTC))
            if jobs:
                self._store.enqueue(jobs, None)
        except Exception:
            self._source.rewind()
            raise
        self._source.commit()
        return len(envelopes)

    def _listened(self, envelope: EventEnvelope) -> bool:
        """Whether a webhook of the event's sender domain may want it: only those events
        are mapped to rows (most domains have no webhooks, and mapping is most of the cost)."""
        if envelope.event_type not in EVENT_TYPES:
            return False
        if envelope.event_type == "Message.Accepted":
            facts = facts_from_accepted(envelope.aggregate_id, envelope.data)
            self._facts.remember(facts)
        else:
            found = self._facts(envelope.aggregate_id)
            if found is None:
                return True  # rows_for says what is missing
            facts = found
        return bool(self._registry.for_domain(facts.domain_id).by_event)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("webhook-intake", self.run_once, stop)
