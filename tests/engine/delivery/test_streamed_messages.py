"""The delivery worker's messages built from the stream: exact, or not used at all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from domain.envelope import EventEnvelope, event_id_for
from domain.message import Message, MessageStatus, message_id_for
from engine.delivery.handoff import StreamedMessages


def new_message() -> Message:
    submission = uuid4()
    return Message(
        id=message_id_for(submission, 0), submission_id=submission, account_id=uuid4(),
        domain_id=uuid4(), recipient="jane@example.org", recipient_kind="to",
        sender="news@example.com", subject="Hello", tags=["welcome"],
    )  # fmt: skip


def envelope_of(event: Any, position: int = 1) -> EventEnvelope:
    name = type(event).__qualname__
    return EventEnvelope(
        event_id=event_id_for(event.originator_id, event.originator_version),
        position=position, stream="message", event_type=name,
        aggregate_id=event.originator_id, aggregate_version=event.originator_version,
        occurred_at=datetime.now(UTC), data={}, event=event,
    )  # fmt: skip


def test_a_message_is_built_from_its_accepted_and_queued_events() -> None:
    original = new_message()
    original.queue()
    accepted, queued = original.collect_events()
    streamed = StreamedMessages(since=0)
    streamed.learn(envelope_of(accepted))
    streamed.learn(envelope_of(queued))
    built = streamed.take(original.id, queued.originator_version)
    assert built is not None and built is not original
    assert built.status is MessageStatus.QUEUED and built.version == original.version
    assert vars(built) == vars(original)
    assert streamed.take(original.id, queued.originator_version) is None  # taken once


def test_an_event_it_did_not_see_leaves_it_to_the_store() -> None:
    original = new_message()
    original.queue()
    original.hold("campaign paused")
    original.queue()
    accepted, _, _, queued_again = original.collect_events()
    streamed = StreamedMessages(since=0)
    streamed.learn(envelope_of(accepted))
    streamed.learn(envelope_of(queued_again))  # the two before it were never seen
    assert streamed.take(original.id, queued_again.originator_version) is None


def test_a_message_kept_after_its_outcome_meets_its_retry() -> None:
    message = new_message()
    message.queue()
    message.collect_events()
    streamed = StreamedMessages(size=2, since=0)
    streamed.keep(message)
    retry = new_message()
    retry.queue()
    [*_, queued] = retry.collect_events()
    streamed.keep(retry)
    assert streamed.take(retry.id, queued.originator_version) is retry
    for _ in range(3):
        streamed.keep(new_message())  # bounded: the oldest goes
    assert streamed.take(message.id, message.version) is None
    # from Kafka there is no event to apply: nothing is learnt
    streamed.learn(envelope_of(queued).__class__(**{**vars(envelope_of(queued)), "event": None}))


def test_what_was_logged_before_the_worker_started_is_never_learnt() -> None:
    original = new_message()
    original.queue()
    accepted, queued = original.collect_events()
    for since in (None, 5):
        streamed = StreamedMessages(since=since)
        streamed.learn(envelope_of(accepted, position=4))
        streamed.learn(envelope_of(queued, position=5))
        # a worker that stopped may have claimed it since, in an event not read here
        assert streamed.take(original.id, queued.originator_version) is None
