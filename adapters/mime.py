"""Render an ``EmailContent`` into the RFC 5322 / MIME bytes handed to SMTP.

The MIME structure is assembled here directly; the stdlib ``EmailMessage``
object model, its header registry and its ``Generator`` are not used. They
cost about 2-3 ms per message (every header is parsed into a tree and
refolded, every body goes through the content manager), which the delivery
rate cannot afford. The parts that are hard to get right still come from the
standard library: RFC 2047 encoded-words (``email.header.Header``), dates
(``email.utils.format_datetime``), quoted-printable and base64
(``binascii``), and the ``addr-spec`` parser for unusual local parts.

Header bodies are folded here, as before the rewrite: the ``EmailPolicy``
header folder of Python 3.11 drops the blank between two encoded-words when
it wraps a long non-ASCII value (CPython gh-92081 / gh-144156: about one
long Cyrillic or accented subject in five came out as "былотправлен").
``email.header.Header`` (the legacy encoder, which keeps every blank inside
an encoded-word) does the encoding.

Everything but the Date, Message-ID and engine headers depends only on the
content, which every recipient of a submission shares; that part is
rendered once and kept in a small LRU cache (see ``_RenderCache``).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.utils import format_datetime

import idna

from domain.content import Address, Attachment, EmailContent

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
# Fields a message may carry at most once (RFC 5322 3.6, RFC 2045), as the
# stdlib header registry lists them. A second customer value is dropped (e.g.
# a Reply-To header when reply_to was given: the field wins); a second engine
# value is a bug and raises.
_UNIQUE_HEADERS = frozenset(
    {
        "bcc",
        "cc",
        "content-disposition",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "orig-date",
        "reply-to",
        "sender",
        "subject",
        "to",
    }
)
# Always written by build_message itself.
_ALWAYS_PRESENT = frozenset({"from", "to", "subject", "date", "message-id", "mime-version"})

TAGS_HEADER = "X-Sendstream-Tags"

# Header text is refused, not cleaned: control characters (TAB excepted),
# Unicode line/paragraph separators and lone surrogates. CR and LF would start
# a new header line (injection); the others are line breaks to some readers,
# or cannot be encoded at all.
UNSAFE_HEADER_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 5322 field name: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
# RFC 5322 dot-atom-text: the two halves of the Message-ID, domains, and the
# local parts that need no quoting.
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
# RFC 6532 widens atext with every non-ASCII character.
_UTF8_DOT_ATOM = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
# RFC 5322 "specials": a display name holding one must be a quoted-string.
_SPECIALS = re.compile(r'[()<>@,:;."\[\]\\]')
# RFC 2045 token, for the two halves of an attachment's media type.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_TOKEN_MAX = 127  # RFC 6838 4.2: type and subtype names are at most 127 characters
_FOLD_WIDTH = 78  # RFC 5322 2.1.1 "SHOULD"
_LINE_LIMIT = 998  # RFC 5322 2.1.1 "MUST", excluding CRLF
_CRLF = "\r\n"
_BASE64_LINE = 76  # RFC 2045 6.8: encoded lines are at most 76 characters

# Rendered contents kept for the next recipient of the same submission.
_CACHE_ENTRIES = 128
_CACHE_BYTES = 32 * 1024 * 1024
_CACHE_ENTRY_BYTES = 8 * 1024 * 1024  # larger contents are rendered per recipient


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
    ``extra_headers`` come from the engine and are written as given, after
    MIME-Version; one that repeats a field allowed only once raises
    ``ValueError``, and ``Content-*`` ones are dropped (the MIME structure is
    this module's).
    ``date`` defaults to now; pass it for reproducible output.
    Raises ``ValueError`` (``UnsafeHeaderError`` for header text) on content
    that cannot be rendered safely.
    """
    _addr_spec(recipient)
    rendered = _CACHE.get(content)
    if rendered is None:
        rendered = _render(content)
        _CACHE.put(content, rendered)
    msg_id = f"<{_message_id_left(message_id)}@{_ascii_domain(domain)}>"
    if len(msg_id) > _LINE_LIMIT - len("Message-ID: "):
        raise ValueError(f"message id too long: {msg_id!r}")
    stamp = format_datetime(date if date is not None else datetime.now(UTC))
    fixed = f"Date: {stamp}\r\nMessage-ID: {msg_id}\r\nMIME-Version: 1.0\r\n".encode("ascii")
    if not extra_headers:
        return b"".join((rendered.head, fixed, rendered.custom_block, *rendered.tail))
    engine_and_custom = _engine_and_custom_block(rendered, extra_headers)
    return b"".join((rendered.head, fixed, engine_and_custom, *rendered.tail))


