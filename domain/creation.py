"""Creating an aggregate where thousands are made each second (accepting mail, fanning out a
campaign): the same object and the same created event as calling the class, without the
library's generic work per call (coercing positional arguments, filtering keywords for
each method by its signature, checking topics), which was most of the cost of accepting
a message.

It holds for aggregates whose created event is their decorated ``__init__`` and whose
``__init__`` takes ``id``; ``tests/domain/test_creation.py`` checks that what it makes
is what the class makes, and what replaying the event makes.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)


def create(cls: type[A], created_event: str, id: UUID, **fields: Any) -> A:
    """``cls(id=id, **fields)``, recorded as its event named ``created_event`` (the name its
    ``__init__``'s decorator gives); ``fields`` are ``__init__``'s own."""
    created: Any = getattr(cls, created_event)
    fields = {**_defaults(cls), **fields}
    timestamp = created.create_timestamp()
    event = created(
        originator_topic=_topic(cls),
        originator_id=id,
        originator_version=cls.INITIAL_VERSION,
        timestamp=timestamp,
        **fields,
    )
    aggregate = cls.__new__(cls)
    aggregate.__base_init__(id, cls.INITIAL_VERSION, timestamp)
    initialise: Any = cls.__init__  # the undecorated body: it records nothing
    initialise(aggregate, id=id, **fields)
    event.apply(aggregate)
    aggregate.pending_events.append(event)
    return aggregate


@cache
def _defaults(cls: type[Aggregate]) -> dict[str, Any]:
    """``__init__``'s parameters with defaults: the event records them all."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


@cache
def _topic(cls: type[Aggregate]) -> str:
    """The class's topic as the library writes it for a class it has not renamed (the
    domain may not import ``eventsourcing.utils``; the test compares the two)."""
    return f"{cls.__module__}:{cls.__qualname__}"
