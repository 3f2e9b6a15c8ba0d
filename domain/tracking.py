"""Open and click tracking and unsubscribe links: signed tokens, link rewriting, machine hits.

Pure functions, standard library only. The HTTP side is ``api/tracking.py``.

Tokens
    ``sign_token(kind, message_id, position, key)`` packs 29 bytes and writes them as
    base64url without padding (39 characters)::

        kind     1 byte   b"o" open, b"c" click, b"u" unsubscribe
        id      16 bytes  the message (one recipient's copy) the link was rendered for
        position 2 bytes  big-endian; for clicks the link index, otherwise 0
        mac     10 bytes  HMAC-SHA256(key, the 19 bytes above), truncated

    80 bits of MAC leave a forger one chance in 2**80 per attempt, and every attempt is an
    HTTP request. ``verify_token`` accepts only the canonical encoding (a token is
    re-encoded and compared), so no two strings name the same token and any change to a
    token's text is refused. The key should be used for nothing else: ``tracking_key``
    derives one from a server secret shared with other uses.

URLs
    open ``{base_url}/t/o/{token}.gif``, click ``{base_url}/t/c/{token}``, unsubscribe
    ``{base_url}/t/u/{token}``.

Link positions
    A message's tracked links form one list, HTML links first, in document order, then
    the plain body's (``track_message`` builds it; ``rewrite_plain(start=...)`` continues
    the numbering). The token carries the **0-based index** of the link in that list and
    the URL itself stays out of it, which keeps the URL short; the caller stores the
    list with the message and resolves a click with it. What users are shown as
    "Position" (seed 004: "1 unless the same link is specified multiple times in an
    email") is ``link_position(links, index)``: the 1-based occurrence number of that URL
    among the links of the same body (HTML or plain), up to and including this one. At
    most ``MAX_LINKS`` links per message are tracked; later ones are left as they are.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape as _escape
from html import unescape as _unescape
from html.entities import html5 as _HTML5_ENTITIES
from html.parser import HTMLParser
from typing import Final, NamedTuple
from uuid import UUID

OPEN: Final = "o"
CLICK: Final = "c"
UNSUBSCRIBE: Final = "u"
KINDS: Final = frozenset({OPEN, CLICK, UNSUBSCRIBE})

OPEN_PATH: Final = "/t/o/"
CLICK_PATH: Final = "/t/c/"
UNSUBSCRIBE_PATH: Final = "/t/u/"
TRACKING_PREFIX: Final = "/t/"

NOTRACK_ATTRIBUTE: Final = "data-sendstream-notrack"

_MAC_BYTES: Final = 10
_PAYLOAD_BYTES: Final = 1 + 16 + 2
_TOKEN_BYTES: Final = _PAYLOAD_BYTES + _MAC_BYTES
TOKEN_LENGTH: Final = 39  # base64url of 29 bytes, unpadded: ceil(29 * 8 / 6)
MAX_LINKS: Final = 0xFFFF + 1  # the position is two bytes


class TokenData(NamedTuple):
    kind: str
    message_id: UUID
    position: int


def tracking_key(secret: bytes) -> bytes:
    """A key for tracking tokens only, from a server secret that also signs other things."""
    return hmac.digest(secret, b"sendstream tracking tokens v1", "sha256")


def sign_token(kind: str, message_id: UUID, position: int, key: bytes) -> str:
    """The URL-safe token for one link; ``position`` is 0..65535 (``ValueError`` otherwise)."""
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    if not 0 <= position < MAX_LINKS:
        raise ValueError(f"position {position} does not fit in two bytes")
    payload = kind.encode("ascii") + message_id.bytes + position.to_bytes(2, "big")
    mac = hmac.digest(key, payload, "sha256")[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def verify_token(token: str, key: bytes) -> TokenData | None:
    """The token's contents if it is one we signed with ``key``, unaltered; else None.

    Never raises, whatever ``token`` holds.
    """
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH or not token.isascii():
        return None
    encoded = token.encode("ascii")
    try:
        raw = base64.urlsafe_b64decode(encoded + b"=")
    except (binascii.Error, ValueError):
        return None
    # The decoder skips characters outside the alphabet and ignores the two spare bits of
    # the last character: only the canonical spelling of the 29 bytes is accepted.
    if len(raw) != _TOKEN_BYTES or base64.urlsafe_b64encode(raw)[:-1] != encoded:
        return None
    payload, mac = raw[:_PAYLOAD_BYTES], raw[_PAYLOAD_BYTES:]
    expected = hmac.digest(key, payload, "sha256")[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    kind = chr(payload[0])
    if kind not in KINDS:
        return None
    return TokenData(kind, UUID(bytes=payload[1:17]), int.from_bytes(payload[17:19], "big"))


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def open_url(base_url: str, message_id: UUID, key: bytes) -> str:
    return f"{_base(base_url)}{OPEN_PATH}{sign_token(OPEN, message_id, 0, key)}.gif"


def click_url(base_url: str, message_id: UUID, index: int, key: bytes) -> str:
    return f"{_base(base_url)}{CLICK_PATH}{sign_token(CLICK, message_id, index, key)}"


def unsubscribe_url(base_url: str, message_id: UUID, key: bytes) -> str:
    return f"{_base(base_url)}{UNSUBSCRIBE_PATH}{sign_token(UNSUBSCRIBE, message_id, 0, key)}"


# --- which links are tracked ---------------------------------------------------------------

_HTTP_URL = re.compile(r"https?://[^\s]", re.IGNORECASE)


def is_trackable(url: str, base_url: str = "") -> bool:
    """An absolute http(s) URL that is neither an unsubscribe link nor already tracked.

    Unsubscribe links (any URL containing ``/t/u/``) stay as they are: a redirect in front
    of one would make a scanner's prefetch look like a click, and it must work on its
    own. Links to ``{base_url}/t/`` are tracking links already (content rewritten before).
    """
    return (
        _HTTP_URL.match(url) is not None
        and UNSUBSCRIBE_PATH not in url
        and not (base_url and url.startswith(_base(base_url) + TRACKING_PREFIX))
    )


# --- HTML ----------------------------------------------------------------------------------

# Browsers strip these from both ends of an href before resolving it (URL standard:
# C0 control or space).
_URL_STRIP = "".join(chr(c) for c in range(0x21))
_ATTR_SPACE = " \t\n\r\f"


@dataclass(frozen=True)
class _HrefSpan:
    """Where an href value sits in the document, and what it says once decoded."""

    start: int  # offset of the first character of the value (after any quote)
    end: int  # offset just past the value (before any closing quote)
    quote: str  # '"', "'" or "" for an unquoted value
    url: str  # decoded and stripped


@dataclass(frozen=True)
class _HtmlScan:
    links: tuple[_HrefSpan, ...]
    body_end: int | None  # offset of the last "</body" end tag, if any


class _LinkFinder(HTMLParser):
    """Collects the start tags of ``<a>`` elements and the last ``</body>``, by offset.

    The parser decides what is a tag (comments, ``<script>`` and ``<style>`` contents are
    not); the attribute text of each ``<a>`` tag is then re-read from the source so the
    href value can be replaced in place and every other byte kept.
    """

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        # getpos() is (line, column) with lines counted by "\n" only, as the parser does.
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.anchors: list[tuple[int, str]] = []
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        text = self.get_starttag_text()
        offset = self._offset()
        if text and self.source.startswith(text, offset):
            self.anchors.append((offset, text))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            offset = self._offset()
            if self.source.startswith("</", offset):
                self.body_end = offset


def _tag_attributes(tag_text: str) -> list[tuple[str, int, int, str]]:
    """(lowercased name, value start, value end, quote) of each attribute of a start tag.

    The HTML tokenizer's attribute states, on a tag the parser already accepted; offsets
    are relative to ``tag_text``. An attribute without a value has start == end == -1.
    """
    result: list[tuple[str, int, int, str]] = []
    n = len(tag_text)
    i = 1
    while i < n and tag_text[i] not in _ATTR_SPACE and tag_text[i] not in "/>":
        i += 1  # the tag name
    while i < n:
        while i < n and (tag_text[i] in _ATTR_SPACE or tag_text[i] == "/"):
            i += 1
        if i >= n or tag_text[i] == ">":
            break
        name_start = i
        i += 1  # a first "=" belongs to the name
        while i < n and tag_text[i] not in _ATTR_SPACE and tag_text[i] not in "/>=":
            i += 1
        name = tag_text[name_start:i].lower()
        j = i
        while j < n and tag_text[j] in _ATTR_SPACE:
            j += 1
        if j >= n or tag_text[j] != "=":
            result.append((name, -1, -1, ""))
            continue
        j += 1
        while j < n and tag_text[j] in _ATTR_SPACE:
            j += 1
        if j < n and tag_text[j] in "\"'":
            quote = tag_text[j]
            close = tag_text.find(quote, j + 1)
            if close < 0:
                break  # not a tag the parser would have accepted; give up on it
            result.append((name, j + 1, close, quote))
            i = close + 1
        else:
            k = j
            while k < n and tag_text[k] not in _ATTR_SPACE and tag_text[k] != ">":
                k += 1
            result.append((name, j, k, ""))
            i = k
    return result


_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _decode_attribute(value: str) -> str:
    """An attribute value as a browser reads it.

    ``html.unescape`` applies the text-content rule; inside attributes, a named reference
    without its ";" followed by "=" or a letter or digit stays literal, so
    ``?a=1&copy=2`` keeps its ``&copy=2`` (HTML, "named character reference state").
    """
    if "&" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref[0] == "#" or ref in _HTML5_ENTITIES:
            return _unescape(match.group(0))
        for length in range(len(ref) - 1, 1, -1):
            if ref[:length] in _HTML5_ENTITIES:
                following = ref[length]
                if following == "=" or (following.isascii() and following.isalnum()):
                    return match.group(0)
                return _HTML5_ENTITIES[ref[:length]] + ref[length:]
        return match.group(0)

    return _CHARREF.sub(replace, value)


# A few entries: the recipients of one submission or campaign come one after another.
@functools.lru_cache(maxsize=16)
def _scan_html(source: str) -> _HtmlScan:
    """Where the links are: a function of the content alone, so it is cached, and each
    recipient's copy costs only the splicing of its own tokens."""
    finder = _LinkFinder(source)
    try:
        finder.feed(source)
        finder.close()
    except Exception:  # noqa: S110 -- the stdlib parser raises on a few broken documents
        pass  # what was found before the break is still exact; the rest stays as it is
    links: list[_HrefSpan] = []
    for offset, text in finder.anchors:
        attributes = _tag_attributes(text)
        names = {name for name, *_ in attributes}
        if NOTRACK_ATTRIBUTE in names:
            continue
        for name, start, end, quote in attributes:
            if name != "href":
                continue
            # Browsers use the first of repeated attributes; so does this.
            if start >= 0:
                url = _decode_attribute(text[start:end]).strip(_URL_STRIP)
                if is_trackable(url):
                    links.append(_HrefSpan(offset + start, offset + end, quote, url))
            break
    return _HtmlScan(tuple(links), finder.body_end)


