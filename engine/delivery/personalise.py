"""A campaign's content made for one recipient: merge tags filled from their list fields."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from uuid import UUID

from domain.content import Address, EmailContent
from domain.merge_tags import (
    Template,
    parse_template,
    plain_from_html,
    render_header,
    render_html,
    render_text,
)


@dataclasses.dataclass(frozen=True)
class _Templates:
    subject: Template
    from_name: Template
    html: Template | None
    plain: Template


class Personaliser:
    """Parses each campaign content's templates once, renders them per recipient."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._templates: OrderedDict[UUID, _Templates] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _templates_of(content: EmailContent) -> _Templates:
        # A campaign without a plain body gets one made from its HTML, tags and all.
        plain = content.plain or (plain_from_html(content.html) if content.html else "")
        return _Templates(
            subject=parse_template(content.subject),
            from_name=parse_template(content.sender.name or ""),
            html=parse_template(content.html) if content.html else None,
            plain=parse_template(plain),
        )

    def _parsed(self, submission_id: UUID, content: EmailContent) -> _Templates:
        with self._lock:
            found = self._templates.get(submission_id)
            if found is not None:
                return found
        parsed = self._templates_of(content)
        with self._lock:
            self._templates[submission_id] = parsed
            while len(self._templates) > self._size:
                self._templates.popitem(last=False)
        return parsed

    def personalise(
        self,
        submission_id: UUID,
        content: EmailContent,
        recipient: str,
        fields: dict[str, str],
    ) -> EmailContent:
        return self._rendered(self._parsed(submission_id, content), content, recipient, fields)

    def preview(
        self, content: EmailContent, recipient: str, fields: dict[str, str]
    ) -> EmailContent:
        """One recipient's copy of content that is not being sent (nothing is cached)."""
        return self._rendered(self._templates_of(content), content, recipient, fields)

    @staticmethod
    def _rendered(
        templates: _Templates, content: EmailContent, recipient: str, fields: dict[str, str]
    ) -> EmailContent:
        name = " ".join(
            part for part in (fields.get("FirstName", ""), fields.get("LastName", "")) if part
        )
        return dataclasses.replace(
            content,
            subject=render_header(templates.subject, fields),
            sender=Address(content.sender.email, render_header(templates.from_name, fields)),
            to=(Address(recipient, render_header(parse_template(name), {})),),
            html=render_html(templates.html, fields) if templates.html else None,
            plain=render_text(templates.plain, fields) or None,
        )
