"""What each ``/api.php`` command reads and answers, read from its handler's own code.

The commands parse their parameters themselves (``params.get("DomainName")``, helpers
such as ``flag_param(params, "OpenTracking", …)``) and raise the catalogue's errors
(``E.AddDomain.MISSING_DOMAIN_NAME``). Rather than keep a second, hand-written list that
could drift from that code, the OpenAPI document takes both from the handler's source:
every literal parameter name it reads from ``params``, and every catalogue error it
names, following the calls it makes to methods of its own object with ``params``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from domain import errors as catalogue
from domain.errors import ErrorText

__all__ = ["CommandContract", "contract_of"]

# Parameters every command takes, documented by the security schemes and `Command`.
_ENDPOINT_PARAMETERS = frozenset({"Command", "APIKey", "SessionID"})
_HELPER_DEPTH = 2


@dataclass(frozen=True)
class CommandContract:
    parameters: tuple[str, ...]  # in the order the handler first reads them
    errors: tuple[ErrorText, ...]  # the catalogue's errors it can answer, in order


def contract_of(handler: Callable[..., Any]) -> CommandContract:
    function = getattr(handler, "__func__", handler)
    parameters: dict[str, str] = {}  # by lower case: names are matched without regard to it
    errors: dict[ErrorText, None] = {}
    for node in _walk(function, _owner(handler), _HELPER_DEPTH):
        name = _parameter_read(node)
        if name is not None and name not in _ENDPOINT_PARAMETERS:
            known = parameters.setdefault(name.lower(), name)
            if known[:1].islower() and name[:1].isupper():
                parameters[name.lower()] = name  # the documented spelling, not a variant
        error = _catalogue_error(node)
        if error is not None:
            errors.setdefault(error)
    return CommandContract(tuple(parameters.values()), tuple(errors))


def _owner(handler: Callable[..., Any]) -> type | None:
    """The class whose methods the handler calls: a bound method's, or that of the
    ``self`` a handler made by a method closes over."""
    bound = getattr(handler, "__self__", None)
    if bound is not None:
        return type(bound)
    code = getattr(handler, "__code__", None)
    cells = getattr(handler, "__closure__", None) or ()
    if code is not None and "self" in code.co_freevars:
        return type(cells[code.co_freevars.index("self")].cell_contents)
    return None


def _walk(function: Any, owner: type | None, depth: int) -> Iterator[ast.AST]:
    tree = _tree(function)
    if tree is None:
        return
    readers = _local_readers(tree)
    for node in ast.walk(tree):
        yield node
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in readers
            and node.args
        ):
            # value("Subject", …), where the local function reads params.get(its name)
            yield ast.Subscript(value=ast.Name(id="params"), slice=node.args[0])
        if depth and owner is not None and _passes_params_to_self(node):
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            helper = inspect.getattr_static(owner, node.func.attr, None)
            helper = getattr(helper, "__func__", helper)
            if callable(helper):
                yield from _walk(helper, owner, depth - 1)


@cache
def _tree(function: Any) -> ast.AST | None:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return None
    return ast.parse(textwrap.dedent(source))


def _local_readers(tree: ast.AST) -> set[str]:
    """Functions defined inside the handler that read ``params`` by their first argument."""
    readers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.args.args:
            first = node.args.args[0].arg
            for inner in ast.walk(node):
                reads = (
                    isinstance(inner, ast.Call)
                    and isinstance(inner.func, ast.Attribute)
                    and _is_params(inner.func.value)
                    and inner.args
                    and isinstance(inner.args[0], ast.Name)
                    and inner.args[0].id == first
                )
                if reads:
                    readers.add(node.name)
    return readers


def _is_params(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "params"


def _passes_params_to_self(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
        and any(_is_params(argument) for argument in node.args)
    )


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _parameter_read(node: ast.AST) -> str | None:
    """``params.get("X")``, ``params["X"]``, ``"X" in params``, ``helper(params, "X", …)``."""
    if isinstance(node, ast.Call):
        function = node.func
        if isinstance(function, ast.Attribute) and _is_params(function.value) and node.args:
            return _literal(node.args[0]) if function.attr in ("get", "pop") else None
        if len(node.args) >= 2 and _is_params(node.args[0]):
            return _literal(node.args[1])
    if isinstance(node, ast.Subscript) and _is_params(node.value):
        return _literal(node.slice)
    if (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In | ast.NotIn)
        and _is_params(node.comparators[0])
    ):
        return _literal(node.left)
    return None


def _catalogue_error(node: ast.AST) -> ErrorText | None:
    """``E.AddDomain.MISSING_DOMAIN_NAME`` or ``AddDomain.MISSING_DOMAIN_NAME``."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Attribute | ast.Name):
        return None
    section_name = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
    section = getattr(catalogue, section_name, None)
    found = getattr(section, node.attr, None) if isinstance(section, type) else None
    return found if isinstance(found, ErrorText) else None
