"""Inbound mail (received for a customer's domain) read into the JSON its webhook carries.

The MIME work is the standard library's ``email`` package; this module only decides
what to keep and bounds the work, because the bytes come from anyone on the Internet
and the result must always be produced, broken message or not: ``parse_inbound``
never raises, and every step whose cost could grow faster than the input is capped.

The structure is parsed with a ``compat32``-based policy, not ``email.policy.default``.
The modern policy parses Content-Type with its full grammar on every
``get_content_type()``, which the feed parser itself calls several times per part, and
that grammar is quadratic in the number of parameters: measured on Python 3.11, a
Content-Type of 10 KB of ``;`` took 2 s to parse, 50 KB took 61 s, and 50 000 RFC 2231
parameters 196 s (``compat32``: 0.03 s, 0.2 s, 4.5 s). The policy used here also cuts
every header value it is asked for at 4 KB, which bounds ``compat32``'s own parameter
parsing, itself worse than linear (the worst case found, 99 parts each with 8 KB of
parameters in two headers, then takes 1 s). The modern policy's header parser is used
only where its decoding matters (RFC 2047 encoded-words, address lists), on values of at
most 8 KB and 64 KB in all per message; longer values are returned as received, with the
defect ``HeaderTooLong``.

Parts are counted as the parser makes them: at ``max_parts`` the parse stops (the parts
read so far are kept) and ``TooManyParts`` is recorded. A parser left to run would take
1.5 s for 5 000 sibling parts and 11 s for 50 000, and raise ``RecursionError`` at about
900 nested multiparts. Nesting below ``max_depth`` is not read (``TooDeep``).
"""

from __future__ import annotations

import base64
import email.policy
import re
from email.feedparser import BytesFeedParser
from email.generator import BytesGenerator
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import Message
from io import BytesIO
from typing import Any

__all__ = ["parse_inbound"]

# Header values longer than this are cut before the parser reads their parameters.
STRUCTURE_HEADER_LIMIT = 4 * 1024
# The modern header parser gets at most this much of one value, and this much in all.
HEADER_DECODE_LIMIT = 8 * 1024
HEADER_DECODE_BUDGET = 64 * 1024
# The Headers list stops here (TooManyHeaders): real mail carries well under a hundred.
MAX_HEADERS = 1000

_FOLD = re.compile(r"\r?\n")
_LONE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_ADDRESSES = email.policy.default.header_factory
# Values other than address lists are decoded as unstructured text whatever their name:
# only the encoded-words matter, and the text stays as written (comments and all).
_UNSTRUCTURED = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)
# Regenerates an attached message as it came: no header refolding, no ">From " quoting.
_AS_RECEIVED = email.policy.compat32.clone(mangle_from_=False, max_line_length=0)


