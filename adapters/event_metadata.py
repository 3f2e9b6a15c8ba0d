"""Event metadata: who caused an event and in which request, stored with the event.

``eventsourcing`` events have no metadata slot, so the mapper adds one key to the stored
state when a request is being served (``REQUEST``), as one JSON text. Aggregates never
see it (an event applies only its method's own parameters); readers find it as the
event's ``metadata`` attribute (``metadata_of``), in the log, on Kafka and after a replay
alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent

METADATA_KEY = "metadata"


class MetadataSource(Protocol):
    def metadata(self) -> dict[str, Any]: ...


REQUEST: ContextVar[MetadataSource | None] = ContextVar("sendstream_request", default=None)


@contextmanager
def unattributed() -> Iterator[None]:
    """What is saved inside is the engine's own bookkeeping (a key's day of last use), not
    the caller's doing, though a request caused it: it carries no metadata."""
    token = REQUEST.set(None)
    try:
        yield
    finally:
        REQUEST.reset(token)


def stamp(events: Iterable[object]) -> None:
    """Give ``events`` the metadata of the request being served, if any (and if they have
    none yet): where events are saved by another thread than the request's (the event
    writer), in the request's thread before they are handed over. The event object is the
    one in-process followers read: it carries the metadata too."""
    source = REQUEST.get()
    if source is None:
        return
    metadata = source.metadata()
    if metadata:
        # Kept as one JSON text: the event store's transcoder walks every value of every
        # event it writes and reads, and a send's events are small (measured: a dictionary
        # here cost the API a tenth of its sends per second).
        encoded = orjson.dumps(metadata).decode()
        for event in events:
            event.__dict__.setdefault(METADATA_KEY, encoded)


class MetadataMapper(Mapper[UUID]):
    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        stamp((domain_event,))
        return super().to_stored_event(domain_event)


def metadata_of(event: object) -> dict[str, Any]:
    """An event's metadata (none: ``{}``)."""
    return parse_metadata(getattr(event, "__dict__", {}).get(METADATA_KEY))


def parse_metadata(stored: object) -> dict[str, Any]:
    """The metadata as stored in an event's state (or an envelope's data)."""
    if not isinstance(stored, str):
        return {}
    try:
        found = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}
