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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from domain import errors as catalogue
from domain.errors import ErrorText

__all__ = ["READERS", "VALIDATORS", "CommandContract", "contract_of"]

# Parameters every command takes, documented by the security schemes and `Command`.
_ENDPOINT_PARAMETERS = frozenset({"Command", "APIKey", "SessionID"})
_HELPER_DEPTH = 2
_PROJECT_PACKAGES = frozenset({"api", "domain", "engine"})


@dataclass(frozen=True)
class CommandContract:
    parameters: tuple[str, ...]  # in the order the handler first reads them
    errors: tuple[ErrorText, ...]  # the catalogue's errors it can answer, in order
    # How the handler reads each parameter: the parser it hands the value to (a key of
    # READERS), where one parser reads it everywhere.
    kinds: Mapping[str, str] = field(default_factory=dict)
    # Parameters whose absence alone the handler answers with a "missing" error.
    required: frozenset[str] = frozenset()
    # The fields of its success answer with the kind of value each holds ("any" where the
    # code does not say), or None where an answer is built elsewhere than in a literal.
    answer: Mapping[str, str] | None = None
    # The fields every success answer has.
    answer_required: frozenset[str] = frozenset()


# The parsers of engine.params, by the kind of value each reads.
READERS = {
    "text_param": "text", "uuid_param": "id", "count_param": "count",
    "date_param": "date", "parse_timestamp": "date", "flag_param": "flag",
    "time_zone_param": "time_zone", "event_param": "event",
}  # fmt: skip


# Checks that a parameter's value must pass, by the kind of value each holds it to.
VALIDATORS = {"normalise_domain_name": "domain", "is_valid_email": "email"}


def contract_of(handler: Callable[..., Any]) -> CommandContract:
    function = getattr(handler, "__func__", handler)
    owner = _owner(handler)
    parameters: dict[str, str] = {}  # by lower case: names are matched without regard to it
    kinds: dict[str, set[str | None]] = {}
    errors: dict[ErrorText, None] = {}
    required: set[str] = set()
    checked: dict[str, str] = {}  # what a validator holds a parameter's value to
    for node, parent, aliases, names in _walk(function, owner, _HELPER_DEPTH):
        name = _parameter_read(node)
        if name is not None and name not in _ENDPOINT_PARAMETERS:
            known = parameters.setdefault(name.lower(), name)
            if known[:1].islower() and name[:1].isupper():
                parameters[name.lower()] = name  # the documented spelling, not a variant
            kinds.setdefault(name.lower(), set()).add(_reader_of(node, parent))
        validated = _validated(node, aliases)
        if validated is not None:
            checked[validated[0].lower()] = validated[1]
        for error in _errors_named(node) or _errors_held(node, names):
            errors.setdefault(error)
        missing = _required_by(node, aliases)
        if missing is not None and missing not in _ENDPOINT_PARAMETERS:
            required.add(missing.lower())
    resolved: dict[str, str] = {}
    for key, found in kinds.items():
        kind = checked.get(key) or (next(iter(found)) if len(found) == 1 else None)
        if kind is not None:
            resolved[parameters[key]] = kind
    fields, always = _answer_of(function, owner, _HELPER_DEPTH)
    return CommandContract(
        parameters=tuple(parameters.values()),
        errors=tuple(errors),
        kinds=resolved,
        required=frozenset(parameters[key] for key in required if key in parameters),
        answer=fields,
        answer_required=always,
    )


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


def _walk(
    function: Any, owner: type | None, depth: int
) -> Iterator[tuple[ast.AST, ast.AST | None, Mapping[str, str], Mapping[str, Any]]]:
    """Each node of the function and of the methods and functions it calls, with its
    parent, the function's local names that hold one parameter's value, and its module's
    names."""
    tree = _tree(function)
    if tree is None:
        return
    readers = _local_readers(tree)
    parents = _parents(tree)
    aliases = _aliases(tree)
    names = getattr(function, "__globals__", {})
    for node in ast.walk(tree):
        yield node, parents.get(node), aliases, names
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in readers
            and node.args
        ):
            # value("Subject", …), where the local function reads params.get(its name)
            read = ast.Subscript(value=ast.Name(id="params"), slice=node.args[0])
            yield read, None, aliases, names
        if depth and owner is not None and _calls_self(node):
            helper = _helper(owner, node)
            if helper is not None:
                yield from _walk(helper, owner, depth - 1)
        if depth and (parser := _project_function(function, node)) is not None:
            # count_param(params.get("RecordsFrom"), …): the errors the parser raises
            yield from _walk(parser, None, depth - 1)


