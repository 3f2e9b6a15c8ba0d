"""Envelopes built from the events this process just wrote equal those decoded from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
