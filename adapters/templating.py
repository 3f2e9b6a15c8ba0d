"""Templates in Jinja2's sandbox: checked when they are stored, so that a broken one is
refused with the line at fault then, never at send time.

What template code may do:

* Read the data it is given (``{{ order.total }}``, ``{% if %}``, ``{% for %}`` over the
  data's lists, filters such as ``default``, ``upper``, ``join``). Jinja2's immutable
  sandbox refuses attribute access to Python's internals and any method that changes a
  value, so template code cannot reach code or files.
* Nothing else: no ``include``, ``import`` or ``extends`` (there are no files to reach,
  and each would fail at send time), and no globals or functions (``range``, ``lipsum``,
  ``cycler``): a loop runs over the data only, so its cost is bounded by the data, and
  loops nest at most ``MAX_LOOP_DEPTH`` deep.
* A missing variable renders as empty text (``{{ name | default("there") }}`` gives a
  fallback), and so does any attribute of it: a template never fails on missing data.
* HTML bodies are autoescaped (a value cannot add markup); the subject is rendered on one
  line (a value cannot add a header); the plain text is rendered as it is.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_LOOP_DEPTH = 2
# What one part may render to: a runaway loop over large data stops here.
MAX_RENDERED_CHARS = 2_000_000
_NO_FILES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


class TemplateRefused(Exception):
    """A template part that cannot be stored or rendered: which part, its line, and why."""

    def __init__(self, part: str, line: int | None, reason: str) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {reason}")
        self.part, self.line, self.reason = part, line, reason


class _DataFirst(ImmutableSandboxedEnvironment):
    """``order.items`` is the data's ``items``, not the dictionary method of that name:
    template data is JSON, and its keys are what a template means."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    environment = _DataFirst(
        autoescape=autoescape, undefined=ChainableUndefined, keep_trailing_newline=True
    )
    environment.globals.clear()
    environment.filters["or_fallback"] = _or_fallback
    return environment


def _or_fallback(value: Any, fallback: str) -> Any:
    """``value``, or ``fallback`` when it is missing, empty or only blanks (a merge tag's
    ``|fallback``)."""
    if value is None or isinstance(value, Undefined):
        return fallback
    text = value if isinstance(value, str) else str(value)
    return fallback if not text or text.isspace() else value


_HTML = _environment(autoescape=True)
_TEXT = _environment(autoescape=False)


def check(part: str, source: str, html: bool = False) -> None:
    """Raise :class:`TemplateRefused` unless ``source`` compiles and keeps the rules."""
    environment = _HTML if html else _TEXT
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateRefused(part, error.lineno, error.message or "syntax error") from None
    for node in tree.find_all(_NO_FILES):
        raise TemplateRefused(part, node.lineno, "include, import and extends are not allowed")
    for call in tree.find_all(nodes.Call):
        # No globals, and data is JSON: a bare name called could only fail at send time.
        if isinstance(call.node, nodes.Name):
            raise TemplateRefused(
                part, call.lineno, f"there is no function {call.node.name}(): use a filter"
            )
    _check_loops(part, tree, 0)
    try:
        environment.from_string(source)  # unknown filters and tests are found here
    except TemplateSyntaxError as error:
        raise TemplateRefused(part, error.lineno, error.message or "syntax error") from None


def _check_loops(part: str, node: nodes.Node, depth: int) -> None:
    for child in node.iter_child_nodes():
        inner = depth + isinstance(child, nodes.For)
        if inner > MAX_LOOP_DEPTH:
            raise TemplateRefused(part, child.lineno, f"loops nest at most {MAX_LOOP_DEPTH} deep")
        _check_loops(part, child, inner)


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    """Compiled once for the sends of a template, not once a send (a millisecond each)."""
    return (_HTML if html else _TEXT).from_string(source)


def render(part: str, source: str, data: Mapping[str, Any], html: bool = False) -> str:
    """``source`` with ``data``; raises :class:`TemplateRefused` for what only the data
    shows (a value the sandbox refuses, a rendering too large)."""
    pieces: list[str] = []
    size = 0
    try:
        for piece in _compiled(source, html).generate(dict(data)):
            size += len(piece)
            if size > MAX_RENDERED_CHARS:
                raise TemplateRefused(
                    part, None, f"renders to over {MAX_RENDERED_CHARS} characters"
                )
            pieces.append(piece)
    except SecurityError as error:
        raise TemplateRefused(part, None, f"not allowed: {error}") from None
    except TemplateError as error:
        raise TemplateRefused(part, getattr(error, "lineno", None), str(error)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as error:
        # What the data makes of a template (a number iterated, a division by zero): the
        # request's to mend, answered as such, never a failure of the engine.
        raise TemplateRefused(part, None, f"{type(error).__name__}: {error}") from None
    return "".join(pieces)


def render_subject(source: str, data: Mapping[str, Any]) -> str:
    """The subject on one line: whatever the data holds, it cannot start a header (control
    characters, which no header holds, become blanks too)."""
    return " ".join(render("Subject", source, data).translate(_CONTROLS).split())


_CONTROLS = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


# Campaign emails (and the merge tags they have always had) render in the same sandbox:
# ``%Subscriber:FirstName|there%`` is ``{{ Subscriber["FirstName"] | or_fallback("there") }}``.
_MERGE_TAG = re.compile(r"%subscriber:([\w.\-]{1,64})(?:\|([^%\r\n]{0,256}))?%", re.IGNORECASE)


def from_merge_tags(source: str) -> str:
    """``source`` with each merge tag as the template code it stands for: the field, or
    the fallback when the field is missing, empty or blank."""
    return _MERGE_TAG.sub(
        lambda tag: (
            "{{ Subscriber["
            + json.dumps(tag[1])
            + "] | or_fallback("
            + json.dumps(tag[2] or "")
            + ") }}"
        ),
        source,
    )


class SubscriberFields(Mapping[str, str]):
    """A subscriber's list fields, read without regard to case (``Subscriber.firstname``
    is ``FirstName``), as merge tags always read them; an exact-case name wins."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._fields: dict[str, str] = dict(fields)
        # The first of two names that differ only in case wins, as merge tags had it.
        self._folded: dict[str, str] = {}
        for name, value in self._fields.items():
            self._folded.setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        if name in self._fields:
            return self._fields[name]
        return self._folded[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._fields or name.lower() in self._folded)

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def subscriber_data(fields: Mapping[str, str]) -> dict[str, Any]:
    """What a campaign email's template reads: each field by its name, and all of them
    as ``Subscriber``."""
    return {**fields, "Subscriber": SubscriberFields(fields)}