def _engine_and_custom_block(
    rendered: _Rendered, extra_headers: Sequence[tuple[str, str]]
) -> bytes:
    present = set(rendered.present)
    lines: list[str] = []
    for name, value in extra_headers:
        line = _header_line(name, value)
        lowered = name.lower()
        if lowered in _UNIQUE_HEADERS:
            if lowered in present:
                raise ValueError(f"There may be at most 1 {name} headers in a message")
            present.add(lowered)
        if not lowered.startswith("content-"):
            lines.append(line)
    engine = "".join(lines).encode("utf-8")
    return engine + _custom_block(rendered.custom, present)


def _custom_block(custom: Iterable[tuple[str, bytes]], present: set[str]) -> bytes:
    """The customer's header lines, without a second copy of a field allowed once."""
    kept: list[bytes] = []
    for lowered, line in custom:
        if lowered in _UNIQUE_HEADERS:
            if lowered in present:
                continue
            present.add(lowered)
        kept.append(line)
    return b"".join(kept)


# --- the per-content part ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rendered:
    """Everything of a message that depends on its content alone.

    The message is ``head``, then Date / Message-ID / MIME-Version and the
    engine's headers, then ``custom_block`` (or ``custom`` filtered against
    the engine's headers), then ``tail``.
    """

    head: bytes  # From, To, Cc, Reply-To, Subject
    present: frozenset[str]  # lowered unique field names written before the customer's
    custom: tuple[tuple[str, bytes], ...]  # (lowered name, line) of each customer header kept
    custom_block: bytes  # the customer lines when the engine adds no header
    tail: tuple[bytes, ...]  # tags, the top part's MIME headers, blank line, body
    size: int  # bytes held, for the cache budget


def _render(content: EmailContent) -> _Rendered:
    # A non-ASCII local part goes raw, in UTF-8 (RFC 6532): such a message
    # needs SMTPUTF8 end to end anyway, and RFC 2047 cannot express the
    # address. Everything else in the header is ASCII.
    present = set(_ALWAYS_PRESENT)
    head = [_line("From", _address_list("From", (content.sender,)))]
    if content.to:
        head.append(_line("To", _address_list("To", content.to)))
    if content.cc:
        head.append(_line("Cc", _address_list("Cc", content.cc)))
        present.add("cc")
    if not content.to and not content.cc:
        # A message without any visible recipient looks like spam to filters;
        # this empty group is the conventional way to say "Bcc only".
        head.append("To: undisclosed-recipients:;\r\n")
    if content.reply_to:
        head.append(_line("Reply-To", _address_list("Reply-To", content.reply_to)))
        present.add("reply-to")
    subject = _clean_text(content.subject, "subject").strip(" \t")
    head.append(_line("Subject", _unstructured("Subject", subject)))

    custom: list[tuple[str, bytes]] = []
    for name, value in content.headers:
        _check_header(name, value)
        lowered = name.lower()
        if lowered in _OWNED_HEADERS or lowered.startswith(_OWNED_PREFIXES):
            continue
        custom.append((lowered, _header_line(name, value).encode("utf-8")))

    tail: list[bytes] = []
    if content.tags:
        tags = ", ".join(_clean_text(tag, "tag").strip(" \t") for tag in content.tags)
        tail.append(_line(TAGS_HEADER, _unstructured(TAGS_HEADER, tags)).encode("ascii"))
    # The top part's own header lines join the message's, then its body.
    tail += _mime_body(content)

    head_bytes = "".join(head).encode("utf-8")
    custom_tuple = tuple(custom)
    custom_block = _custom_block(custom_tuple, set(present))
    size = (
        len(head_bytes)
        + len(custom_block)
        + sum(len(line) for _, line in custom_tuple)
        + sum(map(len, tail))
        + _content_size(content)
    )
    return _Rendered(
        head=head_bytes,
        present=frozenset(present),
        custom=custom_tuple,
        custom_block=custom_block,
        tail=tuple(tail),
        size=size,
    )


