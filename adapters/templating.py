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
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateError, TemplateSyntaxError, nodes
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
    return environment


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
    """The subject on one line: whatever the data holds, it cannot start a header."""
    return " ".join(render("Subject", source, data).split())
