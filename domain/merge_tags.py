"""Merge tags in campaign subjects and bodies, and the plain-text twin of an HTML body.

A tag is ``%Subscriber:FirstName%`` or, with a fallback for a missing or blank field,
``%Subscriber:FirstName|there%``. Choices made here:

* The ``Subscriber`` prefix and the field name are case-insensitive (names compare
  ``str.lower()``-ed; an exact-case key in the subscriber's fields wins).
* A field name is 1-64 word characters, dots or hyphens - no spaces, so prose such as
  ``%Subscriber:Name, save 50%`` is not mistaken for a tag. The fallback runs to the
  next ``%`` (it may contain ``|``: ``%Subscriber:a|b|c%`` falls back to ``b|c``) and
  cannot span lines.
* Anything else - a lone ``%``, ``50%``, ``%Other:thing%``, ``%Subscriber:%`` - is
  ordinary text and comes out exactly as written. Rendering never raises.
* A field value is used as stored; "blank" (which selects the fallback) means empty
  after ``strip()``.

The three renderers exist because the same value is dangerous in different ways in
each context: in HTML it could inject markup, in a header it could inject a line
break (and with it new headers). The template's own text is trusted - the customer
wrote it - and only values and fallbacks are neutralised, except that a header never
contains a line break at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Final

__all__ = [
    "Tag",
    "Template",
    "merge_fields_used",
    "parse_template",
    "plain_from_html",
    "render_header",
    "render_html",
    "render_text",
]

_TAG = re.compile(r"%subscriber:([\w.\-]{1,64})(?:\|([^%\r\n]{0,256}))?%", re.IGNORECASE)

# Every C0/C1 control character, DEL, and the Unicode line/paragraph separators: none
# of them belongs in a header, and CR/LF there would start a new header line.
_HEADER_UNSAFE: Final = {
    **dict.fromkeys(range(0x20), " "),
    **dict.fromkeys(range(0x7F, 0xA0), " "),
    0x2028: " ",
    0x2029: " ",
}


@dataclass(frozen=True)
class Tag:
    name: str  # as written in the template
    key: str  # lowercased, for case-insensitive lookup
    fallback: str


@dataclass(frozen=True)
class Template:
    """A parsed subject or body: literal text and tags, alternating.

    Parsed once per campaign and rendered once per recipient, so everything that does
    not depend on the recipient (the split, escaped fallbacks, header-safe literals) is
    computed here.
    """

    source: str
    parts: tuple[str | Tag, ...]
    _html_fallbacks: tuple[str, ...] = field(repr=False, compare=False, default=())
    _header_parts: tuple[str | Tag, ...] = field(repr=False, compare=False, default=())
    _header_fallbacks: tuple[str, ...] = field(repr=False, compare=False, default=())


def parse_template(text: str) -> Template:
    parts: list[str | Tag] = []
    position = 0
    for match in _TAG.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        name = match.group(1)
        parts.append(Tag(name, name.lower(), match.group(2) or ""))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    tags = [p for p in parts if isinstance(p, Tag)]
    return Template(
        source=text,
        parts=tuple(parts),
        _html_fallbacks=tuple(escape(t.fallback, quote=True) for t in tags),
        _header_parts=tuple(
            p if isinstance(p, Tag) else p.translate(_HEADER_UNSAFE) for p in parts
        ),
        _header_fallbacks=tuple(_header_safe(t.fallback) for t in tags),
    )


def _header_safe(text: str) -> str:
    return text.translate(_HEADER_UNSAFE)


def _lookup(fields: Mapping[str, str], tag: Tag) -> str | None:
    """The field's value, or None when missing or blank (the fallback applies)."""
    value = fields.get(tag.name)
    if value is None:
        for name, candidate in fields.items():
            if name.lower() == tag.key:
                value = candidate
                break
        if value is None:
            return None
    if type(value) is not str:
        value = str(value)
    if not value or value.isspace():
        return None
    return value


