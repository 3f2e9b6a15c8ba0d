"""Accounts, their sender domains and the sender API keys that send on a domain's behalf."""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

# Keys are 256-bit random tokens, so a plain SHA-256 is a sound one-way store and,
# used as the aggregate id's seed, lets a key be found without scanning or comparing secrets.
_KEY_NAMESPACE = UUID("6f0c9a51-5d0b-4c55-9a3a-6a1d1f6f4d2e")


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def aggregate_id_for_key(kind: str, digest: str) -> UUID:
    return uuid5(_KEY_NAMESPACE, f"{kind}:{digest}")


def domain_accepts_sender(domain_name: str, email: str) -> bool:
    """Mail may come from the sender domain itself or any of its subdomains."""
    host = email.rpartition("@")[2].lower().rstrip(".")
    name = domain_name.lower()
    return host == name or host.endswith("." + name)


class Account(Aggregate):
    """A customer of the platform; every other resource belongs to exactly one."""

    @event("Opened")
    def __init__(self, id: UUID, name: str, api_key_digest: str, opened_at: datetime) -> None:
        self._id = id
        self.name = name
        self.api_key_digest = api_key_digest
        self.opened_at = opened_at
        self.is_active = True
        self.is_verified = True
        self.daily_send_limit: int | None = None
        self.domain_ids: list[UUID] = []

    @event("DomainAttached")
    def attach_domain(self, domain_id: UUID) -> None:
        self.domain_ids.append(domain_id)

    @event("Deactivated")
    def deactivate(self) -> None:
        self.is_active = False

    @event("Reactivated")
    def reactivate(self) -> None:
        self.is_active = True

    @event("VerificationRevoked")
    def mark_unverified(self) -> None:
        self.is_verified = False

    @event("Verified")
    def mark_verified(self) -> None:
        self.is_verified = True

    @event("SendLimitSet")
    def set_daily_send_limit(self, limit: int | None) -> None:
        self.daily_send_limit = limit


class SenderDomain(Aggregate):
    """A domain an account sends from. Verification, DKIM and tracking settings grow here."""

    @event("Added")
    def __init__(self, id: UUID, account_id: UUID, name: str) -> None:
        self._id = id
        self.account_id = account_id
        self.name = name
        self.is_active = True
        self.is_deleted = False
        self.verification_status = "Pending"
        self.dkim_status = "Pending"
        self.spf_status = "Pending"
        self.link_tracking = False
        self.open_tracking = False
        self.unsubscribe_link = False

    @event("Deactivated")
    def deactivate(self) -> None:
        self.is_active = False

    @event("Activated")
    def activate(self) -> None:
        self.is_active = True


class SenderApiKey(Aggregate):
    """A secret that lets software send and read events for one sender domain."""

    @event("Issued")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        digest: str,
        description: str,
        permissions: list[str],
        issued_at: datetime,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id
        self.digest = digest
        self.description = description
        self.permissions = permissions
        self.issued_at = issued_at
        self.is_revoked = False

    @event("Revoked")
    def revoke(self) -> None:
        self.is_revoked = True
