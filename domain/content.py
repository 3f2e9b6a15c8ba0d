"""Value objects of an email as the customer submitted it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Address:
    email: str
    name: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content_base64: str


class RecipientKind(StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


@dataclass(frozen=True)
class EmailContent:
    """Everything needed to render the MIME message, shared by all its recipients."""

    subject: str
    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    html: str | None = None
    plain: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    track_links: bool | None = None
    track_opens: bool | None = None
    send_at: datetime | None = None

    def recipients(self) -> list[tuple[RecipientKind, Address]]:
        """Every envelope recipient once, in the order they were given."""
        seen: set[str] = set()
        result: list[tuple[RecipientKind, Address]] = []
        for kind, group in (
            (RecipientKind.TO, self.to),
            (RecipientKind.CC, self.cc),
            (RecipientKind.BCC, self.bcc),
        ):
            for address in group:
                key = address.email.lower()
                if key not in seen:
                    seen.add(key)
                    result.append((kind, address))
        return result

    def to_dict(self) -> dict[str, Any]:
        """The stored form: plain JSON values, stable across versions."""
        return {
            "subject": self.subject,
            "from": _address_to_dict(self.sender),
            "to": [_address_to_dict(a) for a in self.to],
            "cc": [_address_to_dict(a) for a in self.cc],
            "bcc": [_address_to_dict(a) for a in self.bcc],
            "reply_to": [_address_to_dict(a) for a in self.reply_to],
            "html": self.html,
            "plain": self.plain,
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "content": a.content_base64,
                }
                for a in self.attachments
            ],
            "headers": [[name, value] for name, value in self.headers],
            "tags": list(self.tags),
            "track_links": self.track_links,
            "track_opens": self.track_opens,
            "send_at": self.send_at.isoformat() if self.send_at else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmailContent:
        return cls(
            subject=data["subject"],
            sender=_address_from_dict(data["from"]),
            to=tuple(_address_from_dict(a) for a in data["to"]),
            cc=tuple(_address_from_dict(a) for a in data["cc"]),
            bcc=tuple(_address_from_dict(a) for a in data["bcc"]),
            reply_to=tuple(_address_from_dict(a) for a in data["reply_to"]),
            html=data["html"],
            plain=data["plain"],
            attachments=tuple(
                Attachment(a["filename"], a["content_type"], a["content"])
                for a in data["attachments"]
            ),
            headers=tuple((name, value) for name, value in data["headers"]),
            tags=tuple(data["tags"]),
            track_links=data["track_links"],
            track_opens=data["track_opens"],
            send_at=datetime.fromisoformat(data["send_at"]) if data["send_at"] else None,
        )


def _address_to_dict(address: Address) -> dict[str, str]:
    return {"email": address.email, "name": address.name}


def _address_from_dict(data: dict[str, str]) -> Address:
    return Address(email=data["email"], name=data.get("name", ""))
