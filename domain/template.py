"""Stored templates: a named subject, HTML body and plain-text body an application sends
from, with versions. An update adds a version and makes it the active one; earlier
versions stay readable (a message records the version it was rendered from), and any of
them can be made active again.

What the template code may do (no files, no code, a header never broken) is checked and
enforced where it is compiled and rendered (adapters/templating.py); here only what is
stored and its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

MAX_NAME_LENGTH = 255
# A version's three parts together, as stored: a template is a message's content, and
# the send API's own limit on a request is 10 MB.
MAX_TEMPLATE_BYTES = 512 * 1024


@dataclass(frozen=True)
class TemplateVersion:
    number: int
    subject: str
    html: str
    text: str
    created_at: datetime

    def describe(self) -> dict[str, Any]:
        return {
            "Version": self.number,
            "Subject": self.subject,
            "HTMLContent": self.html,
            "PlainContent": self.text,
            "CreatedAt": self.created_at.isoformat(),
        }


class UnknownVersion(Exception):
    pass


def version_number(value: Any) -> int:
    """A version as a request gives it: a number, or digits as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        return int(value)
    raise UnknownVersion(value)


class Template(Aggregate):
    @event("Created")
    def __init__(
        self, id: UUID, account_id: UUID, name: str, subject: str, html: str, text: str,
        created_at: datetime,
    ) -> None:  # fmt: skip
        self._id = id
        self.account_id = account_id
        self.name = name
        self.versions: list[TemplateVersion] = [TemplateVersion(1, subject, html, text, created_at)]
        self.active_version = 1
        self.is_deleted = False

    @property
    def active(self) -> TemplateVersion:
        return self.versions[self.active_version - 1]

    def numbered(self, number: int) -> TemplateVersion:
        if not 1 <= number <= len(self.versions):
            raise UnknownVersion(number)
        return self.versions[number - 1]

    @event("VersionAdded")
    def add_version(self, subject: str, html: str, text: str, created_at: datetime) -> None:
        number = len(self.versions) + 1
        self.versions.append(TemplateVersion(number, subject, html, text, created_at))
        self.active_version = number

    def activate(self, number: int) -> None:
        self.numbered(number)  # raises for a version it does not have
        if number != self.active_version:
            self._activated(number=number)

    @event("VersionActivated")
    def _activated(self, number: int) -> None:
        self.active_version = number

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name

    @event("Deleted")
    def delete(self, at: datetime) -> None:
        self.is_deleted = True


def template_index_id(account_id: UUID) -> UUID:
    return uuid5(account_id, "templates")


class TemplateIndex(Aggregate):
    """An account's templates by name, so that they can be listed and names kept unique
    without scanning every aggregate."""

    @event("Opened")
    def __init__(self, id: UUID, account_id: UUID) -> None:
        self._id = id
        self.account_id = account_id
        self.names: dict[UUID, str] = {}  # id → name

    def has_name(self, name: str, besides: UUID | None = None) -> bool:
        return any(n.lower() == name.lower() and i != besides for i, n in self.names.items())

    @event("TemplateNamed")
    def name(self, template_id: UUID, name: str) -> None:
        self.names[template_id] = name

    @event("TemplateRemoved")
    def remove(self, template_id: UUID) -> None:
        self.names.pop(template_id, None)
