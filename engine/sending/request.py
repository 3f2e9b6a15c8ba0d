"""Reads a ``POST /api/v1/email`` body into an ``EmailContent``, or the documented errors.

Every rule that can be checked without touching state is checked here, and all
broken rules are reported at once, as the documents' error lists show.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from domain.content import Address, Attachment, EmailContent
from domain.errors import ErrorText, Extensions, RequestRejected, SendEmail
from engine.params import UNSAFE_TEXT, is_valid_email, parse_timestamp

# RFC 5322 field names: printable ASCII except colon. Values may not break the line.
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Return-Path", "Received",
        "DKIM-Signature", "Sender",
    )
)  # fmt: skip
MAX_TAGS = 20
MAX_TAG_LENGTH = 128


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _one_line(value: str) -> str:
    """Display names and subjects lose line breaks and control characters (each becomes a
    space) rather than gain header lines or fail to render."""
    return UNSAFE_TEXT.sub(" ", value)


def _address(
    item: Any, missing: ErrorText, invalid: ErrorText, errors: list[ErrorText]
) -> Address | None:
    if (
        not isinstance(item, dict)
        or _text(item.get("email")) is None
        or not isinstance(item.get("name"), str)
    ):
        errors.append(missing)
        return None
    email = item["email"].strip()
    if not is_valid_email(email):
        errors.append(invalid)
        return None
    return Address(email=email, name=_one_line(item["name"]).strip())


def _addresses(
    value: Any,
    *,
    not_array: ErrorText,
    missing: ErrorText,
    invalid: ErrorText,
    errors: list[ErrorText],
) -> tuple[Address, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(not_array)
        return ()
    found: list[Address] = []
    local: list[ErrorText] = []
    for item in value:
        address = _address(item, missing, invalid, local)
        if address is not None:
            found.append(address)
    errors.extend(dict.fromkeys(local))  # one error per kind, not one per bad address
    return tuple(found)


def _bool(value: Any, name: str, errors: list[ErrorText]) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "0", "true", "false", "yes", "no"):
        return value.strip().lower() in ("1", "true", "yes")
    errors.append(Extensions.INVALID_PARAMETER.format(name=name))
    return None


def _headers(value: Any, errors: list[ErrorText]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(
        isinstance(h, dict) and set(h) >= {"name", "value"} for h in value
    ):
        pairs = [(h["name"], h["value"]) for h in value]
    else:
        errors.append(Extensions.INVALID_HEADERS.format(reason="an object of name: value"))
        return ()
    result: list[tuple[str, str]] = []
    for name, header_value in pairs:
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            errors.append(Extensions.INVALID_HEADERS.format(reason="a header name is not valid"))
            return ()
        if not isinstance(header_value, str) or UNSAFE_TEXT.search(header_value):
            errors.append(
                Extensions.INVALID_HEADERS.format(reason=f"the value of {name} is not one line")
            )
            return ()
        if len(header_value) > 900:
            errors.append(
                Extensions.INVALID_HEADERS.format(reason=f"the value of {name} is too long")
            )
            return ()
        if name.lower() in _RESERVED_HEADERS:
            errors.append(
                Extensions.INVALID_HEADERS.format(reason=f"{name} is set by Sendstream itself")
            )
            return ()
        result.append((name, header_value))
    return tuple(result)


def _attachments(value: Any, errors: list[ErrorText]) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="must be an array"))
        return ()
    result: list[Attachment] = []
    for item in value:
        if not isinstance(item, dict):
            errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="each must be an object"))
            return ()
        filename: Any = item.get("filename") or item.get("name")
        content = item.get("content")
        content_type = (
            item.get("type") or item.get("contentType") or item.get("content_type")
            or "application/octet-stream"
        )  # fmt: skip
        if not isinstance(filename, str) or not filename.strip():
            errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="filename is missing"))
            return ()
        if UNSAFE_TEXT.search(filename) or len(filename) > 255:
            errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="filename is missing"))
            return ()
        if not isinstance(content_type, str) or not re.fullmatch(
            r"[\w.+-]+/[\w.+-]+", content_type
        ):
            errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="type is not a MIME type"))
            return ()
        if not isinstance(content, str):
            errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="content is missing"))
            return ()
        try:
            base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            errors.append(Extensions.INVALID_ATTACHMENTS.format(reason="content is not base64"))
            return ()
        result.append(Attachment(filename.strip(), content_type, content))
    return tuple(result)


def _tags(value: Any, errors: list[ErrorText]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [t for t in value.split(",") if t.strip()]
    if (
        not isinstance(value, list)
        or len(value) > MAX_TAGS
        or not all(isinstance(t, str) and 0 < len(t.strip()) <= MAX_TAG_LENGTH for t in value)
        or any(UNSAFE_TEXT.search(t) for t in value)
    ):
        errors.append(Extensions.INVALID_TAGS)
        return ()
    return tuple(dict.fromkeys(t.strip() for t in value))


def parse_send_request(
    body: dict[str, Any],
    *,
    max_recipients: int,
    max_reply_to: int,
    now: datetime,
    with_recipients: bool = True,
) -> EmailContent:
    """Raises ``RequestRejected`` with every broken rule; the caller checks state-dependent ones.

    ``with_recipients=False`` parses what a batch's recipients share: its To, CC and BCC
    are refused, and the content returned has no recipient yet (see engine.sending.batch).
    """
    errors: list[ErrorText] = []

    subject = body.get("Subject")
    if _text(subject) is None:
        errors.append(SendEmail.MISSING_SUBJECT)

    content_type = body.get("ContentType")
    kind = content_type.strip().lower() if isinstance(content_type, str) else None
    if kind not in ("html", "plain"):
        errors.append(SendEmail.MISSING_CONTENT_TYPE)
    html = body.get("HtmlContent")
    plain = body.get("PlainContent")
    html = html if isinstance(html, str) and html.strip() else None
    plain = plain if isinstance(plain, str) and plain.strip() else None
    if kind == "html" and html is None:
        errors.append(SendEmail.MISSING_HTML_CONTENT)
    if kind == "plain" and plain is None:
        errors.append(SendEmail.MISSING_PLAIN_CONTENT)

    sender_field = body.get("From")
    sender: Address | None = None
    if (
        not isinstance(sender_field, dict)
        or _text(sender_field.get("email")) is None
        or _text(sender_field.get("name")) is None
    ):
        errors.append(SendEmail.INVALID_FROM)
    elif not is_valid_email(sender_field["email"].strip()):
        errors.append(SendEmail.FROM_EMAIL_INVALID)
    else:
        sender = Address(sender_field["email"].strip(), _one_line(sender_field["name"]).strip())

    to_field = body.get("To")
    if not with_recipients:
        for field in ("To", "CC", "BCC"):
            if body.get(field) not in (None, "", []):
                errors.append(Extensions.NOT_IN_A_BATCH.format(name=field))
        to_field = cc_field = bcc_field = None
        to: tuple[Address, ...] = ()
    elif to_field is None or to_field == [] or to_field == "":
        errors.append(SendEmail.NO_RECIPIENT)
        to = ()
    else:
        # One object is accepted as well as an array of them, as senders migrating often pass one.
        to = _addresses(
            [to_field] if isinstance(to_field, dict) else to_field,
            not_array=SendEmail.RECIPIENT_MISSING,
            missing=SendEmail.RECIPIENT_MISSING,
            invalid=SendEmail.RECIPIENT_INVALID,
            errors=errors,
        )
    if with_recipients:
        cc_field, bcc_field = body.get("CC"), body.get("BCC")
    cc = _addresses(
        cc_field,
        not_array=SendEmail.CC_MISSING,
        missing=SendEmail.CC_MISSING,
        invalid=SendEmail.CC_INVALID,
        errors=errors,
    )
    bcc = _addresses(
        bcc_field,
        not_array=SendEmail.BCC_NOT_ARRAY,
        missing=SendEmail.BCC_MISSING,
        invalid=SendEmail.BCC_INVALID,
        errors=errors,
    )
    if len(bcc) > max_recipients:
        errors.append(SendEmail.BCC_TOO_MANY)
    elif len(to) + len(cc) + len(bcc) > max_recipients:
        errors.append(Extensions.TOO_MANY_RECIPIENTS.format(limit=max_recipients))
    reply_to = _addresses(
        body.get("ReplyTo"),
        not_array=SendEmail.REPLY_TO_NOT_ARRAY,
        missing=SendEmail.REPLY_TO_MISSING,
        invalid=SendEmail.REPLY_TO_INVALID,
        errors=errors,
    )
    if len(reply_to) > max_reply_to:
        errors.append(SendEmail.REPLY_TO_TOO_MANY)

    attachments = _attachments(body.get("Attachments"), errors)
    headers = _headers(body.get("Headers"), errors)
    tags = _tags(body.get("Tags"), errors)
    track_links = _bool(body.get("TrackLinks"), "TrackLinks", errors)
    track_opens = _bool(body.get("TrackOpens"), "TrackOpens", errors)

    send_at: datetime | None = None
    if body.get("SendAt") not in (None, ""):
        send_at = parse_timestamp(body["SendAt"])
        if send_at is None:
            errors.append(Extensions.INVALID_DATE)
        elif send_at <= now:
            send_at = None  # a time already past means now

    if body.get("TemplateID") not in (None, ""):
        # The send service renders a template into the body before it is parsed.
        errors.append(SendEmail.INVALID_TEMPLATE_ID)
    if body.get("TargetListID") not in (None, ""):
        errors.append(SendEmail.INVALID_TARGET_LIST_ID)  # lists arrive with campaigns

    if errors or sender is None:
        raise RequestRejected(*dict.fromkeys(errors))
    assert isinstance(subject, str)
    return EmailContent(
        subject=_one_line(subject).strip(),
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        html=html,
        plain=plain,
        attachments=attachments,
        headers=headers,
        tags=tags,
        track_links=track_links,
        track_opens=track_opens,
        send_at=send_at,
    )
