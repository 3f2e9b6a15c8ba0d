"""``domain.creation.create`` makes what calling the class makes, and what replaying makes."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from domain.creation import create
from domain.message import Message
from domain.submission import Submission

pytestmark = pytest.mark.unit


def _message_fields(**extra: Any) -> dict[str, Any]:
    return {
        "submission_id": uuid4(),
        "account_id": uuid4(),
        "domain_id": uuid4(),
        "recipient": "ann@example.org",
        "recipient_kind": "to",
        "sender": "news@example.com",
        "subject": "Hello",
        "tags": ["a", "b"],
        **extra,
    }


CASES: list[tuple[type[Aggregate], str, dict[str, Any]]] = [
    (Message, "Accepted", _message_fields()),
    (
        Message,
        "Accepted",
        _message_fields(campaign_id=str(uuid4()), merge_fields={"email": "x"}, custom_id="c-1"),
    ),
    (
        Submission,
        "Received",
        {
            "account_id": uuid4(),
            "domain_id": uuid4(),
            "source": "api",
            "content": {"subject": "Hi", "to": [{"email": "a@b.c", "name": ""}]},
            "message_ids": [uuid4(), uuid4()],
        },
    ),
]


def _state(aggregate: Aggregate) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def _without_timestamps(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("_created_on", "_modified_on")}


@pytest.mark.parametrize(("cls", "created_event", "fields"), CASES)
def test_create_makes_what_the_class_makes(
    cls: type[Aggregate], created_event: str, fields: dict[str, Any]
) -> None:
    aggregate_id = uuid4()
    quick = create(cls, created_event, id=aggregate_id, **fields)
    made = cls(id=aggregate_id, **fields)  # type: ignore[call-arg]

    assert _without_timestamps(_state(quick)) == _without_timestamps(_state(made))
    assert type(quick) is cls and quick.id == aggregate_id and quick.version == 1
    (quick_event,) = quick.collect_events()
    (made_event,) = made.collect_events()
    assert type(quick_event) is type(made_event) is getattr(cls, created_event)
    assert {**vars(quick_event), "timestamp": None} == {**vars(made_event), "timestamp": None}


@pytest.mark.parametrize(("cls", "created_event", "fields"), CASES)
def test_create_makes_what_replaying_its_stored_event_makes(
    cls: type[Aggregate], created_event: str, fields: dict[str, Any]
) -> None:
    app = Application[UUID]()
    quick = create(cls, created_event, id=uuid4(), **fields)
    app.save(quick)

    replayed = app.repository.get(quick.id)

    assert _state(replayed) == _state(quick)


def test_a_created_message_takes_its_next_commands() -> None:
    message = create(Message, "Accepted", id=uuid4(), **_message_fields())
    message.queue()
    message.start_attempt()

    assert [type(e).__name__ for e in message.collect_events()] == [
        "Accepted",
        "Queued",
        "DeliveryAttempted",
    ]
    assert message.version == 3
