"""The Message lifecycle: legal paths work, and no sequence of commands reaches an illegal state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.message import (
    FINAL_STATUSES,
    IllegalTransition,
    Message,
    MessageStatus,
    message_id_for,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SCHEDULE = [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30)]
LIFETIME = timedelta(hours=2)


def new_message(send_at: datetime | None = None) -> Message:
    submission = uuid4()
    message = Message(
        id=message_id_for(submission, 0),
        submission_id=submission,
        account_id=uuid4(),
        domain_id=uuid4(),
        recipient="jane@example.org",
        recipient_kind="to",
        sender="news@example.com",
        subject="Hello",
        tags=["welcome"],
    )
    if send_at is not None:
        message.schedule(send_at)
    return message


def event_names(message: Message) -> list[str]:
    return [type(e).__name__ for e in message.collect_events()]


def test_happy_path_records_each_step_as_an_event() -> None:
    message = new_message()
    message.queue()
    message.start_attempt()
    message.record_delivered(250, "2.0.0", "ok")
    assert message.status is MessageStatus.DELIVERED
    assert event_names(message) == ["Accepted", "Queued", "DeliveryAttempted", "Delivered"]


def test_message_ids_are_stable_per_submission_and_recipient() -> None:
    submission = uuid4()
    assert message_id_for(submission, 0) == message_id_for(submission, 0)
    assert message_id_for(submission, 0) != message_id_for(submission, 1)


def test_temporary_failure_defers_on_the_schedule_then_requeues() -> None:
    message = new_message()
    message.queue()
    message.start_attempt()
    message.record_deferred(
        451, "4.3.0", "try later", now=NOW, first_accepted_at=NOW,
        retry_schedule=SCHEDULE, lifetime=LIFETIME,
    )  # fmt: skip
    assert message.status is MessageStatus.DEFERRED
    assert message.next_attempt_at == NOW + SCHEDULE[0]
    message.queue()
    message.start_attempt()
    message.record_deferred(
        451, "4.3.0", "try later", now=NOW, first_accepted_at=NOW,
        retry_schedule=SCHEDULE, lifetime=LIFETIME,
    )  # fmt: skip
    assert message.next_attempt_at == NOW + SCHEDULE[1]
    assert message.attempts == 2


def test_deferral_past_the_lifetime_fails_the_message() -> None:
    message = new_message()
    message.queue()
    message.start_attempt()
    message.record_deferred(
        421, "4.4.2", "timeout", now=NOW + LIFETIME, first_accepted_at=NOW,
        retry_schedule=SCHEDULE, lifetime=LIFETIME,
    )  # fmt: skip
    assert message.status is MessageStatus.FAILED
    assert event_names(message)[-1] == "Failed"


def test_permanent_failure_bounces_with_the_diagnostic() -> None:
    message = new_message()
    message.queue()
    message.start_attempt()
    message.record_bounced(550, "5.1.1", "no such user")
    assert message.status is MessageStatus.BOUNCED
    assert message.last_reply == {"code": 550, "enhanced_status": "5.1.1", "text": "no such user"}


@pytest.mark.parametrize("status_command", ["delivered", "bounced"])
def test_outcomes_need_an_open_attempt(status_command: str) -> None:
    message = new_message()
    message.queue()
    with pytest.raises(IllegalTransition):
        if status_command == "delivered":
            message.record_delivered(250, "", "")
        else:
            message.record_bounced(550, "", "")


def test_final_messages_accept_nothing_more() -> None:
    message = new_message()
    message.fail("cleared")
    for command in (message.queue, message.start_attempt, lambda: message.fail("again")):
        with pytest.raises(IllegalTransition):
            command()


COMMANDS = st.sampled_from(["queue", "attempt", "delivered", "deferred", "bounced", "fail", "hold"])


@given(st.lists(COMMANDS, max_size=30), st.booleans())
def test_no_command_sequence_reaches_an_illegal_state(commands: list[str], scheduled: bool) -> None:
    message = new_message(send_at=NOW + timedelta(hours=1) if scheduled else None)
    replayed_statuses = [message.status]
    for command in commands:
        before = (message.status, message.version, message.attempts)
        try:
            if command == "queue":
                message.queue()
            elif command == "attempt":
                message.start_attempt()
            elif command == "delivered":
                message.record_delivered(250, "2.0.0", "ok")
            elif command == "deferred":
                message.record_deferred(
                    450, "4.2.0", "busy", now=NOW, first_accepted_at=NOW,
                    retry_schedule=SCHEDULE, lifetime=LIFETIME,
                )  # fmt: skip
            elif command == "bounced":
                message.record_bounced(550, "5.1.1", "unknown")
            elif command == "hold":
                message.hold("campaign paused")
            else:
                message.fail("test")
        except IllegalTransition:
            # A refused command changes nothing and records nothing.
            assert (message.status, message.version, message.attempts) == before
            continue
        replayed_statuses.append(message.status)
        if before[0] in FINAL_STATUSES:
            pytest.fail(f"{command} changed a final message")
        if message.status is MessageStatus.SENDING:
            assert message.attempts == before[2] + 1
            assert before[0] is MessageStatus.QUEUED  # a held message is never claimed
    # Delivery outcomes only ever follow an attempt.
    for earlier, later in pairwise(replayed_statuses):
        if later in (MessageStatus.DELIVERED, MessageStatus.BOUNCED, MessageStatus.DEFERRED):
            assert earlier is MessageStatus.SENDING
    # The recorded events rebuild exactly the same aggregate.
    events = message.collect_events()
    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None
    assert (rebuilt.status, rebuilt.attempts, rebuilt.version) == (
        message.status, message.attempts, message.version,
    )  # fmt: skip


def test_waiting_for_send_at_or_a_warm_up_cap_spends_none_of_the_lifetime() -> None:
    later = datetime.now(UTC) + timedelta(days=5)
    scheduled = new_message(send_at=later)
    assert scheduled.lifetime_starts_at == later
    postponed = new_message()
    postponed.queue()
    postponed.postpone(later + timedelta(days=1), "warm-up cap")
    assert postponed.status is MessageStatus.SCHEDULED and postponed.attempts == 0
    assert postponed.lifetime_starts_at == later + timedelta(days=1)
    postponed.queue()
    postponed.start_attempt()
    # deferred a day after its postponement ended: within its lifetime from then
    postponed.record_deferred(
        421, "4.7.0", "try later", now=later + timedelta(days=1, hours=1),
        first_accepted_at=postponed.lifetime_starts_at, retry_schedule=SCHEDULE,
        lifetime=LIFETIME,
    )  # fmt: skip
    assert postponed.status is MessageStatus.DEFERRED
    fresh = new_message()
    assert fresh.lifetime_starts_at == fresh.created_on
    with pytest.raises(IllegalTransition):
        new_message().postpone(later, "not queued")


def test_queuing_records_the_event_the_decorated_method_records() -> None:
    """``queue`` triggers ``Queued`` directly (the fast path): the same event, state and
    replay as the decorated ``_queued``."""
    from uuid import uuid4

    from domain.message import Message, MessageStatus

    def accepted() -> Message:
        return Message(
            id=uuid4(), submission_id=uuid4(), account_id=uuid4(), domain_id=uuid4(),
            recipient="a@example.org", recipient_kind="to", sender="s@example.com",
            subject="S", tags=[],
        )  # fmt: skip

    fast, slow = accepted(), accepted()
    fast.queue()
    slow._queued()
    (created, queued), (_, reference) = fast.collect_events(), slow.collect_events()
    assert type(queued) is type(reference)
    assert queued.originator_version == reference.originator_version == 2
    assert fast.status is slow.status is MessageStatus.QUEUED
    replayed = queued.mutate(created.mutate(None))
    assert replayed is not None and replayed.status is MessageStatus.QUEUED
