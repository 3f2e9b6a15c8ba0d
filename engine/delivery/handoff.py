"""What the API process hands its own delivery worker, so the worker need not read it back
from the event store: the messages it has just saved, and the content it has just accepted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from uuid import UUID

from domain.content import EmailContent
from domain.envelope import EventEnvelope
from domain.message import Message
from engine.application import Sendstream


def _approximate_size(content: EmailContent) -> int:
    return (
        len(content.html or "")
        + len(content.plain or "")
        + sum(len(a.content_base64) for a in content.attachments)
        + 1024
    )


class ContentCache:
    """Submissions are immutable, so their decoded content can be kept without invalidation.

    The API puts what it has just accepted; the delivery worker reads it, and loads
    from the event store only what is not here. Bounded by count and by size.
    """

    def __init__(
        self, app: Sendstream, size: int = 20_000, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self._app = app
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[UUID, tuple[EmailContent, int]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, submission_id: UUID, content: EmailContent) -> None:
        size = _approximate_size(content)
        if size > self._max_bytes // 16:
            return  # a very large message is read back from the store when it is needed
        with self._lock:
            if submission_id not in self._items:
                self._items[submission_id] = (content, size)
                self._bytes += size
            while len(self._items) > self._size or self._bytes > self._max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def __contains__(self, submission_id: object) -> bool:
        return submission_id in self._items

    def get(self, submission_id: UUID) -> EmailContent:
        with self._lock:
            item = self._items.get(submission_id)
            if item is not None:
                self._items.move_to_end(submission_id)
                return item[0]
        content = EmailContent.from_dict(self._app.submission(submission_id).content)
        self.put(submission_id, content)
        return content


class FreshMessages:
    """Messages this process has just saved, handed to its delivery worker as they are.

    The API builds every Message it queues; once saved, that object is exactly the
    stored aggregate at its version, so the worker can take it instead of loading
    it again (a load is most of a sandbox delivery's cost). Bounded: anything
    evicted, or written by another process, is loaded from the store as usual.
    """

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._messages: OrderedDict[UUID, Message] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, messages: list[Message]) -> None:
        with self._lock:
            for message in messages:
                self._messages[message.id] = message
            while len(self._messages) > self._size:
                self._messages.popitem(last=False)

    def take(self, message_id: UUID, version: int) -> Message | None:
        """The message if it is still at ``version``; the caller then owns it."""
        with self._lock:
            message = self._messages.pop(message_id, None)
        if message is None or message.version != version:
            return None
        return message


class StreamedMessages:
    """Messages kept up to date from the stream the delivery worker reads, so that it need
    not load each one it is to deliver (in a process of its own it cannot take them from
    the API as ``FreshMessages`` does).

    An ``Accepted`` event read from the notification log builds the message; a later
    event applies only to the version just before it, so a message changed by anything
    this cache did not see is loaded from the store as usual. The worker puts back each
    message it has recorded an outcome on, so that a retry's ``Queued`` finds it. Bounded.
    """

    def __init__(self, size: int = 20_000, since: int | None = None) -> None:
        self._size = size
        self._messages: OrderedDict[UUID, Message] = OrderedDict()
        self.since = since

    def learn(self, envelope: EventEnvelope) -> None:
        """Learn from events logged after ``since`` only (None: from none). The worker sets
        it to the end of the log when it starts: what it reads again from before then may
        have been claimed by the worker that stopped, in an event it does not read, so
        those messages are loaded from the store, where that claim is."""
        event = envelope.event
        if event is None or envelope.stream != "message":
            return
        if self.since is None or envelope.position <= self.since:
            return
        if envelope.event_type == "Message.Accepted":
            self.keep(event.mutate(None))
            return
        known = self._messages.get(envelope.aggregate_id)
        if known is not None and known.version == envelope.aggregate_version - 1:
            event.mutate(known)

    def keep(self, message: Message) -> None:
        self._messages[message.id] = message
        self._messages.move_to_end(message.id)
        while len(self._messages) > self._size:
            self._messages.popitem(last=False)

    def take(self, message_id: UUID, version: int) -> Message | None:
        """The message if it is at ``version``; the caller then owns it."""
        message = self._messages.pop(message_id, None)
        if message is None or message.version != version:
            return None
        return message
