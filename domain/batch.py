"""A batch send as accepted: one event for up to a thousand recipients, each with the
subject and bodies rendered for it. Each recipient's submission and Message are made from
it afterwards (engine/sending/batch_fanout.py), with ids derived from the batch and the
recipient's place in it, so that making them again after a crash makes nothing twice,
and the MessageIDs answered at once are the ones the messages get."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event


def batch_submission_id(batch_id: UUID, index: int) -> UUID:
    """The MessageID of the recipient at ``index`` (its place in the request)."""
    return uuid5(batch_id, f"recipient:{index}")


class Batch(Aggregate):
    @event("Accepted")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        key_id: UUID,
        content: dict[str, Any],
        template: dict[str, Any] | None,
        recipients: list[dict[str, Any]],
        accepted_at: datetime,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id
        self.key_id = key_id  # whose sends they are (its day of use, its rate)
        # What the recipients share, as EmailContent.to_dict() without recipients.
        self.content = content
        self.template = template  # {"TemplateID", "Version"} when from a stored template
        # {"Index", "Email", "Name", "Subject", "Html", "Plain"}: each accepted recipient.
        self.recipients = recipients
        self.accepted_at = accepted_at
