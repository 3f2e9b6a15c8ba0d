"""A campaign's content made for one recipient: its templates rendered with their list
fields, in the sandbox stored templates use (adapters/templating.py). Merge tags
(``%Subscriber:FirstName|there%``) are template code like any other."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from uuid import UUID

from adapters.templating import from_merge_tags, render, render_subject, subscriber_data
from domain.content import Address, EmailContent
from domain.merge_tags import plain_from_html


@dataclasses.dataclass(frozen=True)
class _Templates:
    """The sources each recipient's parts are rendered from."""

    subject: str
    from_name: str
    html: str | None
    plain: str


class Personaliser:
    """Prepares each campaign content's templates once, renders them per recipient."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._templates: OrderedDict[UUID, _Templates] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _templates_of(content: EmailContent) -> _Templates:
        # A campaign without a plain body gets one made from its HTML, template code and all.
        plain = content.plain or (plain_from_html(content.html) if content.html else "")
        return _Templates(
            subject=from_merge_tags(content.subject),
            from_name=from_merge_tags(content.sender.name or ""),
            html=from_merge_tags(content.html) if content.html else None,
            plain=from_merge_tags(plain),
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
        """Raises ``TemplateRefused`` for what only this recipient's fields show."""
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
        data = subscriber_data(fields)
        name = " ".join(
            part for part in (fields.get("FirstName", ""), fields.get("LastName", "")) if part
        )
        return dataclasses.replace(
            content,
            subject=render_subject(templates.subject, data),
            sender=Address(content.sender.email, render_subject(templates.from_name, data)),
            to=(Address(recipient, " ".join(name.split())),),
            html=render("MessageHTML", templates.html, data, html=True) if templates.html else None,
            plain=render("MessagePlain", templates.plain, data) or None,
        )
