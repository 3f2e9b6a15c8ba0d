"""A batch send: one content for up to ``MAX_BATCH_RECIPIENTS`` recipients, each with its own
data, each given its own submission and Message (its own MessageID and history).

What the recipients share (sender, content or template, headers, tags, SendAt …) is checked
once, and a fault in it refuses the whole batch with the errors of a single send. What is a
recipient's own (its address, a suppression, its data against the template, a repeat) is
reported for that recipient, and the others are accepted: the answer lists, in the order
given, each recipient's MessageID or its error. The accepted ones are recorded as one
event (``domain.batch``), so a process that dies mid-batch leaves all of them or none;
their messages are made from it afterwards (``engine.sending.batch_fanout``).

The content of a batch is a template: its Subject, HtmlContent and PlainContent (or those of
the stored template ``TemplateID``) are rendered for each recipient with the batch's
``TemplateData`` overlaid by the recipient's own ``TemplateData``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from adapters.templating import TemplateRefused, check, render, render_subject
from domain.content import Address, EmailContent
from domain.errors import ErrorText, Extensions, RequestRejected, SendEmail
from domain.suppression import SuppressionList
from engine.params import UNSAFE_TEXT, is_valid_email

MAX_BATCH_RECIPIENTS = 1_000
# Each recipient's submission keeps the whole content, attachments included.
MAX_BATCH_ATTACHMENT_BYTES = 100_000
BATCH_ENDPOINT = "POST /api/v1/email/batch"
_TEMPLATE_MARKS = ("{{", "{%", "{#")


@dataclass(frozen=True)
class Parts:
    """The sources every recipient's subject and bodies are rendered from."""

    subject: str
    html: str | None
    text: str | None

    def check(self) -> None:
        """Refuse the batch (with the part and line) if a part is not a valid template."""
        try:
            check("Subject", self.subject)
            if self.html:
                check("HTMLContent", self.html, html=True)
            if self.text:
                check("PlainContent", self.text)
        except TemplateRefused as refused:
            raise RequestRejected(
                Extensions.CONTENT_NOT_A_TEMPLATE.format(reason=str(refused))
            ) from None

    def rendered(self, data: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        """Subject, HTML and text for one recipient's data; a part without template code
        is its source (most batches personalise a greeting, not every part)."""
        subject = self.subject
        if _is_template(subject):
            subject = render_subject(subject, data)
        html, text = self.html, self.text
        if html and _is_template(html):
            html = render("HTMLContent", html, data, html=True)
        if text and _is_template(text):
            text = render("PlainContent", text, data)
        return subject, html or None, text or None


def _is_template(source: str) -> bool:
    return any(mark in source for mark in _TEMPLATE_MARKS)


@dataclass(frozen=True)
class BatchEntry:
    """One recipient of a batch: the content it gets, or why it gets none."""

    email: str
    content: EmailContent | None = None
    error: ErrorText | None = None


def recipients_field(body: Mapping[str, Any]) -> list[Any]:
    """The ``Recipients`` array, or the whole batch's refusal."""
    recipients = body.get("Recipients")
    if recipients is None or recipients == [] or recipients == "":
        raise RequestRejected(SendEmail.NO_RECIPIENT)
    if not isinstance(recipients, list):
        raise RequestRejected(Extensions.INVALID_PARAMETER.format(name="Recipients"))
    if len(recipients) > MAX_BATCH_RECIPIENTS:
        raise RequestRejected(Extensions.TOO_MANY_RECIPIENTS.format(limit=MAX_BATCH_RECIPIENTS))
    return recipients


def shared_data(body: Mapping[str, Any]) -> dict[str, Any]:
    data = body.get("TemplateData", {})
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestRejected(Extensions.INVALID_PARAMETER.format(name="TemplateData"))
    return data


def check_attachments(shared: EmailContent) -> None:
    size = sum(len(a.content_base64) for a in shared.attachments)
    if size > MAX_BATCH_ATTACHMENT_BYTES:
        raise RequestRejected(
            Extensions.BATCH_ATTACHMENTS_TOO_LARGE.format(limit=MAX_BATCH_ATTACHMENT_BYTES)
        )


def personalise(
    shared: EmailContent,
    parts: Parts,
    recipients: list[Any],
    data: Mapping[str, Any],
    suppressions: SuppressionList | None,
) -> list[BatchEntry]:
    """Each recipient's entry, in the order given."""
    entries: list[BatchEntry] = []
    seen: set[str] = set()
    for item in recipients:
        entry = _entry(shared, parts, item, data, suppressions, seen)
        entries.append(entry)
        if entry.content is not None:
            seen.add(entry.email.lower())
    return entries


def _entry(
    shared: EmailContent,
    parts: Parts,
    item: Any,
    data: Mapping[str, Any],
    suppressions: SuppressionList | None,
    seen: set[str],
) -> BatchEntry:
    if not isinstance(item, dict) or not isinstance(item.get("email"), str):
        return BatchEntry("", error=SendEmail.RECIPIENT_MISSING)
    email = item["email"].strip()
    name = item.get("name", "")
    if not email or not isinstance(name, str):
        return BatchEntry(email, error=SendEmail.RECIPIENT_MISSING)
    if not is_valid_email(email):
        return BatchEntry(email, error=SendEmail.RECIPIENT_INVALID)
    if email.lower() in seen:
        return BatchEntry(email, error=Extensions.DUPLICATE_RECIPIENT)
    if suppressions is not None and suppressions.contains(email):
        return BatchEntry(email, error=SendEmail.SUPPRESSED)
    own = item.get("TemplateData")
    if own is not None and not isinstance(own, dict):
        return BatchEntry(email, error=Extensions.INVALID_PARAMETER.format(name="TemplateData"))
    try:
        subject, html, text = parts.rendered({**data, **own} if own else data)
    except TemplateRefused as refused:
        return BatchEntry(email, error=Extensions.TEMPLATE_NOT_RENDERED.format(reason=str(refused)))
    if not subject:
        return BatchEntry(email, error=SendEmail.MISSING_SUBJECT)
    if html is None and text is None:
        return BatchEntry(
            email,
            error=SendEmail.MISSING_HTML_CONTENT
            if shared.html
            else SendEmail.MISSING_PLAIN_CONTENT,
        )
    address = Address(email=email, name=UNSAFE_TEXT.sub(" ", name).strip())
    return BatchEntry(
        email, content=replace(shared, to=(address,), subject=subject, html=html, plain=text)
    )


def answer(entries: list[BatchEntry], message_ids: Mapping[int, str]) -> dict[str, Any]:
    """``{"Accepted", "Refused", "Recipients": [{"Email", "MessageID"} or {"Email", "Errors"}]}``
    in the order the recipients were given; ``message_ids`` by the entry's index."""
    listed: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if entry.error is not None:
            error = {"Code": entry.error.code, "Message": entry.error.message}
            listed.append({"Email": entry.email, "Errors": [error]})
        else:
            listed.append({"Email": entry.email, "MessageID": message_ids[index]})
    accepted = len(message_ids)
    return {"Accepted": accepted, "Refused": len(entries) - accepted, "Recipients": listed}