def _helper(owner: type, call: ast.AST) -> Any:
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
    helper = inspect.getattr_static(owner, call.func.attr, None)
    helper = getattr(helper, "__func__", helper)
    return helper if callable(helper) else None


def _project_function(function: Any, node: ast.AST) -> Any:
    """The function of this project a call names (a parser, or a rule's translation)."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    called = getattr(function, "__globals__", {}).get(node.func.id)
    module = getattr(called, "__module__", "") or ""
    if inspect.isfunction(called) and module.split(".")[0] in _PROJECT_PACKAGES:
        return called
    return None


@cache
def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


@cache
def _aliases(tree: ast.AST) -> dict[str, str]:
    """``name = text_param(params.get("DomainName"))``: the local ``name`` holds DomainName."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        pairs = (
            list(zip(target.elts, value.elts, strict=False))
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
            else [(target, value)]
        )
        for name, expression in pairs:
            read = {
                parameter.lower()
                for inner in ast.walk(expression)
                if (parameter := _parameter_read(inner)) is not None
            }
            if isinstance(name, ast.Name) and len(read) == 1:
                found[name.id] = read.pop()
    return found


def _validated(node: ast.AST, aliases: Mapping[str, str]) -> tuple[str, str] | None:
    """``normalise_domain_name(name)``, ``is_valid_email(email.lower())``: the parameter
    whose value a validator of VALIDATORS checks, and the kind it holds it to."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in VALIDATORS
        and node.args
    ):
        return None
    named = set()
    for inner in ast.walk(node.args[0]):
        read = _parameter_read(inner)
        if read is not None:
            named.add(read.lower())
        elif isinstance(inner, ast.Name) and inner.id in aliases:
            named.add(aliases[inner.id].lower())
    return (named.pop(), VALIDATORS[node.func.id]) if len(named) == 1 else None


def _reader_of(read: ast.AST, parent: ast.AST | None) -> str | None:
    """The parser of engine.params that the value read is handed to, if any."""
    for call in (read, parent):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in READERS
            and (call is parent or _is_params(call.args[0]))
        ):
            return READERS[call.func.id]
    return None


def _required_by(node: ast.AST, aliases: Mapping[str, str]) -> str | None:
    """``if <one parameter's test>: raise RequestRejected(<a "missing" error>)``: that
    parameter. A test of two parameters (either will do) makes neither required."""
    if not isinstance(node, ast.If) or not node.body or not isinstance(node.body[0], ast.Raise):
        return None
    raised = node.body[0].exc
    if not isinstance(raised, ast.Call) or not raised.args:
        return None
    error_node = raised.args[0]
    if (
        isinstance(error_node, ast.Call)
        and isinstance(error_node.func, ast.Attribute)
        and error_node.func.attr == "format"
    ):
        error_node = error_node.func.value  # E.Lists.MISSING_PARAMETER.format(name="ListID")
    named = _errors_named(error_node)
    error = named[0] if len(named) == 1 else None
    if error is None or not _says_missing(error):
        return None
    tested: set[str] = set()
    for inner in ast.walk(node.test):
        read = _parameter_read(inner)
        if read is not None:
            tested.add(read.lower())
        elif isinstance(inner, ast.Name) and inner.id in aliases:
            tested.add(aliases[inner.id].lower())
    if len(tested) != 1:
        return None
    return tested.pop()


def _says_missing(error: ErrorText) -> bool:
    text = error.message.lower()
    return any(word in text for word in ("missing", "required", "not supplied"))


def _answer_of(
    function: Any, owner: type | None, depth: int
) -> tuple[dict[str, str] | None, frozenset[str]]:
    """The fields of the dictionaries the function returns, and those all of them have;
    None where one of its answers is not a literal the code shows."""
    shapes = _shapes(function, owner, depth)
    if not shapes:
        return None, frozenset()
    fields: dict[str, str] = {}
    for shape in shapes:
        for key, kind in shape.items():
            fields[key] = kind if fields.get(key, kind) == kind else "any"
    return fields, frozenset.intersection(*(frozenset(shape) for shape in shapes))


def _shapes(function: Any, owner: type | None, depth: int) -> list[dict[str, str]] | None:
    """Each dictionary literal the function returns, followed into the methods whose
    answer it returns; None where one of its answers is anything else."""
    tree = _tree(function)
    if tree is None:
        return None
    shapes: list[dict[str, str]] = []
    for value in _named_literals(tree, _returned(tree)):
        if isinstance(value, ast.Dict) and None not in value.keys:
            keys = [_literal(key) for key in value.keys if key is not None]
            if None in keys:
                return None
            shapes.append({str(k): _kind(v) for k, v in zip(keys, value.values, strict=True)})
            continue
        helper = (
            _helper(owner, value) if depth and owner is not None and _calls_self(value) else None
        )
        inner = _shapes(helper, owner, depth - 1) if helper is not None else None
        if inner is None:
            return None
        shapes.extend(inner)
    return shapes or None


def _named_literals(tree: ast.AST, values: Iterator[ast.expr]) -> Iterator[ast.expr]:
    """The values, with a local name returned (``answer``, saved with an Idempotency-Key
    before it is returned) replaced by what is assigned to it, where that is all literals."""
    for value in values:
        assigned = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(value, ast.Name)
            and any(isinstance(t, ast.Name) and t.id == value.id for t in node.targets)
        ]
        if assigned and all(isinstance(a, ast.Dict) for a in assigned):
            yield from assigned
        else:
            yield value


def _returned(tree: ast.AST) -> Iterator[ast.expr]:
    """The values the outermost function returns (not those of functions inside it)."""
    root = tree.body[0] if isinstance(tree, ast.Module) else tree
    pending = list(ast.iter_child_nodes(root))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Return) and node.value is not None:
            yield node.value
        pending.extend(ast.iter_child_nodes(node))


def _kind(value: ast.expr) -> str:
    """What a returned field holds, where its expression alone says it."""
    if isinstance(value, ast.IfExp):
        body, orelse = _kind(value.body), _kind(value.orelse)
        return body if body == orelse else "any"
    if isinstance(value, ast.Constant):
        kinds = {bool: "boolean", int: "integer", str: "string"}
        return kinds.get(type(value.value), "any")
    if isinstance(value, ast.JoinedStr):
        return "string"
    if isinstance(value, ast.Compare) or (
        isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)
    ):
        return "boolean"
    if isinstance(value, ast.List | ast.ListComp):
        return "array"
    if isinstance(value, ast.Dict | ast.DictComp):
        return "object"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        return {"str": "string", "len": "integer", "bool": "boolean"}.get(value.func.id, "any")
    return "any"


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


def _calls_self(node: ast.AST) -> bool:
    """``self.method(…)``: what the method reads, raises and answers is the handler's too."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
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
    if not isinstance(node, ast.Attribute):
        return None
    found = getattr(_section(node.value), node.attr, None)
    return found if isinstance(found, ErrorText) else None


