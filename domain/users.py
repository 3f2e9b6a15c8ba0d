"""The people of an account and what each may do: users with roles, and role-limited keys.

A role grants areas of the API; a command belongs to one or more areas (the API layer
says which) and a caller may run it when its role grants any of them. Everything but
reading is named, so a command nobody classified is refused to all but owners.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    MARKETER = "marketer"
    VIEWER = "viewer"


class Area(StrEnum):
    READ = "read"  # every Get, statistics and events
    SENDING = "sending"  # keys, domains, SMTP credentials, webhooks, IP pools, routes
    MARKETING = "marketing"  # lists, subscribers, segments, emails, campaigns
    USERS = "users"  # the account's users and its role-limited keys
    ACCOUNT = "account"  # the account's own settings and its agency's clients


ROLE_AREAS: dict[Role, frozenset[Area]] = {
    Role.OWNER: frozenset(Area),
    Role.ADMIN: frozenset({Area.READ, Area.SENDING, Area.MARKETING, Area.USERS}),
    Role.DEVELOPER: frozenset({Area.READ, Area.SENDING}),
    Role.MARKETER: frozenset({Area.READ, Area.MARKETING}),
    Role.VIEWER: frozenset({Area.READ}),
}


def role_may(role: Role, areas: frozenset[Area]) -> bool:
    """Whether ``role`` may run a command of ``areas`` (an owner may run anything)."""
    return role is Role.OWNER or bool(ROLE_AREAS[role] & areas)


def may_grant(granter: Role, role: Role) -> bool:
    """An admin manages every role but the owner's; only an owner makes or changes owners."""
    return granter is Role.OWNER or (granter is Role.ADMIN and role is not Role.OWNER)


def role_covers(role: Role, other: Role) -> bool:
    """Whether ``role`` may do all ``other`` may: a key may not do more than its maker."""
    return ROLE_AREAS[other] <= ROLE_AREAS[role]


def parse_role(value: object) -> Role | None:
    if not isinstance(value, str):
        return None
    try:
        return Role(value.strip().lower())
    except ValueError:
        return None


class User(Aggregate):
    """A login of an account beside the account's own (which is its first owner)."""

    @event("Created")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        username: str,
        password_hash: str,
        role: Role,
        created_at: datetime,
        created_by: str,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.username = username
        self.password_hash = password_hash
        self.role = Role(role)
        self.created_at = created_at
        self.created_by = created_by
        self.is_deleted = False
        self.sessions_ended_before = 0  # Unix millisecond, as the account's

    @event("RoleChanged")
    def change_role(self, role: Role) -> None:
        self.role = Role(role)

    @event("PasswordChanged")
    def change_password(self, password_hash: str) -> None:
        """``password_hash`` is made outside the domain; every session so far ends."""
        self.password_hash = password_hash

    @event("SessionsEnded")
    def end_sessions(self, before: int) -> None:
        self.sessions_ended_before = max(self.sessions_ended_before, before)

    @event("Deleted")
    def delete(self) -> None:
        self.is_deleted = True


class AccountKey(Aggregate):
    """An ``APIKey`` for ``/api.php`` that acts with one role, beside the account's own key
    (which acts as an owner). Found by its digest, as sender keys are."""

    @event("Issued")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        digest: str,
        role: Role,
        description: str,
        issued_at: datetime,
        hint: str,
        issued_by: str = "",
        issued_by_user: UUID | None = None,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.digest = digest
        self.role = Role(role)
        self.description = description
        self.issued_at = issued_at
        self.hint = hint
        self.issued_by = issued_by  # who made it: a username, or the key it was made with
        # The user who made it (None: a key did): revoked when that user goes, or no
        # longer may make a key of this role.
        self.issued_by_user = issued_by_user
        self.is_revoked = False

    @event("Revoked")
    def revoke(self) -> None:
        self.is_revoked = True
