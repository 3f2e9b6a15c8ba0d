"""Envelopes built from the events this process just wrote equal those decoded from the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventsourcing.persistence import Recording

from domain.content import Address, EmailContent
from engine.application import SenderContext
from engine.eventlog.followers import RecentEvents, to_envelope
from engine.runtime.composition import Engine
from engine.settings import Settings


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(Settings(SENDSTREAM_DATA_DIR=tmp_path / "var"), roles=frozenset())
    yield engine
    engine.close()


@pytest.fixture
def sender(engine: Engine) -> SenderContext:
    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    return sender


def submit(
    engine: Engine,
    sender: SenderContext,
    subject: str,
    *to: Address,
    html: str | None = None,
    plain: str | None = None,
) -> None:
    """Write a submission to ``to``, due far ahead, and its messages."""
    content = EmailContent(
        subject=subject,
        sender=Address("news@example.com", "News"),
        to=to,
        html=html,
        plain=plain,
        send_at=datetime(2099, 1, 1, tzinfo=UTC),
    )
    submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
    engine.writer.save([submission, *messages])


def test_recent_events_give_the_same_envelopes_as_the_store(
    engine: Engine, sender: SenderContext
) -> None:
    to = (Address("a@example.org", "A"), Address("b@example.org", "B"))
    submit(engine, sender, "Hello", *to, plain="hi")
    notifications = engine.app.recorder.select_notifications(start=1, limit=100)
    assert len(notifications) >= 6
    from_store = [to_envelope(engine.app, n) for n in notifications]
    from_memory = [to_envelope(engine.app, n, engine.recent) for n in notifications]
    assert engine.recent.get(notifications[-1].id) is not None
    assert from_memory == from_store
    empty = RecentEvents(size=1)
    assert [to_envelope(engine.app, n, empty) for n in notifications] == from_store


def test_recent_events_are_bounded_by_their_stored_size(
    engine: Engine, sender: SenderContext
) -> None:
    """A submission carries its whole content: large sends must not fill the memory."""
    recent = RecentEvents(size=1000, max_bytes=200_000)
    for n in range(10):
        html = "<p>" + "x" * 50_000 + "</p>"
        submit(engine, sender, f"Large {n}", Address("a@example.org", "A"), html=html)
    notifications = engine.app.recorder.select_notifications(start=1, limit=1000)
    recordings = [
        Recording(domain_event=engine.app.mapper.to_domain_event(n), notification=n)
        for n in notifications
    ]
    recent.add(recordings)
    kept = [n for n in notifications if recent.get(n.id) is not None]
    assert sum(len(n.state) for n in kept) <= 200_000
    assert notifications[-1] in kept and notifications[0] not in kept
