"""A message's whole history, read from the event store.

Every event of the submission and of each recipient's Message, in the order they were
recorded, with all they carry (SMTP replies, the opens' and clicks' user agents…), and
the MIME each recipient gets, rendered as delivery renders it (merge tags, tracked links
and pixel, List-Unsubscribe, DKIM; made again now, so its Date and signature are today's):
the exact history only an event-sourced engine can show.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from adapters.event_metadata import METADATA_KEY, metadata_of
from domain.account import SenderDomain
from domain.content import EmailContent
from domain.message import Message
from engine.application import Sendstream

__all__ = ["MessageHistory"]

# What every stored event carries, shown apart from its own fields.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp"})


# A recipient's copy as delivery renders it (engine.delivery.rendering.MessageRenderer).
Render = Callable[[Message, SenderDomain | None], bytes]


class MessageHistory:
    def __init__(self, app: Sendstream, render: Render) -> None:
        self._app = app
        self._render = render

    def of(self, account_id: UUID, submission_id: UUID) -> dict[str, Any] | None:
        """The submission's history; None where it is not the account's (indistinguishable
        from absent, so another account's ids cannot be probed)."""
        try:
            submission = self._app.submission(submission_id)
        except AggregateNotFoundError:
            return None
        if submission.account_id != account_id:
            return None
        content = EmailContent.from_dict(submission.content)
        try:
            domain: SenderDomain | None = self._app.domain(submission.domain_id)
        except AggregateNotFoundError:
            domain = None
        recipients = []
        for message_id in submission.message_ids:
            message = self._app.message(message_id)
            raw = self._render(message, domain)
            recipients.append(
                {
                    "MessageID": str(message.id),
                    "Recipient": message.recipient,
                    "Kind": message.recipient_kind,
                    "Status": message.status.value,
                    "Events": self._events(message.id),
                    "Raw": raw.decode("utf-8", "replace"),
                }
            )
        return {
            "SubmissionID": str(submission.id),
            "DomainID": str(submission.domain_id),
            "Subject": content.subject,
            "From": content.sender.email,
            "Source": submission.source,
            "AcceptedAt": submission.created_on,
            "Events": self._events(submission.id),
            "Recipients": recipients,
        }

    def _events(self, aggregate_id: UUID) -> list[dict[str, Any]]:
        recorded = []
        for event in self._app.events.get(aggregate_id):
            fields = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
            if METADATA_KEY in fields:
                fields[METADATA_KEY] = metadata_of(event)
            recorded.append(
                {
                    "Event": type(event).__qualname__.rpartition(".")[2],
                    "Version": event.originator_version,
                    "At": getattr(event, "timestamp", None),  # every DomainEvent has one
                    "Details": {k: _shown(v) for k, v in sorted(fields.items())},
                }
            )
        return recorded


def _shown(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
