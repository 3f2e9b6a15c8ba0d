"""The content cache stays within its count and size bounds and falls back to the store."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from domain.content import Address, Attachment, EmailContent
from engine.delivery.handoff import ContentCache


def content(body: str = "hi", attachment: str = "") -> EmailContent:
    return EmailContent(
        subject="s",
        sender=Address("a@example.com", "A"),
        to=(Address("b@example.org", "B"),),
        plain=body,
        attachments=(Attachment("f.bin", "application/octet-stream", attachment),)
        if attachment
        else (),
    )


class Store:
    """Stands in for the application's submission lookup, counting reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.saved: dict[Any, EmailContent] = {}

    def submission(self, submission_id: Any) -> Any:
        self.reads += 1
        stored = self.saved[submission_id]
        return type("Submission", (), {"content": stored.to_dict()})()


def test_put_then_get_needs_no_store_read() -> None:
    store = Store()
    cache = ContentCache(store, size=10)  # type: ignore[arg-type]
    key = uuid4()
    cache.put(key, content())
    assert cache.get(key) == content()
    assert store.reads == 0


def test_misses_are_read_from_the_store_once() -> None:
    store = Store()
    cache = ContentCache(store, size=10)  # type: ignore[arg-type]
    key = uuid4()
    store.saved[key] = content("stored")
    assert cache.get(key).plain == "stored"
    assert cache.get(key).plain == "stored"
    assert store.reads == 1


def test_count_and_size_bounds_hold() -> None:
    store = Store()
    cache = ContentCache(store, size=3, max_bytes=64 * 1024)  # type: ignore[arg-type]
    keys = [uuid4() for _ in range(5)]
    for key in keys:
        cache.put(key, content())
    assert len(cache._items) == 3
    big = uuid4()
    cache.put(big, content(attachment="A" * 8 * 1024))  # over a sixteenth: not kept
    assert big not in cache._items
    medium = [uuid4() for _ in range(3)]
    for key in medium:
        cache.put(key, content(attachment="A" * 3000))
    assert cache._bytes <= 64 * 1024
