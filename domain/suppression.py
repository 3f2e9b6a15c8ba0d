"""An account's suppression list: addresses that must not receive mail from it."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = UUID("9d8f0e1a-3b7c-4a52-8e6d-1c2b3a4f5e60")


def suppression_list_id(account_id: UUID) -> UUID:
    return uuid5(_NAMESPACE, str(account_id))


# Why an address is on the list; each is its own list in the API (Unsubscribe, Bounce and
# Block management in 000) and refuses sending with its own exception.
UNSUBSCRIBE = "unsubscribe"
BOUNCE = "bounce"
COMPLAINT = "complaint"
BLOCK = "block"
REASONS = (UNSUBSCRIBE, BOUNCE, COMPLAINT, BLOCK)


class SuppressionList(Aggregate):
    """One per account: addresses that unsubscribed, bounced hard, complained or were blocked."""

    @event("Started")
    def __init__(self, id: UUID, account_id: UUID) -> None:
        self._id = id
        self.account_id = account_id
        self.entries: dict[str, dict[str, str]] = {}
        self.soft_bounces: dict[str, list[str]] = {}

    def reason_for(self, email: str) -> str | None:
        entry = self.entries.get(email.lower())
        return entry["reason"] if entry else None

    def note_soft_bounce(self, email: str, now: datetime, limit: int, window: timedelta) -> bool:
        """Count a soft bounce; the address is suppressed once ``limit`` fall within
        ``window``. True if this one suppressed it."""
        email = email.lower()
        if self.contains(email):
            return False
        since = (now - window).isoformat()
        recent = [at for at in self.soft_bounces.get(email, []) if at >= since]
        self._soft_bounced(email=email, at=now.isoformat(), keep=recent[-(limit * 2) :])
        if len(self.soft_bounces[email]) >= limit:
            self.add(email, BOUNCE, now)
            return True
        return False

    @event("SoftBounceNoted")
    def _soft_bounced(self, email: str, at: str, keep: list[str]) -> None:
        self.soft_bounces[email] = [*keep, at]

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
        self.soft_bounces.pop(email, None)