_UNQUOTED_SAFE = re.compile(r"[^\s\"'=<>`]+")


def _attribute_value(value: str, quote: str) -> str:
    escaped = _escape(value, quote=True)
    if quote or _UNQUOTED_SAFE.fullmatch(escaped):
        return escaped
    return f'"{escaped}"'  # an unquoted value the new URL would break out of


def rewrite_html(html: str, base_url: str, message_id: UUID, key: bytes) -> tuple[str, list[str]]:
    """The HTML with each tracked ``<a href>`` pointing at the click URL, and the original
    URLs in link order (list index == the token's position).

    Tracked: hrefs that are absolute http(s) URLs (``is_trackable``) on ``<a>`` elements
    without a ``data-sendstream-notrack`` attribute. mailto:, tel:, #anchors, javascript:
    and relative links stay as they are. The original URLs are the decoded href values
    (``&amp;`` read as ``&``). Every byte other than the replaced href values is kept.
    """
    return track_html(html, base_url, message_id, key, links=True, opens=False)


def pixel_html(html: str, base_url: str, message_id: UUID, key: bytes) -> str:
    """The HTML with the open pixel (a 1x1 ``<img>``) just before its last ``</body>``, or
    at its end when it has none."""
    return track_html(html, base_url, message_id, key, links=False, opens=True)[0]