def _errors_held(node: ast.AST, names: Mapping[str, Any]) -> list[ErrorText]:
    """The errors a module's constant holds (``API_ADD_ERRORS``, one endpoint's wording
    of the errors a shared rule raises)."""
    if not isinstance(node, ast.Name) or node.id not in names:
        return []
    value = names[node.id]
    held = getattr(value, "__dict__", None)
    if not isinstance(held, dict) or isinstance(value, type) or inspect.ismodule(value):
        return []
    return [value for value in held.values() if isinstance(value, ErrorText)]


def _section(node: ast.AST) -> type | None:
    """The catalogue class ``E.Lists`` or ``Lists`` names."""
    if not isinstance(node, ast.Attribute | ast.Name):
        return None
    name = node.attr if isinstance(node, ast.Attribute) else node.id
    section = getattr(catalogue, name, None)
    return section if isinstance(section, type) else None


def _errors_named(node: ast.AST) -> list[ErrorText]:
    """A catalogue error, or those ``E.Lists.for_exception(name, text)`` makes: the one of
    its literal arguments, or, where they are the values of a domain rule, every named
    exception of its section (000's names, the texts being the rules' own)."""
    error = _catalogue_error(node)
    if error is not None:
        return [error]
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "for_exception"
        and (section := _section(node.func.value)) is not None
    ):
        return []
    make: Callable[[str, str], ErrorText] = section.for_exception  # type: ignore[attr-defined]
    literals = [_literal(argument) for argument in node.args]
    if len(literals) == 2 and None not in literals:
        return [make(str(literals[0]), str(literals[1]))]
    numbers: dict[str, int] = getattr(section, "NUMBERS", {})
    return [make(name, name) for name in numbers]
