"""Reading what comes back to a return path: delivery reports (RFC 3464 DSNs), feedback
reports (RFC 5965 ARF complaints), and the bounces that follow neither.

``parse_report(raw)`` answers one of

* ``DeliveryReport``: one ``ReportedRecipient`` per recipient block of the report's
  ``message/delivery-status`` part; or, for a bounce that is no RFC 3464 report (old
  Exchange, qmail, Yahoo, Exim without DSNs…), the recipients that flufl.bounce's
  heuristic detectors find, each with the status code or SMTP reply found near it in
  the text (``heuristic=True``). A bounce that names no recipient but is plainly one (a
  mailer-daemon's "delivery failed" notice) gives a single recipient "": the return
  path, not the report, tells which message it was.
* ``FeedbackReport``: the ``message/feedback-report`` fields of an ARF report.
* ``None``: anything else (an auto-reply, a person's answer, spam, garbage). It never
  raises: everything here reads hostile input.

Standard parts are found wherever they are in the MIME tree, except inside an attached
message (``message/rfc822``): a bounce of a bounce carries the earlier report there, and
it is not this report.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from domain.bounces import BounceClass, classify

log = logging.getLogger(__name__)

__all__ = [
    "COMPLAINT_TYPES",
    "DeliveryReport",
    "FeedbackReport",
    "ReportedRecipient",
    "classify_recipient",
    "is_complaint",
    "parse_report",
]

MAX_PARTS = 500
MAX_DEPTH = 20
MAX_RECIPIENTS = 1000
MAX_FIELD = 2000  # characters kept of one field's value
HEURISTIC_BYTES = 256 * 1024  # how much of a non-standard bounce the heuristics read
_NOTICE_CHARS = 20_000  # how much of a notice's text is searched for codes

# RFC 5965's registered feedback types, all complaints about a message. "not-spam" is the
# opposite, and "auth-failure" (RFC 6591) is a DMARC/DKIM/SPF failure report sent by a
# machine, not a person's complaint; other types are read but are not complaints.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})

_COMPAT = policy.compat32.clone(linesep="\n", mangle_from_=False, max_line_length=0)
_ADDRESS = re.compile(
    r"(?i)^(?!.*\.\.)[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"
)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_FAILURE_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
# An SMTP reply code at the start of a reply: "550 5.1.1 …", "550-…", "(550 …", "said: 550 …".
_SMTP_CODE = re.compile(r"(?:^|[\s(:;\"'\[])([45][0-5]\d)(?=[ \-\]),.]|$)")
_DIAGNOSTIC_CODE = re.compile(r"^\s*(?:[\w-]+\s*;)?\s*([245][0-5]\d)(?![\d])")
_BLANK = re.compile(rb"\r?\n\r?\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
# Where a plain-text notice stops and the returned message starts: a separator line
# ("------ This is a copy of the message", "--- Below this line is a copy of the
# message.", "----- Message header follows -----", "---- START OF RETURNED MESSAGE").
_ORIGINAL_STARTS = re.compile(
    r"(?im)^[ \t>|]*[-=*_]{2,}[^\n]*?(?:original message|returned (?:mail|message)"
    r"|message (?:header|headers|text|body) follow|copy of (?:the|your)|undelivered message"
    r"|unsent message|rfc ?822)"
)
_BOUNCE_SENDER = re.compile(
    r"(?i)mailer[-_ ]?daemon|postmaster|mail[-_ ]?delivery|mail[-_ ]?administrator"
    r"|^ndr@|mail ?system|mailer@|daemon@"
)
_BOUNCE_SUBJECT = re.compile(
    r"(?i)undeliver|undelivered|delivery (?:status|fail|notification|report|problem)"
    r"|returned mail|mail delivery fail|failure notice|could not be delivered|not delivered"
    r"|delivery has failed|mail error|non[- ]?delivery|rejected|bounce|returned to sender"
    r"|delayed mail|delivery delay|warning: could not send|message delayed"
)
_DELAY_WORDS = re.compile(
    r"(?i)\bdelay|not yet been delivered|will (?:continue|keep) (?:trying|to try)|still trying"
    r"|temporar(?:y|ily) (?:failure|error|problem)|will retry|warning"
)
# Auto-replies come to the return path too (RFC 3834 says to answer the envelope sender).
_AUTO_REPLY_SUBJECT = re.compile(
    r"(?i)auto[- ]?(?:reply|response|matic reply)|out of (?:the )?office|vacation|abwesenheit"
)


@dataclass(frozen=True)
class ReportedRecipient:
    recipient: str  # the address as we sent it when the report says (Original-Recipient)
    action: str  # failed | delayed | delivered | relayed | expanded (lowercase)
    status: str  # the enhanced status code, "5.1.1" ("" when none was given)
    diagnostic: str  # Diagnostic-Code as given ("smtp; 550 5.1.1 …"), one line
    remote_mta: str  # the host that answered, without its "dns;" type
    # The report's human-readable words about this recipient: the comment of its Status
    # and the lines of the text part that name it. Many MTAs give no Diagnostic-Code, or
    # an unspecific "5.0.0", and say what happened only there.
    notice: str = ""

    @property
    def smtp_code(self) -> int | None:
        """The SMTP reply code the diagnostic starts with ("smtp; 550 …" → 550)."""
        match = _DIAGNOSTIC_CODE.match(self.diagnostic) or _SMTP_CODE.search(self.diagnostic)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class DeliveryReport:  # RFC 3464
    recipients: tuple[ReportedRecipient, ...]
    original_envelope_id: str
    reporting_mta: str
    original_message_id: str | None  # without angle brackets
    heuristic: bool = False  # read from a non-standard bounce's text, not from a DSN


@dataclass(frozen=True)
class FeedbackReport:  # RFC 5965 ARF
    """``abuse_id``: ARF has no identifier field. The report's own, where a feedback loop
    sends one (an ``Abuse-ID``, ``X-Abuse-ID``, ``Feedback-ID`` or ``X-Feedback-ID`` field
    of the feedback part, else of the report's header); otherwise ``sha256:`` and 32 hex
    digits of the report's Message-ID, the returned message's Message-ID and the sorted
    feedback fields: the same for the same report sent again, different for another.
    ``original_recipient``: Original-Rcpt-To, or Microsoft JMRP's
    ``X-HmXmrOriginalRecipient`` header (JMRP leaves Original-Rcpt-To out)."""

    feedback_type: str  # lowercase: abuse, fraud, virus, other, not-spam, auth-failure…
    user_agent: str
    original_recipient: str
    original_mail_from: str
    abuse_id: str
    original_message_id: str | None  # without angle brackets
    arrival_date: str  # Arrival-Date (or the older drafts' Received-Date), as given


def classify_recipient(recipient: ReportedRecipient) -> BounceClass:
    """``domain.bounces.classify`` for one reported recipient: its status, SMTP code and
    diagnostic, and, when the status names no reason (none, or X.Y.0) and the diagnostic
    has no code of its own, the report's words about the recipient too."""
    text = recipient.diagnostic
    generic = not recipient.status or recipient.status.endswith(".0")
    if generic and recipient.notice and not _FAILURE_STATUS.search(text):
        text = f"{text} {recipient.notice}".strip()
    return classify(recipient.status, recipient.smtp_code, text, recipient.action)


def is_complaint(feedback_type: str) -> bool:
    """Whether a feedback report of this type is a complaint against the message."""
    return feedback_type.strip().lower() in COMPLAINT_TYPES


def parse_report(raw: bytes) -> DeliveryReport | FeedbackReport | None:
    """The report in ``raw`` (a whole message as received at DATA), or None."""
    try:
        return _parse(raw)
    except Exception:
        # The stdlib parser and the heuristics have raised on malformed input before;
        # whatever the reason, an unreadable message is no report.
        log.debug("unreadable report", exc_info=True)
        return None


def _parse(raw: bytes) -> DeliveryReport | FeedbackReport | None:
    message = BytesParser(policy=_COMPAT).parsebytes(raw)
    parts = list(_parts(message))
    if not any(p.get_content_type() in _REPORT_TYPES for p in parts):
        # A gateway that wraps the report it relays in a message of its own: the report
        # is the attached message. Looked for only when the message has no report part
        # itself, where an attached message is the returned original instead.
        for attached in _attached(parts):
            inner = list(_parts(attached))
            if any(p.get_content_type() in _REPORT_TYPES for p in inner):
                message, parts = attached, inner
                break
    feedback = _first(parts, "message/feedback-report")
    if feedback is not None:
        return _feedback_report(message, feedback, parts)
    report = _delivery_report(message, parts)
    if report is not None and report.recipients:
        return report
    heuristic = _heuristic_report(raw if len(raw) <= HEURISTIC_BYTES else raw[:HEURISTIC_BYTES])
    if heuristic is not None:
        if report is not None:
            # A DSN whose machine part was unreadable: keep what its per-message part said.
            return DeliveryReport(
                heuristic.recipients, report.original_envelope_id, report.reporting_mta,
                report.original_message_id or heuristic.original_message_id, heuristic=True,
            )  # fmt: skip
        return heuristic
    return report


# --- MIME plumbing ----------------------------------------------------------------------

_REPORT_TYPES = frozenset(
    {"message/feedback-report", "message/delivery-status", "message/global-delivery-status"}
)


def _attached(parts: list[Message]) -> Iterator[Message]:
    for part in parts:
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                yield payload[0]


def _parts(message: Message) -> Iterator[Message]:
    """Every part, depth first, without entering attached messages; bounded."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part
        if depth >= MAX_DEPTH or part.get_content_maintype() != "multipart":
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))


def _first(parts: list[Message], content_type: str) -> Message | None:
    return next((p for p in parts if p.get_content_type() == content_type), None)


def _text(value: Any) -> str:
    """A header value as text: 8-bit bytes that compat32 kept as surrogates become U+FFFD."""
    text = str(value) if value is not None else ""
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _one_line(text: str, limit: int = MAX_FIELD) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def _body_bytes(part: Message) -> bytes:
    """A part's body as sent, transfer-decoded, whatever the parser made of it (it parses
    message/* bodies as header blocks or messages, and keeps only those)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        source = part.as_bytes(policy=_COMPAT)
        blank = _BLANK.search(source)
        body = source[blank.end() :] if blank else b""
    elif isinstance(payload, str):
        body = payload.encode("utf-8", "surrogateescape")
    else:
        return b""
    encoding = _text(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        try:
            body = binascii.a2b_base64(body)
        except binascii.Error:
            return b""
    elif encoding == "quoted-printable":
        body = quopri.decodestring(body)
    return body


def _decoded_text(part: Message) -> str:
    """A leaf text part, decoded with its charset (or UTF-8, or Latin-1, never raising)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _fields(text: str) -> list[list[tuple[str, str]]]:
    """Header-style blocks (RFC 3464 per-message and per-recipient fields), each a list
    of (lowercase name, unfolded value), split at blank lines."""
    blocks: list[list[tuple[str, str]]] = []
    block: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if block:
                blocks.append(block)
                block = []
            continue
        if line[0] in " \t":
            if block:
                name, value = block[-1]
                block[-1] = (name, f"{value} {line.strip()}"[:MAX_FIELD])
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if colon and name and " " not in name:
            block.append((name, value.strip()[:MAX_FIELD]))
    if block:
        blocks.append(block)
    return blocks


def _typed(value: str) -> str:
    """``rfc822; user@example.com`` → ``user@example.com``; ``dns; mx.example.com`` →
    ``mx.example.com`` (RFC 3464 typed values), without angle brackets."""
    kind, semicolon, rest = value.partition(";")
    text = rest if semicolon and " " not in kind.strip() else value
    text = _one_line(text).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def _message_id(value: str) -> str | None:
    text = _one_line(_text(value))
    match = re.search(r"<([^<>\s]+)>", text)
    found = match.group(1) if match else text.strip().strip("<>").strip()
    return found or None


def _original_message_id(parts: list[Message]) -> str | None:
    """The Message-ID of the returned message (message/rfc822 or text/rfc822-headers)."""
    for part in parts:
        kind = part.get_content_type()
        headers: Message | None = None
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                headers = payload[0]
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            headers = BytesHeaderParser(policy=_COMPAT).parsebytes(
                _body_bytes(part).lstrip(b"\r\n")
            )
        if headers is not None and headers.get("Message-ID") is not None:
            return _message_id(headers.get("Message-ID", ""))
    return None


# --- RFC 3464 ---------------------------------------------------------------------------

_RECIPIENT_FIELDS = ("original-recipient", "final-recipient")


def _delivery_report(message: Message, parts: list[Message]) -> DeliveryReport | None:
    status_part = _first(parts, "message/delivery-status") or _first(
        parts, "message/global-delivery-status"
    )
    disposition = False
    if status_part is None:
        # RFC 6522: the second part of a multipart/report is its machine-readable part,
        # whatever some gateways label it.
        for part in parts:
            if part.get_content_type() == "multipart/report":
                children = part.get_payload()
                second = children[1] if isinstance(children, list) and len(children) >= 2 else None
                if isinstance(second, Message):
                    status_part = second
                    disposition = (
                        _text(part.get_param("report-type", "")).lower()
                        == "disposition-notification"
                        or second.get_content_type() == "message/disposition-notification"
                    )
                break
    if status_part is None:
        return None
    text = _body_bytes(status_part).decode("utf-8", "replace")
    per_message: dict[str, str] = {}
    records: list[dict[str, str]] = []
    for block in _fields(text):
        if not any(name in _RECIPIENT_FIELDS for name, _ in block):
            for name, value in block:
                per_message.setdefault(name, value)
            continue
        current: dict[str, str] | None = None
        for name, value in block:
            # One block per recipient, but some MTAs run recipients together: a recipient
            # field seen again starts the next one.
            if current is None or (name in _RECIPIENT_FIELDS and name in current):
                if len(records) >= MAX_RECIPIENTS:
                    break
                current = {}
                records.append(current)
            current.setdefault(name, value)
    if disposition:
        # An MDN (RFC 8098) is no delivery report, but Dovecot's LDA and Sieve "reject"
        # refuse mail with one: "automatic-action/MDN-sent-automatically; deleted". A read
        # receipt ("displayed") or a person's deletion is no failure.
        for record in records:
            value = record.get("disposition", "").lower()
            refused = value.startswith("automatic-action") and re.search(
                r";\s*(?:deleted|failed|denied)", value
            )
            record["action"] = "failed" if refused else "delivered"
    notice = _notice(parts)
    found = (_recipient(record, notice) for record in records)
    # dict: the same block repeated (sendmail does, once per alias expanded) counts once.
    recipients = tuple(dict.fromkeys(r for r in found if r is not None))
    if not recipients and status_part.get_content_type() not in (
        "message/delivery-status",
        "message/global-delivery-status",
    ):
        return None
    return DeliveryReport(
        recipients=recipients,
        original_envelope_id=_xtext(_one_line(per_message.get("original-envelope-id", ""))),
        reporting_mta=_typed(per_message.get("reporting-mta", "")),
        original_message_id=_original_message_id(parts),
    )


def _recipient(record: dict[str, str], notice: str) -> ReportedRecipient | None:
    original = _typed(record.get("original-recipient", ""))
    final = _typed(record.get("final-recipient", "") or record.get("x-actual-recipient", ""))
    # Original-Recipient is the address as we gave it (ORCPT); Final-Recipient may be
    # what an alias or forward made of it.
    recipient = original if "@" in original else final or original
    action = _action(record.get("action", ""))
    status_field = _one_line(record.get("status", ""))
    status_match = _ENHANCED.search(status_field[:60])
    status = ".".join(str(int(g)) for g in status_match.groups()) if status_match else ""
    if not action and status:
        # Action is required, but a status alone says as much.
        action = {"5": "failed", "4": "delayed", "2": "delivered"}[status[0]]
    if not recipient and not action:
        return None
    # "Status: 5.0.0 (recipient reached disk quota)": the comment is the reason.
    comment = status_field[status_match.end() :].strip(" ()") if status_match else ""
    about = _about([a for a in (original, final) if "@" in a], notice)
    return ReportedRecipient(
        recipient=recipient,
        action=action,
        status=status,
        diagnostic=_one_line(record.get("diagnostic-code", "")),
        remote_mta=_typed(record.get("remote-mta", "")),
        notice=_one_line(f"{comment} {about}", 1000),
    )


_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


def _action(value: str) -> str:
    """RFC 3464's action, lowercase; "failure (bad address)" and OpenSMTPD's "error" are
    "failed"."""
    word = _one_line(value).lower().partition(" ")[0].strip(";,()")
    if word.startswith("error"):
        return "failed"
    return next((a for a in _ACTIONS if word.startswith(a[:4])), word)


def _xtext(value: str) -> str:
    """RFC 3461 xtext (ENVID is sent encoded): "+2B" → "+"."""
    return _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value)


# --- RFC 5965 ---------------------------------------------------------------------------

# Fields some feedback loops name their report with; without one, a digest of the report.
_ABUSE_ID_FIELDS = ("abuse-id", "x-abuse-id", "feedback-id", "x-feedback-id")


def _feedback_report(message: Message, part: Message, parts: list[Message]) -> FeedbackReport:
    text = _body_bytes(part).decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for block in _fields(text):
        for name, value in block:
            fields.setdefault(name, _one_line(value))
    top = {k.lower(): _one_line(_text(v)) for k, v in message.items()}
    original_recipient = _typed(fields.get("original-rcpt-to", ""))
    if not original_recipient:
        # Microsoft's JMRP leaves Original-Rcpt-To out and names the complaining
        # recipient in this header of the report itself.
        original_recipient = _typed(top.get("x-hmxmroriginalrecipient", ""))
    original_message_id = _original_message_id(parts)
    abuse_id = next(
        (source[name] for source in (fields, top) for name in _ABUSE_ID_FIELDS if source.get(name)),
        "",
    )
    if not abuse_id:
        # Stable for the same report sent again (a retry after a lost reply keeps its
        # Message-ID and fields), different for another complaint.
        fixed = [top.get("message-id", ""), original_message_id or ""]
        canonical = "\n".join(fixed + sorted(f"{k}: {v}" for k, v in fields.items()))
        abuse_id = "sha256:" + hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest()[:32]
    return FeedbackReport(
        feedback_type=fields.get("feedback-type", "").lower(),
        user_agent=fields.get("user-agent", ""),
        original_recipient=original_recipient,
        original_mail_from=_typed(fields.get("original-mail-from", "")),
        abuse_id=abuse_id[:200],
        original_message_id=original_message_id,
        # Drafts before RFC 5965 called it Received-Date.
        arrival_date=fields.get("arrival-date", "") or fields.get("received-date", ""),
    )


# --- bounces that are no report ---------------------------------------------------------


def _heuristic_report(raw: bytes) -> DeliveryReport | None:
    message = BytesParser(policy=_COMPAT).parsebytes(raw)
    subject = _one_line(_text(message.get("Subject", "")))
    sender = _one_line(_text(message.get("From", "")))
    if _AUTO_REPLY_SUBJECT.search(subject) and not _BOUNCE_SUBJECT.search(subject):
        return None
    parts = list(_parts(message))
    notice = _notice(parts)
    temporary, permanent = _flufl_failures(message)
    found = [(address, "failed") for address in permanent]
    found += [(address, "delayed") for address in temporary if address not in permanent]
    if not found:
        if not (_BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject)):
            return None
        if not notice.strip():
            return None
        delayed = bool(_DELAY_WORDS.search(subject)) and not re.search(r"(?i)fail", subject)
        found = [("", "delayed" if delayed else "failed")]
    recipients = tuple(
        _heuristic_recipient(address, action, notice) for address, action in found[:MAX_RECIPIENTS]
    )
    return DeliveryReport(
        recipients=recipients,
        original_envelope_id="",
        reporting_mta="",
        original_message_id=_original_message_id(parts),
        heuristic=True,
    )


def _notice(parts: list[Message]) -> str:
    """The human-readable text of a bounce: its text parts before the returned message,
    and without the returned message where it is quoted inline."""
    texts: list[str] = []
    size = 0
    for part in parts:
        if part.get_content_maintype() != "text" or part.get_content_type() in (
            "text/rfc822-headers",
        ):
            continue
        if part.get_content_disposition() == "attachment" and texts:
            continue
        text = _decoded_text(part)
        if part.get_content_subtype() == "html":
            text = re.sub(r"(?s)<(?:style|script).*?</(?:style|script)>|<[^>]*>", " ", text)
            text = text.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">")
        cut = _ORIGINAL_STARTS.search(text)
        texts.append(text[: cut.start()] if cut else text)
        size += len(texts[-1])
        if cut or size > _NOTICE_CHARS:
            break
    return "\n".join(texts)[:_NOTICE_CHARS]


def _flufl_failures(message: Message) -> tuple[list[str], list[str]]:
    """flufl.bounce's detectors, most specific first, as its ``all_failures`` runs them,
    except that a detector's answers must be addresses (one reads X.400 junk from old
    Exchange reports) and a detector that raises is passed over."""
    for detector in _detectors():
        try:
            temporary, permanent = detector().process(message)
        except Exception:
            log.debug("bounce detector %s failed", detector, exc_info=True)
            continue
        valid_temporary, valid_permanent = _valid(temporary), _valid(permanent)
        if valid_temporary or valid_permanent:
            return valid_temporary, valid_permanent
    return [], []


def _valid(addresses: Any) -> list[str]:
    found: list[str] = []
    for address in sorted(addresses or ()):
        text = address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
        text = text.strip().strip("<>").strip()
        if _ADDRESS.match(text) and text.lower() not in (a.lower() for a in found):
            found.append(text)
    return found


_DETECTORS: list[Any] | None = None


def _detectors() -> list[Any]:
    global _DETECTORS
    if _DETECTORS is None:
        try:
            from flufl.bounce import _scan
        except ImportError:
            log.warning("flufl.bounce is not installed: non-standard bounces are not read")
            _DETECTORS = []
        else:
            _DETECTORS = list(_scan._find_detectors())
    return _DETECTORS


def _about(addresses: list[str], notice: str) -> str:
    """The notice's words about one of ``addresses``: the first line naming it and the
    few after it, up to the next address or separator; a window holding a status code
    is preferred to one that does not."""
    if not addresses or not notice:
        return ""
    lowered = [a.lower() for a in addresses]
    lines = notice.splitlines()
    first = ""
    for i, line in enumerate(lines):
        if not any(a in line.lower() for a in lowered):
            continue
        window = [line.strip()]
        for following in lines[i + 1 : i + 12]:
            text = following.strip()
            if not text:
                continue
            named = "@" in text and not any(a in text.lower() for a in lowered)
            if named or re.match(r"[-=*_|]{3,}", text) or len(window) > 4:
                break  # the next recipient's lines, or the end of the notice
            window.append(text)
        excerpt = " ".join(window)
        if _FAILURE_STATUS.search(excerpt) or _SMTP_CODE.search(excerpt):
            return excerpt
        first = first or excerpt
    return first


def _heuristic_recipient(address: str, action: str, notice: str) -> ReportedRecipient:
    """The status and the words about ``address`` in the notice, or, where they hold no
    code, with the first lines of the notice that do (a transcript's "554 …")."""
    excerpt = _about([address] if address else [], notice)
    if not (_FAILURE_STATUS.search(excerpt) or _SMTP_CODE.search(excerpt)):
        lines = [line.strip() for line in notice.splitlines()]
        for i, line in enumerate(lines):
            if _FAILURE_STATUS.search(line) or _SMTP_CODE.search(line):
                excerpt = f"{excerpt} {' '.join(lines[i : i + 2])}"
                break
    if not excerpt.strip():
        excerpt = " ".join(line for line in notice.splitlines() if line.strip())[:400]
    excerpt = _one_line(excerpt, 1000)
    status_match = _FAILURE_STATUS.search(excerpt)
    status = ".".join(str(int(g)) for g in status_match.groups()) if status_match else ""
    return ReportedRecipient(
        recipient=address, action=action, status=status, diagnostic=excerpt, remote_mta=""
    )