def track_html(
    html: str, base_url: str, message_id: UUID, key: bytes, *, links: bool, opens: bool
) -> tuple[str, list[str]]:
    """``rewrite_html`` and ``pixel_html`` in one pass over the original HTML.

    Use this rather than one after the other: where the links and ``</body>`` are is
    computed from the original once and cached, so each recipient's copy costs only the
    splicing of its own tokens, whereas the output of one would be parsed again by the other.
    """
    scan = _scan_html(html)
    spans = [span for span in scan.links if is_trackable(span.url, base_url)] if links else []
    del spans[MAX_LINKS:]
    edits = [
        (
            span.start,
            span.end,
            _attribute_value(click_url(base_url, message_id, i, key), span.quote),
        )
        for i, span in enumerate(spans)
    ]
    if opens:
        pixel = (
            f'<img src="{_escape(open_url(base_url, message_id, key))}" width="1" height="1" '
            'alt="" style="display:block;width:1px;height:1px;border:0" />'
        )
        at = len(html) if scan.body_end is None else scan.body_end
        edits.append((at, at, pixel))  # after every link: </body> follows them all
    pieces: list[str] = []
    done = 0
    for begin, end, text in edits:
        pieces += (html[done:begin], text)
        done = end
    pieces.append(html[done:])
    return "".join(pieces), [span.url for span in spans]


