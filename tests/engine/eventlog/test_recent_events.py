"""Envelopes built from the events this process just wrote equal those decoded from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from eventsourcing.persistence import Recording

from domain.content import Address, EmailContent
from engine.eventlog.followers import RecentEvents, to_envelope
from engine.runtime.composition import Engine
from engine.settings import Settings


def test_recent_events_give_the_same_envelopes_as_the_store(tmp_path: Path) -> None:
    engine = Engine(Settings(SENDSTREAM_DATA_DIR=tmp_path / "var"), roles=frozenset())
    try:
        keys = engine.app.bootstrap("example.com")
        sender = engine.app.sender_context(keys["SenderAPIKey"])
        assert sender is not None
        content = EmailContent(
            subject="Hello",
            sender=Address("news@example.com", "News"),
            to=(Address("a@example.org", "A"), Address("b@example.org", "B")),
            plain="hi",
            send_at=datetime(2099, 1, 1, tzinfo=UTC),
        )
        submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
        engine.writer.save([submission, *messages])
        notifications = engine.app.recorder.select_notifications(start=1, limit=100)
        assert len(notifications) >= 6
        from_store = [to_envelope(engine.app, n) for n in notifications]
        from_memory = [to_envelope(engine.app, n, engine.recent) for n in notifications]
        assert engine.recent.get(notifications[-1].id) is not None
        assert from_memory == from_store
        empty = RecentEvents(size=1)
        assert [to_envelope(engine.app, n, empty) for n in notifications] == from_store
    finally:
        engine.close()


def test_recent_events_are_bounded_by_their_stored_size(tmp_path: Path) -> None:
    """A submission carries its whole content: large sends must not fill the memory."""
    engine = Engine(Settings(SENDSTREAM_DATA_DIR=tmp_path / "var"), roles=frozenset())
    try:
        keys = engine.app.bootstrap("example.com")
        sender = engine.app.sender_context(keys["SenderAPIKey"])
        assert sender is not None
        recent = RecentEvents(size=1000, max_bytes=200_000)
        for n in range(10):
            content = EmailContent(
                subject=f"Large {n}",
                sender=Address("news@example.com", "News"),
                to=(Address("a@example.org", "A"),),
                html="<p>" + "x" * 50_000 + "</p>",
                send_at=datetime(2099, 1, 1, tzinfo=UTC),
            )
            submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
            engine.writer.save([submission, *messages])
        notifications = engine.app.recorder.select_notifications(start=1, limit=1000)
        recordings = [
            Recording(domain_event=engine.app.mapper.to_domain_event(n), notification=n)
            for n in notifications
        ]
        recent.add(recordings)
        kept = [n for n in notifications if recent.get(n.id) is not None]
        assert sum(len(n.state) for n in kept) <= 200_000
        assert notifications[-1] in kept and notifications[0] not in kept
    finally:
        engine.close()
