"""The published form of a domain event: what travels on the stream and into reporting.

Consumers (delivery, projections, webhooks) are written against this one shape,
whether the event came from Kafka or straight from the event store's
notification log. Versioned so that old events stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

SCHEMA_VERSION = 1

_EVENT_NAMESPACE = UUID("2b1e4f3c-7d8a-4e0f-9c61-0f3a5b7d9e21")


def event_id_for(aggregate_id: UUID, aggregate_version: int) -> UUID:
    """An event is identified by its place in its aggregate's history, so replays keep its id."""
    return uuid5(_EVENT_NAMESPACE, f"{aggregate_id}:{aggregate_version}")


@dataclass(frozen=True)
class EventEnvelope:
    event_id: UUID
    position: int  # notification id in the event store's application sequence
    stream: str  # the aggregate type, lower case: "message", "submission", …
    event_type: str  # "Message.Delivered"
    aggregate_id: UUID
    aggregate_version: int
    occurred_at: datetime
    data: dict[str, Any]
    schema: int = SCHEMA_VERSION
    # The decoded domain event, where the source has it (the notification log; not Kafka),
    # so that a consumer may bring an aggregate it holds up to date without a read.
    event: Any = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The event's own name without its aggregate: ``Delivered``."""
        return self.event_type.rpartition(".")[2]