class _StructurePolicy(email.policy.Compat32):
    """``compat32`` with header values cut at ``STRUCTURE_HEADER_LIMIT`` when read.

    Only reading is bounded: ``raw_items()`` still gives every value whole.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        return super().header_fetch_parse(name, value[:STRUCTURE_HEADER_LIMIT])


_STRUCTURE = _StructurePolicy()


class _PartLimitReached(Exception):
    """Raised from the message factory to stop the parser at the part limit."""


def parse_inbound(raw: bytes, *, max_parts: int = 100, max_depth: int = 10) -> dict[str, Any]:
    """The webhook payload of a received message; never raises, whatever the bytes.

    Keys: Headers ([name, value] pairs in order, encoded-words decoded), Subject, From,
    To and Cc (lists of address strings), Date, MessageId, Text, Html (the first inline
    text/plain and text/html parts), Attachments (Filename, ContentType, Size,
    ContentBase64, ContentId, Inline) and Defects (the names of the ``email`` package's
    defect classes found, and ours: TooManyParts, TooDeep, HeaderTooLong,
    TooManyHeaders, UnreadablePart, UnreadableHeader, UnknownCharset, and
    ParseError(<exception>) when the parser itself failed), each name once.
    """
    reader = _Reader()
    root = reader.parse(bytes(raw), max_parts=max(1, max_parts))
    headers = reader.headers(root)
    result: dict[str, Any] = {
        "Headers": headers,
        "Subject": _first(headers, "subject"),
        "From": _first(headers, "from"),
        "To": reader.addresses(root, "to"),
        "Cc": reader.addresses(root, "cc"),
        "Date": _first(headers, "date"),
        "MessageId": _first(headers, "message-id").strip(),
        "Text": "",
        "Html": "",
        "Attachments": [],
    }
    reader.walk(root, result, max_parts=max(1, max_parts), max_depth=max(0, max_depth))
    result["Defects"] = list(reader.defects)
    return result


class _Reader:
    """One message's parse: the defects found so far and the header decoding budget left."""

    def __init__(self) -> None:
        self.defects: dict[str, None] = {}  # ordered set
        self._budget = HEADER_DECODE_BUDGET

    def defect(self, name: str) -> None:
        self.defects.setdefault(name, None)

    def parse(self, raw: bytes, *, max_parts: int) -> Message:
        """The message tree, as far as the parser got within ``max_parts`` parts."""
        made: list[Message] = []
        armed = False

        def factory(policy: Any = _STRUCTURE) -> Message:
            # The parser attaches each part to its parent as it makes it, so the root
            # holds every part read so far when the parse is stopped here.
            message = Message(policy=policy)
            if armed:
                if len(made) >= max_parts:
                    raise _PartLimitReached
                made.append(message)
            return message

        parser = BytesFeedParser(_factory=factory, policy=_STRUCTURE)  # calls factory once
        armed = True
        try:
            parser.feed(raw)
            return parser.close()
        except _PartLimitReached:
            self.defect("TooManyParts")
        except RecursionError:
            self.defect("TooDeep")
        except Exception as error:
            # The parser accepts nearly anything, but CPython has had crash bugs in it.
            self.defect(f"ParseError({type(error).__name__})")
        return made[0] if made else Message(policy=_STRUCTURE)

    # --- headers ---------------------------------------------------------------------

    def headers(self, message: Message) -> list[list[str]]:
        pairs: list[list[str]] = []
        for name, value in message.raw_items():
            if len(pairs) >= MAX_HEADERS:
                self.defect("TooManyHeaders")
                break
            pairs.append([_text(str(name)).strip(), self._decoded(str(name), value)])
        return pairs

    def _decoded(self, name: str, value: object) -> str:
        """A header value unfolded, 8-bit bytes read as UTF-8 (RFC 6532), encoded-words
        decoded by the modern header parser while the budget lasts."""
        text = _FOLD.sub("", _text(str(value)))
        if "=?" not in text:
            return text.strip(" \t")
        if not self._spend(len(text)):
            return text.strip(" \t")
        try:
            header = _UNSTRUCTURED(name, text)
            self._note(header)
            return _text(str(header))
        except Exception:
            self.defect("UnreadableHeader")
            return text.strip(" \t")

    def addresses(self, message: Message, field: str) -> list[str]:
        """Every address of every ``field`` header, as "Name <addr>" or "addr"."""
        found: list[str] = []
        for name, value in message.raw_items():
            if str(name).strip().lower() != field:
                continue
            text = _FOLD.sub("", _text(str(value)))
            if self._spend(len(text)):
                try:
                    header = _ADDRESSES(field, text)
                    self._note(header)
                    found += [_text(str(address)) for address in header.addresses]
                    continue
                except Exception:
                    self.defect("UnreadableHeader")
            # Too long, or refused by the parser: the raw comma-separated items beat no
            # addresses at all.
            found += [item.strip() for item in text.split(",") if item.strip()]
        return found

    def _spend(self, size: int) -> bool:
        if size > HEADER_DECODE_LIMIT or size > self._budget:
            self.defect("HeaderTooLong")
            return False
        self._budget -= size
        return True

    def _note(self, header: Any) -> None:
        for found in getattr(header, "defects", ()):
            self.defect(type(found).__name__)

    # --- parts -----------------------------------------------------------------------

    def walk(
        self, root: Message, result: dict[str, Any], *, max_parts: int, max_depth: int
    ) -> None:
        """Depth first, in order, without recursion: the tree may be as deep as the
        parser got before it stopped."""
        stack: list[tuple[Message, int]] = [(root, 0)]
        visited = 0
        while stack:
            part, depth = stack.pop()
            if depth > max_depth:
                self.defect("TooDeep")
                continue
            visited += 1
            if visited > max_parts:
                self.defect("TooManyParts")
                break
            try:
                if part.get_content_maintype() == "multipart":
                    # is_multipart() first: get_payload() of a text payload decodes it with
                    # the charset parameter, and raises for some (an embedded NUL).
                    payload = part.get_payload() if part.is_multipart() else None
                    if isinstance(payload, list):
                        children = [c for c in payload if isinstance(c, Message)]
                        stack += [(child, depth + 1) for child in reversed(children)]
                    # A multipart whose boundary never appears has no parts to read; the
                    # parser's defect (StartBoundaryNotFound, NoBoundary…) says so.
                else:
                    self._leaf(part, result)
            except Exception:
                self.defect("UnreadablePart")
            # Read last: decoding a body adds its own (InvalidBase64Characters…).
            for found in getattr(part, "defects", ()):
                self.defect(type(found).__name__)

    def _leaf(self, part: Message, result: dict[str, Any]) -> None:
        content_type = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = self._filename(part)
        body = disposition != "attachment" and not filename
        if body and content_type == "text/plain" and not result["Text"]:
            result["Text"] = self._body_text(part)
            return
        if body and content_type == "text/html" and not result["Html"]:
            result["Html"] = self._body_text(part)
            return
        if body and content_type in ("text/plain", "text/html"):
            return  # a later body part (Apple Mail splits text around images): not a file
        data = self._content(part)
        content_id = _FOLD.sub("", _text(str(part.get("Content-ID", "") or ""))).strip()
        result["Attachments"].append(
            {
                "Filename": filename,
                "ContentType": content_type,
                "Size": len(data),
                "ContentBase64": base64.b64encode(data).decode("ascii"),
                "ContentId": content_id.removeprefix("<").removesuffix(">"),
                "Inline": disposition == "inline" or (disposition is None and bool(content_id)),
            }
        )

    def _filename(self, part: Message) -> str:
        """RFC 2231 parameters are decoded by the library; RFC 2047 words in a quoted
        filename are not standard, but common enough (Outlook, Gmail) to decode too."""
        filename = part.get_filename()
        if not filename:
            return ""
        return self._decoded("Content-Disposition", str(filename)).strip()

    def _content(self, part: Message) -> bytes:
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            # message/rfc822 and the like: the parser made message objects of the body;
            # the attachment is their source form.
            output = BytesIO()
            for index, inner in enumerate(payload):
                if index:
                    output.write(b"\n")
                if isinstance(inner, Message):
                    BytesGenerator(output, policy=_AS_RECEIVED).flatten(inner)
            return output.getvalue()
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else b""

    def _body_text(self, part: Message) -> str:
        data = self._content(part)
        charset = part.get_content_charset() or "utf-8"
        if charset in ("us-ascii", "ascii"):
            charset = "utf-8"  # a superset: 8-bit text labelled ASCII is nearly always UTF-8
        try:
            text = data.decode(charset, errors="replace")
        except Exception:
            # Unknown names (x-unknown), codecs that are not text (base64, zlib), or
            # names the codec machinery refuses outright.
            self.defect("UnknownCharset")
            text = data.decode("utf-8", errors="replace")
        return _text(text)


def _first(headers: list[list[str]], lowered: str) -> str:
    return next((value for name, value in headers if name.lower() == lowered), "")


def _text(value: str) -> str:
    """Text safe for any JSON encoder (orjson refuses lone surrogates): the 8-bit bytes the
    parser carried as surrogate escapes are read as UTF-8, other lone surrogates (from odd
    codecs such as UTF-7) become U+FFFD."""
    value = _LONE_SURROGATE.sub("\ufffd", value)
    return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
