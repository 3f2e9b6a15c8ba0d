"""The Submission aggregate: the email exactly as the customer handed it to us.

Its id is the ``MessageID`` the API answers with. The content is stored once
here, not once per recipient; each recipient's delivery is a ``Message``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class Submission(Aggregate):
    @event("Received")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        source: str,
        content: dict[str, Any],
        message_ids: list[UUID],
        template: dict[str, Any] | None = None,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id
        self.source = source  # "api" or "smtp": how it reached us
        self.content = content
        self.message_ids = message_ids
        # {"TemplateID", "Version"} of the stored template the content was rendered from.
        self.template = template