def _content_size(content: EmailContent) -> int:
    """Roughly what keeping ``content`` alive as a cache key costs (its large strings)."""
    return (
        len(content.html or "")
        + len(content.plain or "")
        + sum(len(a.content_base64) for a in content.attachments)
    )


class _RenderCache:
    """The ``_Rendered`` form of recently seen contents, least recently used dropped first.

    Keyed on the content itself: ``EmailContent`` is a frozen dataclass, so
    equal contents render alike (bar the random MIME boundary). Bounded by
    entry count and by bytes held, keys included; one content over
    ``_CACHE_ENTRY_BYTES`` is not kept at all.
    """

    def __init__(self, max_entries: int, max_bytes: int, max_entry_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[EmailContent, _Rendered] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, content: EmailContent) -> _Rendered | None:
        try:
            with self._lock:
                rendered = self._entries.get(content)
                if rendered is not None:
                    self._entries.move_to_end(content)
                return rendered
        except TypeError:  # a field holds something unhashable, e.g. a list
            return None

    def put(self, content: EmailContent, rendered: _Rendered) -> None:
        if rendered.size > self._max_entry_bytes:
            return
        with self._lock:
            try:
                previous = self._entries.pop(content, None)
            except TypeError:  # unhashable: not kept
                return
            if previous is not None:
                self._bytes -= previous.size
            self._entries[content] = rendered
            self._bytes += rendered.size
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


_CACHE = _RenderCache(_CACHE_ENTRIES, _CACHE_BYTES, _CACHE_ENTRY_BYTES)


# --- bodies --------------------------------------------------------------------------------

# A MIME part as written: its header lines, the blank line, its body, in
# chunks (joined once, into the whole message). Every chunk is empty or ends
# in CRLF, so no line, and no boundary delimiter, spans two chunks.
_Part = list[bytes]
_BLANK = b"\r\n"


def _mime_body(content: EmailContent) -> _Part:
    plain = content.plain or None
    html = content.html or None
    if html is None:
        body = _text_part(plain or "", "plain")
    elif plain is None:
        body = _text_part(html, "html")
    else:
        body = _multipart("alternative", [_text_part(plain, "plain"), _text_part(html, "html")])
    if not content.attachments:
        return body
    return _multipart("mixed", [body, *(_attachment_part(a) for a in content.attachments)])


def _multipart(subtype: str, parts: Sequence[_Part]) -> _Part:
    """RFC 2046 5.1.1: each part after a delimiter line, the CRLF before a delimiter its own."""
    while True:
        # "=_" cannot occur in quoted-printable or base64 text; the check
        # covers 7bit parts (and nested multiparts) all the same.
        boundary = f"=_{secrets.token_hex(12)}"
        delimiter = f"--{boundary}".encode("ascii")
        if not any(delimiter in chunk for part in parts for chunk in part):
            break
    header = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode("ascii")
    chunks = [header, _BLANK, delimiter + b"\r\n"]
    between = b"\r\n" + delimiter + b"\r\n"
    for index, part in enumerate(parts):
        if index:
            chunks.append(between)
        chunks += part
    chunks.append(b"\r\n" + delimiter + b"--\r\n")
    return chunks