# --- plain text ----------------------------------------------------------------------------

_PLAIN_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?'\"*_"
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _trim_url(url: str) -> str:
    """Punctuation that ends a sentence, and closing brackets opened before the URL, are
    not part of it: "(see https://x.example/a)." is ``https://x.example/a``."""
    while url:
        last = url[-1]
        unbalanced = last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last])
        if last not in _TRAILING_PUNCTUATION and not unbalanced:
            break
        url = url[:-1]
    return url


def rewrite_plain(
    text: str, base_url: str, message_id: UUID, key: bytes, *, start: int = 0
) -> tuple[str, list[str]]:
    """The text with each tracked http(s) URL replaced by its click URL, and the original
    URLs in order; positions are ``start``, ``start + 1``, … (pass the number of HTML
    links so one list covers both bodies)."""
    pieces: list[str] = []
    urls: list[str] = []
    done = 0
    for match in _PLAIN_URL.finditer(text):
        if start + len(urls) >= MAX_LINKS:
            break
        url = _trim_url(match.group(0))
        if not is_trackable(url, base_url):
            continue
        begin = match.start()
        pieces.append(text[done:begin])
        pieces.append(click_url(base_url, message_id, start + len(urls), key))
        urls.append(url)
        done = begin + len(url)
    pieces.append(text[done:])
    return "".join(pieces), urls


def track_message(
    html: str | None,
    plain: str | None,
    base_url: str,
    message_id: UUID,
    key: bytes,
    *,
    links: bool = True,
    opens: bool = True,
) -> tuple[str | None, str | None, list[tuple[str, bool]]]:
    """Both bodies of one recipient's copy, tracked, and the message's link list:
    ``(original URL, from_html)`` per link, indexed by the click token's position. Store
    the list with the message; ``record_click`` resolves a click with it."""
    link_list: list[tuple[str, bool]] = []
    if html is not None and (links or opens):
        html, html_urls = track_html(html, base_url, message_id, key, links=links, opens=opens)
        link_list += [(url, True) for url in html_urls]
    if plain is not None and links:
        plain, plain_urls = rewrite_plain(plain, base_url, message_id, key, start=len(link_list))
        link_list += [(url, False) for url in plain_urls]
    return html, plain, link_list


