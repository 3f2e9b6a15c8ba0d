"""The plain-text twin of an HTML body: what a campaign without a plain body sends.

Merge tags (``%Subscriber:FirstName|there%``) are rendered by the one template engine,
with the rest of a campaign's template code (adapters/templating.py, ``from_merge_tags``).
Template code in the HTML passes through as text, so the twin is a template too.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Final

__all__ = ["plain_from_html"]


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