def _text_part(text: str, subtype: str) -> _Part:
    """UTF-8 text in 7bit when it is short-lined ASCII, else quoted-printable or base64.

    Never 8bit: not every relay speaks 8BITMIME, and DKIM body hashes survive
    7-bit transport better. Line breaks (CR, LF or CRLF) become CRLF and the
    text always ends with one, as the stdlib's content manager did.
    """
    lines = text.encode("utf-8").splitlines()
    canonical = b"\r\n".join(lines) + b"\r\n"
    short_lines = max(map(len, lines), default=0) <= _FOLD_WIDTH
    if canonical.isascii() and b"\0" not in canonical and short_lines:
        cte, body = "7bit", canonical
    else:
        quoted = binascii.b2a_qp(canonical, istext=True)  # CRLF in, CRLF out
        # Mostly non-ASCII text (CJK, Cyrillic) triples in quoted-printable.
        base64_size = (len(canonical) + 2) // 3 * 4 * (_BASE64_LINE + 2) // _BASE64_LINE
        if len(quoted) > base64_size:
            cte, body = "base64", _wrap_base64(binascii.b2a_base64(canonical, newline=False))
        else:
            cte, body = "quoted-printable", quoted
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    )
    return [headers.encode("ascii"), _BLANK, body]


def _attachment_part(attachment: Attachment) -> _Part:
    # Readers strip every Unicode blank around a filename; a nameless
    # attachment gets a neutral name rather than none.
    filename = _clean_text(attachment.filename, "attachment filename").strip() or "attachment"
    maintype, subtype = _content_type(attachment.content_type)
    headers = (
        f"Content-Type: {maintype}/{subtype}\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        f"{_disposition(filename)}\r\n"
    )
    # Always base64: attachments are opaque bytes even when they are text/*.
    body = _wrap_base64(_canonical_base64(attachment.content_base64))
    return [headers.encode("ascii"), _BLANK, body]


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _canonical_base64(text: str) -> bytes:
    """The customer's base64 as canonical unwrapped base64; ``ValueError`` when it is not base64.

    Customers often send base64 wrapped at 76 columns; the wrapping is not
    data. What ``base64.b64decode(..., validate=True)`` accepts once
    whitespace is removed is accepted; input that is already canonical (the
    usual case) is checked without decoding it.
    """
    if text.isascii():
        encoded = text.encode("ascii")
        leftover = encoded.translate(None, _BASE64_ALPHABET)
        if leftover not in (b"", b"=", b"=="):  # whitespace, most likely
            encoded = b"".join(encoded.split())
            leftover = encoded.translate(None, _BASE64_ALPHABET)
        if _is_canonical_base64(encoded, leftover):
            return encoded
    data = base64.b64decode("".join(text.split()), validate=True)
    return binascii.b2a_base64(data, newline=False)


def _is_canonical_base64(encoded: bytes, leftover: bytes) -> bool:
    """Whether ``encoded`` is exactly the base64 encoding of what it decodes to.

    ``leftover`` is ``encoded`` without its base64 alphabet characters. Full
    4-character groups decode one to one, so only the padding and the last
    group (whose unused bits might not be zero) need a look.
    """
    if not encoded:
        return True
    if len(encoded) % 4 or leftover not in (b"", b"=", b"=="):
        return False
    if leftover and encoded.find(b"=") != len(encoded) - len(leftover):
        return False
    last = encoded[-4:]
    return binascii.b2a_base64(binascii.a2b_base64(last), newline=False) == last


def _wrap_base64(encoded: bytes) -> bytes:
    """Unwrapped base64 in 76-column CRLF lines, the last one CRLF-terminated too."""
    if not encoded:
        return b""
    step = _BASE64_LINE
    return b"\r\n".join([encoded[i : i + step] for i in range(0, len(encoded), step)]) + b"\r\n"


def _content_type(value: str) -> tuple[str, str]:
    bare = value.split(";", 1)[0].strip().lower()
    maintype, _, subtype = bare.partition("/")
    if not (_TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype)):
        return "application", "octet-stream"
    if len(maintype) > _TOKEN_MAX or len(subtype) > _TOKEN_MAX:
        return "application", "octet-stream"
    # multipart/* would need a boundary we do not control, and message/* may
    # not be base64-encoded (RFC 2046 5.2.1): ship both as opaque bytes.
    if maintype in ("multipart", "message"):
        return "application", "octet-stream"
    return maintype, subtype


