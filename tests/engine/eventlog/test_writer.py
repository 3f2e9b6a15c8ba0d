"""The group-commit writer: every caller learns its own outcome, however the batch is shared."""

from __future__ import annotations

import asyncio
import copy
import errno
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from domain.content import Address, EmailContent
from domain.message import Message, MessageStatus
from engine.application import SenderContext
from engine.runtime.composition import Engine
from engine.settings import Settings


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    running = Engine(Settings(SENDSTREAM_DATA_DIR=tmp_path / "var"), roles=frozenset())
    yield running
    running.close()


def sender_of(engine: Engine) -> SenderContext:
    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    return sender


def one_message(engine: Engine, sender: SenderContext, n: int) -> list[Aggregate]:
    content = EmailContent(
        subject=f"Hello {n}",
        sender=Address("news@example.com", "News"),
        to=(Address(f"user{n}@example.org", "User"),),
        plain="hi",
    )
    submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
    return [submission, *messages]


async def test_concurrent_callers_share_commits_and_all_are_stored(engine: Engine) -> None:
    sender = sender_of(engine)
    before = engine.app.recorder.max_notification_id() or 0
    batches = [one_message(engine, sender, n) for n in range(300)]
    await asyncio.gather(*(engine.writer.save_async(batch) for batch in batches))
    after = engine.app.recorder.max_notification_id() or 0
    # Each submission: Received; its message: Accepted and Queued.
    assert after - before == 300 * 3
    last = batches[-1][1]
    assert isinstance(last, Message)
    assert engine.app.message(last.id).status is MessageStatus.QUEUED


async def test_only_the_loser_of_a_race_on_one_aggregate_sees_the_conflict(
    engine: Engine,
) -> None:
    sender = sender_of(engine)
    submission, message = one_message(engine, sender, 1)
    assert isinstance(message, Message)
    await engine.writer.save_async([submission, message])
    first, second = engine.app.message(message.id), engine.app.message(message.id)
    first.start_attempt()
    second.start_attempt()
    bystanders = [one_message(engine, sender, n) for n in range(2, 12)]
    outcomes = await asyncio.gather(
        engine.writer.save_async([first]),
        *(engine.writer.save_async(batch) for batch in bystanders),
        engine.writer.save_async([second]),
        return_exceptions=True,
    )
    assert outcomes[:-1] == [None] * 11
    assert isinstance(outcomes[-1], IntegrityError)
    assert engine.app.message(message.id).attempts == 1
    for batch in bystanders:
        stored = batch[1]
        assert isinstance(stored, Message)
        assert engine.app.message(stored.id).status is MessageStatus.QUEUED


async def test_a_cancelled_caller_does_not_disturb_the_others(engine: Engine) -> None:
    sender = sender_of(engine)
    batches = [one_message(engine, sender, n) for n in range(20)]
    waiting = [asyncio.ensure_future(engine.writer.save_async(b)) for b in batches]
    waiting[0].cancel()
    results = await asyncio.gather(*waiting[1:])
    assert results == [None] * 19


def test_threads_save_through_the_same_writer(engine: Engine) -> None:
    sender = sender_of(engine)
    submission, message = one_message(engine, sender, 1)
    engine.writer.save([submission, message])
    assert isinstance(message, Message)
    stale = copy.deepcopy(engine.app.message(message.id))
    fresh = engine.app.message(message.id)
    fresh.start_attempt()
    engine.writer.save([fresh])
    stale.start_attempt()
    with pytest.raises(IntegrityError):
        engine.writer.save([stale])


def lose_answers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, *, store: bool, times: int
) -> None:
    """The next ``times`` commits fail as a connection lost during COMMIT does: after
    storing (``store``) or before."""
    real = engine.app.record
    left = [times]

    def record(events):  # type: ignore[no-untyped-def]
        if left[0] <= 0:
            return real(events)
        left[0] -= 1
        if store:
            real(events)
        lost = ConnectionResetError(errno.ECONNRESET, "server closed the connection")
        raise OperationalError("consuming input failed") from lost

    monkeypatch.setattr(engine.app, "record", record)


async def test_a_commit_whose_answer_was_lost_but_landed_is_a_success(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = sender_of(engine)
    batch = one_message(engine, sender, 1)
    lose_answers(engine, monkeypatch, store=True, times=1)
    await engine.writer.save_async(batch)  # no error: it is stored
    assert engine.app.message(batch[1].id).status is MessageStatus.QUEUED

    lose_answers(engine, monkeypatch, store=False, times=1)
    with pytest.raises(OperationalError):  # nothing stored: the caller must know
        await engine.writer.save_async(one_message(engine, sender, 2))


async def test_an_outcome_is_offered_again_until_it_is_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = sender_of(engine)
    batch = one_message(engine, sender, 1)
    await engine.writer.save_async(batch)
    message = engine.app.message(batch[1].id)
    message.start_attempt()
    lose_answers(engine, monkeypatch, store=False, times=2)
    await engine.writer.save_until_stored([message])  # after two failed commits
    assert engine.app.message(message.id).status is MessageStatus.SENDING


async def test_a_lost_answer_is_asked_about_until_the_database_answers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found in fresh-clone CI (a PostgreSQL restart under load): a COMMIT whose answer was
    # lost, asked about while the database was still down, was answered "nothing was
    # stored", though it had been, and the message went out all the same.
    sender = sender_of(engine)
    batch = one_message(engine, sender, 1)
    lose_answers(engine, monkeypatch, store=True, times=1)
    real = engine.writer._were_stored
    down = [2]

    def were_stored(events):  # type: ignore[no-untyped-def]
        if down[0] > 0:
            down[0] -= 1
            lost = ConnectionRefusedError(errno.ECONNREFUSED, "the database is restarting")
            raise OperationalError("connection failed") from lost
        return real(events)

    monkeypatch.setattr(engine.writer, "_were_stored", were_stored)
    await engine.writer.save_async(batch)  # no error: it was stored
    assert down == [0]
    assert engine.app.message(batch[1].id).status is MessageStatus.QUEUED