def link_position(links: Sequence[tuple[str, bool]], index: int) -> int:
    """The "Position" reported for a click on link ``index``: 1 for the first occurrence
    of its URL in its body, 2 for the second, …"""
    url, from_html = links[index]
    return sum(1 for entry in links[: index + 1] if entry == (url, from_html))


# --- machine opens and clicks --------------------------------------------------------------

# One row per family: (label, pattern searched case-insensitively in the User-Agent, why).
# The label is what the caller may record as the reason.
MACHINE_USER_AGENTS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "google-image-proxy",
        r"GoogleImageProxy|ggpht\.com",
        "Gmail fetches images through its proxy: the reader's IP and client are hidden",
    ),
    (
        "yahoo-mail-proxy",
        r"YahooMailProxy",
        "Yahoo and AOL Mail image proxy, as Gmail's",
    ),
    (
        "apple-mail-privacy",
        r"^Mozilla/5\.0$",
        "Apple Mail Privacy Protection prefetches every image with a bare 'Mozilla/5.0' "
        "(it also fetches with a full Mail User-Agent from 17.0.0.0/8, which only the IP tells)",
    ),
    (
        "microsoft-scanner",
        r"safelinks|ms-office|Microsoft Office (?:Existence|Protocol) Discovery"
        r"|BingPreview",
        "Outlook / Office 365 Safe Links and Office apps checking links before the reader",
    ),
    ("proofpoint", r"proofpoint|urldefense", "Proofpoint URL Defense"),
    ("mimecast", r"mimecast", "Mimecast URL Protect"),
    ("barracuda", r"barracuda|cudasvc", "Barracuda Link Protection"),
    (
        "other-gateway",
        r"IronPort|CiscoSecureEmail|Trend ?Micro|\bTMES\b|FortiMail|Sophos|Symantec|FireEye"
        r"|Forcepoint|Zscaler",
        "other secure email gateways that open and click everything they let through",
    ),
    (
        "http-library",
        r"python-requests|python-urllib|python-httpx|aiohttp|\bcurl/|^Wget"
        r"|Go-http-client|okhttp|Apache-HttpClient|Java/|libwww-perl|node-fetch|axios/"
        r"|Scrapy",
        "scripts and HTTP libraries, not mail clients",
    ),
    (
        "headless-browser",
        r"HeadlessChrome|Headless|PhantomJS|SlimerJS|Puppeteer|Playwright|Selenium",
        "headless browsers, as sandboxes and scanners use",
    ),
    (
        "bot",
        r"(?<!cu)bot\b|crawler|spider|preview|slurp|facebookexternalhit|WhatsApp",
        "crawlers, and chat apps building link previews (CUBOT phones are not bots)",
    ),
)

_MACHINE_PATTERNS: Final = tuple(
    (label, re.compile(pattern, re.IGNORECASE)) for label, pattern, _ in MACHINE_USER_AGENTS
)

# Nobody opens a message and clicks in it within a second of its delivery; scanners do.
MACHINE_SECONDS: Final = 1.0


def machine_reason(user_agent: str, seconds_since_delivery: float | None, kind: str) -> str | None:
    """Why an open or click looks automated (a ``MACHINE_USER_AGENTS`` label, "no-user-agent"
    or "too-fast"), or None. Flag such events; do not drop them.

    Unsubscribes (kind "u") are never flagged: the RFC 8058 one-click POST is made by the
    mailbox provider's servers on the reader's behalf, and scanners do not submit forms.
    """
    if kind == UNSUBSCRIBE:
        return None
    if seconds_since_delivery is not None and seconds_since_delivery < MACHINE_SECONDS:
        return "too-fast"
    agent = user_agent.strip()
    if not agent:
        return "no-user-agent"
    for label, pattern in _MACHINE_PATTERNS:
        if pattern.search(agent):
            return label
    return None


def is_machine(user_agent: str, seconds_since_delivery: float | None, kind: str) -> bool:
    """True for opens and clicks by proxies, scanners, scripts and bots (see
    ``MACHINE_USER_AGENTS``), and for any within ``MACHINE_SECONDS`` of delivery."""
    return machine_reason(user_agent, seconds_since_delivery, kind) is not None
