"""Subscriber lists: the people a campaign can be sent to, with their custom fields.

A list is one aggregate and its subscribers are its state: imports arrive as
batches of rows in one event each, so that 100,000 subscribers are a hundred
events rather than a hundred thousand aggregates, and the list can be replayed
exactly. Subscribers are identified by their lowercased email address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

EMAIL_FIELD = "EmailAddress"
MAX_FIELDS = 100
MAX_FIELD_VALUE = 4000


class ListRuleBroken(Exception):
    """A list command broke a rule; ``exception`` is the documented exception's name."""

    def __init__(self, exception: str, message: str) -> None:
        super().__init__(message)
        self.exception = exception
        self.message = message


def invalid_fields() -> ListRuleBroken:
    return ListRuleBroken(
        "InvalidGroupFieldsException", "The list of fields must include the EmailAddress field."
    )


def invalid_field_name(name: str) -> ListRuleBroken:
    return ListRuleBroken("InvalidFieldNameException", f"Invalid field name: {name[:64]}")


def duplicate_email() -> ListRuleBroken:
    return ListRuleBroken(
        "DuplicateEmailAddressException",
        "Email address already in List. List does not allow duplicate email addresses.",
    )


def normalise_fields(fields: Iterable[str]) -> list[str]:
    """Field names as given (first spelling wins), unique without regard to case,
    ``EmailAddress`` first; a name is 1 to 64 letters, digits, ``_`` or ``-``."""
    seen: dict[str, str] = {}
    for name in fields:
        name = name.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "_-" for c in name):
            raise invalid_field_name(name)
        seen.setdefault(name.lower(), name)
    if EMAIL_FIELD.lower() not in seen:
        raise invalid_fields()
    if len(seen) > MAX_FIELDS:
        raise ListRuleBroken("InvalidFieldCountException", "Invalid field count.")
    ordered = [seen.pop(EMAIL_FIELD.lower())]
    ordered[0] = EMAIL_FIELD
    return ordered + list(seen.values())


@dataclass(frozen=True)
class Row:
    """One subscriber's fields, keyed by the list's field names."""

    email: str  # lowercased
    fields: dict[str, str]


class SubscriberList(Aggregate):
    @event("Created")
    def __init__(
        self, id: UUID, account_id: UUID, name: str, fields: list[str], allow_duplicates: bool
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.name = name
        self.fields = fields
        self.allow_duplicates = allow_duplicates
        self.is_deleted = False
        # Subscriber key → fields. The key is the email address, or with duplicates allowed
        # ``email#n`` for the n-th further copy.
        self.subscribers: dict[str, dict[str, str]] = {}
        self.unsubscribed: set[str] = set()

    def field_named(self, name: str) -> str | None:
        lowered = name.strip().lower()
        for field in self.fields:
            if field.lower() == lowered:
                return field
        return None

    def prepare_row(self, values: Mapping[str, object]) -> Row:
        """Validate one subscriber's values against the list's fields (unknown fields are
        refused, so a typo does not silently lose data)."""
        fields: dict[str, str] = {}
        for name, value in values.items():
            field = self.field_named(str(name))
            if field is None:
                raise invalid_field_name(str(name))
            text = "" if value is None else str(value)
            if len(text) > MAX_FIELD_VALUE or "\x00" in text:
                raise ListRuleBroken("InvalidFieldValueException", f"Invalid value for {field}")
            fields[field] = text.strip()
        email = fields.get(EMAIL_FIELD, "").strip().lower()
        if not email:
            raise ListRuleBroken("InvalidEmailAddressException", "Email address is invalid.")
        fields[EMAIL_FIELD] = email
        return Row(email, fields)

    def is_member(self, email: str) -> bool:
        return email.lower() in self.subscribers

    def subscribe(self, rows: list[Row]) -> list[Row]:
        """Add subscribers; returns the rows refused as duplicates (the rest are recorded)."""
        accepted: list[dict[str, str]] = []
        refused: list[Row] = []
        seen: set[str] = set()
        for row in rows:
            if not self.allow_duplicates and (row.email in self.subscribers or row.email in seen):
                refused.append(row)
                continue
            seen.add(row.email)
            accepted.append(row.fields)
        if accepted:
            self._subscribed(rows=accepted)
        return refused

    @event("Subscribed")
    def _subscribed(self, rows: list[dict[str, str]]) -> None:
        for fields in rows:
            email = fields[EMAIL_FIELD]
            key, copy = email, 1
            while key in self.subscribers:
                key, copy = f"{email}#{copy}", copy + 1
            self.subscribers[key] = fields
            self.unsubscribed.discard(email)

    def update_subscriber(self, row: Row) -> None:
        if row.email not in self.subscribers:
            raise ListRuleBroken(
                "InvalidEmailAddressException", "Email address is not in the list."
            )
        self._updated(email=row.email, fields=row.fields)

    @event("SubscriberUpdated")
    def _updated(self, email: str, fields: dict[str, str]) -> None:
        self.subscribers[email] = {**self.subscribers[email], **fields}

    def unsubscribe(self, email: str) -> None:
        email = email.strip().lower()
        if email not in self.subscribers:
            raise ListRuleBroken(
                "InvalidEmailAddressException", "Email address is not in the list."
            )
        if email not in self.unsubscribed:
            self._unsubscribed(email=email)

    @event("SubscriberUnsubscribed")
    def _unsubscribed(self, email: str) -> None:
        self.unsubscribed.add(email)

    def remove(self, email: str) -> None:
        email = email.strip().lower()
        if email not in self.subscribers:
            raise ListRuleBroken(
                "InvalidEmailAddressException", "Email address is not in the list."
            )
        self._removed(email=email)

    @event("SubscriberRemoved")
    def _removed(self, email: str) -> None:
        for key in [k for k in self.subscribers if k == email or k.startswith(email + "#")]:
            del self.subscribers[key]
        self.unsubscribed.discard(email)

    def active_subscribers(self) -> list[dict[str, str]]:
        """Members who have not unsubscribed, in the order they joined."""
        unsubscribed = self.unsubscribed
        return [f for f in self.subscribers.values() if f[EMAIL_FIELD] not in unsubscribed]

    @event("Deleted")
    def delete(self) -> None:
        self.is_deleted = True
