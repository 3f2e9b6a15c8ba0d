"""Render an ``EmailContent`` into the RFC 5322 / MIME bytes handed to SMTP.

The standard library's ``email`` package builds the MIME tree, encodes bodies
and attachments, quotes addresses and produces RFC 2047 encoded-words. This
module decides which headers exist, who may set them, and which text is
refused.

One stdlib part is bypassed: the ``EmailPolicy`` header folder of Python 3.11
drops the blank between two encoded-words when it wraps a long non-ASCII
value (CPython gh-92081 / gh-144156: about one long Cyrillic or accented
subject in five came out as "былотправлен"). Header bodies are therefore
folded here, with ``email.header.Header`` (the legacy encoder, which keeps
every blank inside an encoded-word) doing the encoding, and handed to the
policy pre-folded.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime

import idna

from domain.content import Address, Attachment, EmailContent

# The stdlib would pick 8bit for short non-ASCII bodies; not every relay
# speaks 8BITMIME, and DKIM body hashes survive 7-bit transport better, so
# bodies are always 7bit, quoted-printable or base64.
_POLICY = email_policy.SMTP.clone(cte_type="7bit")
# Only for messages whose addresses have non-ASCII local parts: those need
# SMTPUTF8 end to end anyway, and RFC 2047 cannot express such an address.
_UTF8_POLICY = email_policy.SMTPUTF8.clone(cte_type="7bit")

# Headers the engine writes or a later hop owns; a customer value would
# override routing, threading or authentication, so it is dropped.
_OWNED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "return-path",
        "received",
        "dkim-signature",
    }
)
_OWNED_PREFIXES = ("content-", "x-sendstream-")

TAGS_HEADER = "X-Sendstream-Tags"

# Header text is refused, not cleaned: control characters (TAB excepted),
# Unicode line/paragraph separators and lone surrogates. CR and LF would start
# a new header line (injection); the others are line breaks to some readers,
# or cannot be encoded at all.
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 5322 field name: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
# RFC 5322 dot-atom-text, used for the two halves of the Message-ID.
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
# RFC 6532 widens atext with every non-ASCII character.
_UTF8_DOT_ATOM = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
_FOLD_WIDTH = 78  # RFC 5322 2.1.1 "SHOULD"
_LINE_LIMIT = 998  # RFC 5322 2.1.1 "MUST", excluding CRLF
_CRLF = "\r\n"


class UnsafeHeaderError(ValueError):
    """Raised instead of writing a header that could be misread as several lines.

    A ``ValueError`` so callers validating input can treat it like any other
    bad value; its own class so the engine can tell a customer's bad data from
    a bug.
    """


def build_message(
    content: EmailContent,
    *,
    recipient: Address,
    message_id: str,
    extra_headers: Sequence[tuple[str, str]] = (),
    domain: str,
    date: datetime | None = None,
) -> bytes:
    """The complete message for one recipient, CRLF line endings, lines at most 998 bytes.

    ``recipient`` is the envelope recipient of this copy. It appears in no
    header (a Bcc reader must stay invisible, even to themselves) but is
    checked, so a bad address fails here rather than at RCPT time.
    ``extra_headers`` come from the engine and are written as given.
    ``date`` defaults to now; pass it for reproducible output.
    Raises ``ValueError`` (``UnsafeHeaderError`` for header text) on content
    that cannot be rendered safely.
    """
    _header_address(recipient)
    visible = (content.sender, *content.to, *content.cc, *content.reply_to)
    policy = _UTF8_POLICY if any(_needs_smtputf8(a.email) for a in visible) else _POLICY
    msg = EmailMessage(policy=policy)

    _set(msg, "From", _address_list("From", (content.sender,)))
    if content.to:
        _set(msg, "To", _address_list("To", content.to))
    if content.cc:
        _set(msg, "Cc", _address_list("Cc", content.cc))
    if not content.to and not content.cc:
        # A message without any visible recipient looks like spam to filters;
        # this empty group is the conventional way to say "Bcc only".
        _set(msg, "To", "undisclosed-recipients:;")
    if content.reply_to:
        _set(msg, "Reply-To", _address_list("Reply-To", content.reply_to))
    subject = _clean_text(content.subject, "subject").strip(" \t")
    _set(msg, "Subject", _unstructured("Subject", subject))
    msg["Date"] = format_datetime(date if date is not None else datetime.now(UTC))
    msg["Message-ID"] = f"<{_message_id_left(message_id)}@{_ascii_domain(domain)}>"
    msg["MIME-Version"] = "1.0"

    for name, value in extra_headers:
        _add_header(msg, name, value)
    for name, value in content.headers:
        _check_header(name, value)
        lowered = name.lower()
        if lowered in _OWNED_HEADERS or lowered.startswith(_OWNED_PREFIXES):
            continue
        max_count = policy.header_max_count(name)
        if max_count is not None and len(msg.get_all(name, [])) >= max_count:
            # e.g. a Reply-To header when reply_to was given: the field wins.
            continue
        _add_header(msg, name, value)
    if content.tags:
        tags = ", ".join(_clean_text(tag, "tag").strip(" \t") for tag in content.tags)
        _set(msg, TAGS_HEADER, _unstructured(TAGS_HEADER, tags))

    _set_body(msg, content)
    for attachment in content.attachments:
        _attach(msg, attachment)
    for part in msg.walk():
        if part is not msg:
            # add_alternative/add_attachment stamp MIME-Version on the parts
            # they create; RFC 2045 wants it on the top level only.
            del part["MIME-Version"]
    return msg.as_bytes()


# --- bodies --------------------------------------------------------------------------------


def _set_body(msg: EmailMessage, content: EmailContent) -> None:
    plain = content.plain or None
    html = content.html or None
    if html is None:
        msg.set_content(plain or "", subtype="plain", charset="utf-8")
        return
    if plain is None:
        msg.set_content(html, subtype="html", charset="utf-8")
        return
    msg.set_content(plain, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")


def _attach(msg: EmailMessage, attachment: Attachment) -> None:
    # Readers strip every Unicode blank around a filename; a nameless
    # attachment gets a neutral name rather than none.
    filename = _clean_text(attachment.filename, "attachment filename").strip() or "attachment"
    # Customers often send base64 wrapped at 76 columns; the wrapping is not data.
    compact = "".join(attachment.content_base64.split())
    data = base64.b64decode(compact, validate=True)
    maintype, subtype = _content_type(attachment.content_type)
    # Always base64: attachments are opaque bytes even when they are text/*.
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)


def _content_type(value: str) -> tuple[str, str]:
    bare = value.split(";", 1)[0].strip().lower()
    maintype, _, subtype = bare.partition("/")
    token = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
    if not (token.fullmatch(maintype) and token.fullmatch(subtype)):
        return "application", "octet-stream"
    # multipart/* would need a boundary we do not control, and message/* may
    # not be base64-encoded (RFC 2046 5.2.1): ship both as opaque bytes.
    if maintype in ("multipart", "message"):
        return "application", "octet-stream"
    return maintype, subtype


# --- headers -------------------------------------------------------------------------------


class _PreFolded(str):
    """A header body already folded (or short enough) to be written as is.

    ``EmailPolicy`` writes any value that has a ``name`` and a ``fold`` method
    through that method instead of its own folder (see the module docstring).
    """

    name: str

    def __new__(cls, name: str, value: str) -> _PreFolded:
        obj = super().__new__(cls, value)
        obj.name = name
        return obj

    def fold(self, *, policy: EmailPolicy[EmailMessage]) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def _set(msg: EmailMessage, name: str, folded: str) -> None:
    msg[name] = _PreFolded(name, folded)


def _add_header(msg: EmailMessage, name: str, value: str) -> None:
    _check_header(name, value)
    # Surrounding blanks are not part of a field body (readers drop them).
    value = value.strip(" \t")
    if value.isascii() and len(name) + 2 + len(value) <= _LINE_LIMIT:
        # Written byte for byte: structured values such as a List-Unsubscribe
        # URL must not be re-folded or encoded.
        _set(msg, name, value)
    else:
        _set(msg, name, _unstructured(name, value))


def _unstructured(name: str, value: str) -> str:
    """An unstructured field body: plain ASCII folded at blanks, anything else encoded."""
    # An ASCII "=?...?=" would be decoded by readers as an encoded-word.
    if value.isascii() and "=?" not in value:
        folded = _fold_at_blanks(name, value)
        if folded is not None:
            return folded
    return _encoded_words(name, value)


def _fold_at_blanks(name: str, value: str) -> str | None:
    """RFC 5322 2.2.3 folding: a CRLF inserted before a blank, so unfolding restores the text.

    None when a word is too long for even a line of its own.
    """
    prefix = f"{name}: "
    lines = [prefix]
    for word in re.findall(r"[ \t]*[^ \t]+|[ \t]+", value):
        line_has_text = lines[-1] != prefix
        if len(lines[-1]) + len(word) > _FOLD_WIDTH and line_has_text and word[0] in " \t":
            lines.append("")
        lines[-1] += word
    if max(len(line) for line in lines) > _LINE_LIMIT:
        return None
    return _CRLF.join(lines)[len(name) + 2 :]


def _encoded_words(name: str, value: str) -> str:
    """RFC 2047 encoded-words wrapped at 78 columns, every blank inside a word."""
    if not value:
        return ""
    header = Header(value, "utf-8", header_name=name)
    return header.encode(linesep=_CRLF, maxlinelen=_FOLD_WIDTH)


def _address_list(name: str, addresses: Sequence[Address]) -> str:
    mailboxes = [_mailbox(name, a) for a in addresses]
    one_line = ", ".join(mailboxes)
    if _CRLF not in one_line and len(name) + 2 + len(one_line) <= _FOLD_WIDTH:
        return one_line
    # One mailbox per line: folding between list elements is always safe.
    return f",{_CRLF} ".join(mailboxes)


def _mailbox(header_name: str, address: Address) -> str:
    """``name <addr-spec>`` as it goes in an address header (never longer than a line)."""
    # Readers collapse and trim whitespace in display names, so normalising
    # here keeps what is written equal to what is read.
    name = " ".join(_clean_text(address.name, "display name").split())
    bare = _header_address(address)
    if not name:
        return bare.addr_spec
    if name.isascii() and "=?" not in name:
        # The stdlib quotes the phrase when it holds specials.
        plain = str(HeaderAddress(name, bare.username, bare.domain))
        if len(plain) <= _LINE_LIMIT - 10:
            return plain
    return f"{_encoded_words(header_name, name)} <{bare.addr_spec}>"


def _header_address(address: Address) -> HeaderAddress:
    email = _clean_text(address.email, "address").strip(" \t")
    local, at, host = email.rpartition("@")
    if not at or not local or not host:
        raise ValueError(f"invalid address {address.email!r}")
    domain = _ascii_domain(host)
    if local.isascii():
        # Raises ValueError itself when the addr-spec does not parse.
        return HeaderAddress(addr_spec=f"{local}@{domain}")
    # The stdlib refuses non-ASCII in addr_spec under every policy, so an
    # RFC 6532 local part is checked here and handed over pre-split.
    if not _UTF8_DOT_ATOM.fullmatch(local):
        raise ValueError(f"invalid address {address.email!r}")
    return HeaderAddress(username=local, domain=domain)


def _check_header(name: str, value: str) -> None:
    if not _FIELD_NAME.fullmatch(name):
        raise UnsafeHeaderError(f"invalid header name {name!r}")
    _clean_text(value, f"header {name}")


def _clean_text(value: str, what: str) -> str:
    if _UNSAFE_TEXT.search(value):
        raise UnsafeHeaderError(f"{what} contains a control or line-break character: {value!r}")
    return value


def _ascii_domain(domain: str) -> str:
    """Domains go into headers as A-labels: RFC 2047 is not allowed inside an addr-spec."""
    if domain.isascii():
        if not _DOT_ATOM.fullmatch(domain):
            raise ValueError(f"invalid domain {domain!r}")
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError is one
        raise ValueError(f"invalid domain {domain!r}: {exc}") from exc


def _message_id_left(message_id: str) -> str:
    if not _DOT_ATOM.fullmatch(message_id):
        raise ValueError(f"message id must be RFC 5322 dot-atom text: {message_id!r}")
    return message_id


def _needs_smtputf8(email: str) -> bool:
    return not email.rpartition("@")[0].isascii()
