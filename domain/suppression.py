"""An account's suppression list: addresses that must not receive mail from it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = UUID("9d8f0e1a-3b7c-4a52-8e6d-1c2b3a4f5e60")


def suppression_list_id(account_id: UUID) -> UUID:
    return uuid5(_NAMESPACE, str(account_id))


class SuppressionList(Aggregate):
    """One per account; bounces, complaints and unsubscribes add to it (later issues)."""

    @event("Started")
    def __init__(self, id: UUID, account_id: UUID) -> None:
        self._id = id
        self.account_id = account_id
        self.entries: dict[str, dict[str, str]] = {}

    def contains(self, email: str) -> bool:
        return email.lower() in self.entries

    def add(self, email: str, reason: str, now: datetime) -> None:
        if not self.contains(email):
            self._added(email=email.lower(), reason=reason, added_at=now.isoformat())

    def remove(self, email: str) -> None:
        if self.contains(email):
            self._removed(email=email.lower())

    @event("AddressAdded")
    def _added(self, email: str, reason: str, added_at: str) -> None:
        self.entries[email] = {"reason": reason, "added_at": added_at}

    @event("AddressRemoved")
    def _removed(self, email: str) -> None:
        del self.entries[email]