def render_text(template: Template, fields: Mapping[str, str]) -> str:
    """For plain-text bodies: values go in as they are."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            value = _lookup(fields, part)
            out.append(part.fallback if value is None else value)
    return "".join(out)


def render_html(template: Template, fields: Mapping[str, str]) -> str:
    """For HTML bodies: values and fallbacks are escaped (quotes too, as a tag may sit
    inside an attribute), so no value can open an element or leave an attribute."""
    out: list[str] = []
    fallbacks = iter(template._html_fallbacks)
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            value = _lookup(fields, part)
            fallback = next(fallbacks)
            out.append(fallback if value is None else escape(value, quote=True))
    return "".join(out)


def render_header(template: Template, fields: Mapping[str, str]) -> str:
    """For Subject and From name: control characters become spaces and the result is
    stripped, so no value (nor the template itself) can fold or inject a header line."""
    out: list[str] = []
    fallbacks = iter(template._header_fallbacks)
    for part in template._header_parts:
        if isinstance(part, str):
            out.append(part)
        else:
            value = _lookup(fields, part)
            fallback = next(fallbacks)
            out.append(fallback if value is None else _header_safe(value))
    return "".join(out).strip()


def merge_fields_used(template: Template) -> frozenset[str]:
    """Lowercased field names the template reads, e.g. to check a list provides them."""
    return frozenset(p.key for p in template.parts if isinstance(p, Tag))


# -------------------------------------------------------------------- plain from HTML

_SKIPPED: Final = frozenset({"script", "style", "head", "title", "template"})
_PARAGRAPHS: Final = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})
_BLOCKS: Final = frozenset(
    {
        "address",
        "article",
        "aside",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "pre",
        "section",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
    }
)
_WHITESPACE = re.compile(r"\s+")


class _PlainText(HTMLParser):
    """Collects text and pending line breaks.

    Breaks are kept pending until the next text so nested blocks (``<td><div><p>``,
    the staple of email layouts) yield one break, not one per element, while each
    ``<br>`` still counts.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pending = 0  # line breaks owed before the next text
        self.skipping: dict[str, int] = {}
        self.links: list[tuple[str, int]] = []  # (href, index in out where its text starts)
        self.pre = 0

    def _break(self, count: int) -> None:
        self.pending = max(self.pending, count)

    def _text(self, text: str) -> None:
        if self.pending:
            if self.out:
                self.out.append("\n" * self.pending)
            self.pending = 0
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping[tag] = self.skipping.get(tag, 0) + 1
            return
        if tag == "body":  # a <head> left open ends here, as in a browser
            self.skipping.pop("head", None)
        if any(self.skipping.values()):
            return
        if tag == "br":
            self.pending += 1
            if not self.out:
                self.pending = 0
        elif tag in _PARAGRAPHS:
            self._break(2)
        elif tag in _BLOCKS:
            self._break(1)
            if tag == "li":
                self._text("- ")
            elif tag == "pre":
                self.pre += 1
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            self.links.append((href, len(self.out)))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._text(_WHITESPACE.sub(" ", alt))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            if self.skipping.get(tag):
                self.skipping[tag] -= 1
            return
        if any(self.skipping.values()):
            return
        if tag in _PARAGRAPHS:
            self._break(2)
        elif tag in _BLOCKS:
            self._break(1)
            if tag == "pre" and self.pre:
                self.pre -= 1
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            text = " ".join("".join(self.out[start:]).split())
            if _link_worth_showing(href, text):
                self._text(f" ({href})" if text else href)

    def handle_data(self, data: str) -> None:
        if any(self.skipping.values()):
            return
        if self.pre:
            lines = data.split("\n")
            for i, line in enumerate(lines):
                if i:
                    self.pending += 1
                if line.strip():
                    self._text(line)
            return
        text = _WHITESPACE.sub(" ", data)
        if text.strip():
            self._text(text)
        elif text and not self.pending:
            self.out.append(" ")


def _link_worth_showing(href: str, text: str) -> bool:
    if not href or href.startswith("#") or href.lower().startswith("javascript:"):
        return False
    bare = href[7:] if href.lower().startswith("mailto:") else href
    return text not in (href, bare)


def plain_from_html(html: str) -> str:
    """A readable plain-text alternative of an HTML body, for the text/plain part.

    Whitespace is collapsed within lines and at most two blank lines are kept in a row.
    """
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.out).split("\n")]
    kept: list[str] = []
    blank = 0
    for line in lines:
        if line:
            blank = 0
            kept.append(line)
        elif kept:
            blank += 1
            if blank <= 2:
                kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept)