def _disposition(filename: str) -> str:
    """``Content-Disposition: attachment; filename...``, folded within 78 columns.

    A quoted-string when the name is ASCII and fits, RFC 2231 percent-encoding
    otherwise (in sections when long). An ASCII name holding "=?" is encoded
    too, or readers would decode it as an RFC 2047 encoded-word.
    """
    start = "Content-Disposition: attachment"
    ascii_name = filename.isascii()
    if ascii_name and "=?" not in filename:
        param = f"filename={_quote_string(filename)}"
    else:
        param = f"filename*=utf-8''{urllib.parse.quote(filename, safe='')}"
    if len(start) + 2 + len(param) <= _FOLD_WIDTH:
        return f"{start}; {param}"
    if 1 + len(param) <= _FOLD_WIDTH:
        return f"{start};{_CRLF} {param}"
    charset = "us-ascii''" if ascii_name else "utf-8''"
    lines = [start]
    rest = filename
    section = 0
    while rest:
        chrome = f" filename*{section}*={charset if section == 0 else ''}"
        room = _FOLD_WIDTH - len(chrome) - 1  # and the ";" that may follow
        # Percent-encoding triples at most four UTF-8 bytes per character.
        take = min(len(rest), max(1, room // 12))
        while take < len(rest) and len(urllib.parse.quote(rest[: take + 1], safe="")) <= room:
            take += 1
        lines.append(f"{chrome}{urllib.parse.quote(rest[:take], safe='')}")
        rest = rest[take:]
        section += 1
    return f";{_CRLF}".join(lines)


def _quote_string(value: str) -> str:
    """An RFC 5322 quoted-string (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- headers -------------------------------------------------------------------------------


def _line(name: str, folded: str) -> str:
    return f"{name}: {folded}{_CRLF}"


def _header_line(name: str, value: str) -> str:
    """A customer or engine header: checked, and written verbatim when it can be."""
    _check_header(name, value)
    # Surrounding blanks are not part of a field body (readers drop them).
    value = value.strip(" \t")
    if value.isascii() and len(name) + 2 + len(value) <= _LINE_LIMIT:
        # Written byte for byte: structured values such as a List-Unsubscribe
        # URL must not be re-folded or encoded.
        return _line(name, value)
    return _line(name, _unstructured(name, value))


def _unstructured(name: str, value: str) -> str:
    """An unstructured field body: plain ASCII folded at blanks, anything else encoded."""
    # An ASCII "=?...?=" would be decoded by readers as an encoded-word.
    if value.isascii() and "=?" not in value:
        if len(name) + 2 + len(value) <= _FOLD_WIDTH:
            return value
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
    addr_spec = _addr_spec(address)
    if not name:
        return addr_spec
    if name.isascii() and "=?" not in name:
        phrase = _quote_string(name) if _SPECIALS.search(name) else name
        plain = f"{phrase} <{addr_spec}>"
        if len(plain) <= _LINE_LIMIT - 10:
            return plain
    return f"{_encoded_words(header_name, name)} <{addr_spec}>"


def _addr_spec(address: Address) -> str:
    """The address as written in a header: checked, domain as A-labels; ``ValueError`` if bad."""
    email = _clean_text(address.email, "address").strip(" \t")
    local, at, host = email.rpartition("@")
    if not at or not local or not host:
        raise ValueError(f"invalid address {address.email!r}")
    domain = _ascii_domain(host)
    if local.isascii():
        if _DOT_ATOM.fullmatch(local):
            return f"{local}@{domain}"
        # Quoted local parts and the like: the stdlib parser decides, and
        # raises ValueError itself when the addr-spec does not parse.
        return HeaderAddress(addr_spec=f"{local}@{domain}").addr_spec
    # The stdlib refuses non-ASCII in addr_spec under every policy, so an
    # RFC 6532 local part is checked here.
    if not _UTF8_DOT_ATOM.fullmatch(local):
        raise ValueError(f"invalid address {address.email!r}")
    return f"{local}@{domain}"


def _check_header(name: str, value: str) -> None:
    if not _FIELD_NAME.fullmatch(name):
        raise UnsafeHeaderError(f"invalid header name {name!r}")
    _clean_text(value, f"header {name}")


def _clean_text(value: str, what: str) -> str:
    if UNSAFE_HEADER_TEXT.search(value):
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
