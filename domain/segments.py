"""Audience segments: which subscribers a campaign's ``RulesJsonBundle`` selects.

The bundle (``Campaign.Update``'s ``RulesJsonBundle``) looks like::

    {"operator": "or",
     "criteria": [
       {"list_id": 1, "operator": "and", "rules": [
           {"type": "fields", "field_id": "EmailAddress", "operator": "contains",
            "value": "user1"}, ...]},
       {"list_id": 2, "operator": "or", "rules": [...]}]}

The API document leaves the semantics open; they are fixed here, once, so that API
validation, audience previews and the campaign planner cannot disagree:

* **Identity.** A subscriber is identified across lists by the stripped, lowercased
  ``EmailAddress``. If a list holds the same address twice, its first entry is that
  list's record of the subscriber; entries without an address are ignored (they cannot
  be mailed).
* **Criterion.** A criterion holds for a subscriber iff the subscriber is a member of the
  criterion's list *and* the criterion's rules, combined with its own operator, hold on
  the fields the subscriber has *in that list*. So a criterion for list 1 is False for
  someone who is not in list 1 - whatever its rules (even ``not_contains`` or
  ``is_not_set``). An empty rule list selects every member of the list.
* **Segment.** The top-level operator combines the criteria. The audience is every
  subscriber of the mentioned lists for whom that combination holds: with ``or`` the
  union of what each criterion selects, with ``and`` only subscribers satisfying every
  criterion - hence members of every mentioned list. Lists that are not mentioned are
  never looked at; a mentioned list absent from the data is an empty list.
* **Order.** Addresses come out once each, in the order they are first met when walking
  the mentioned lists in the order the criteria mention them, members in given order.
* **Fields.** Field names match case-insensitively (an exact-case key wins). A missing
  field reads as ``""``: ``not_contains`` on it is True, ``equals ""`` is True.
* **Strings.** Comparisons are case-insensitive (both sides ``str.lower()``-ed), on
  the value as stored (not stripped). ``contains ""`` is True, as ``"" in s`` is.
* **Order comparisons.** ``greater_than``/``less_than`` compare as numbers when both
  sides are decimal numbers (``-3``, ``4.5``, ``1e3``; not ``nan``, ``inf``, ``1_000``),
  else as instants when both are ISO dates or date-times (``YYYY-MM-DD``,
  ``YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|±HH:MM]``; no offset means UTC, a bare date is
  its midnight UTC), else the rule is False - a mistyped value selects nobody rather
  than everybody.
* ``is_set``: the field is present and not blank after ``strip()``; ``is_not_set`` is
  its negation.

Operators are normalised (lowercase, runs of spaces/hyphens become ``_``) and aliases
(``does not contain``, ``gt``, ``=``, ``!=``, ...) map to one canonical name, which is
what ``Rule.operator`` holds - so two spellings of one rule compare equal.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "OPERATORS",
    "Criterion",
    "Rule",
    "Segment",
    "SegmentError",
    "Subscriber",
    "compile_segment",
    "evaluate",
    "normalise_operator",
    "parse_segment",
    "to_bundle",
]

Subscriber = Mapping[str, str]
"""Field name -> value; always has ``EmailAddress``."""

FieldsPredicate = Callable[[Mapping[str, str]], bool]

# Bounds on what a bundle may hold, so a hostile or broken bundle is refused with a clear
# message instead of costing unbounded memory or time per subscriber.
MAX_BUNDLE_CHARS: Final = 1_000_000
MAX_CRITERIA: Final = 100
MAX_RULES: Final = 200
MAX_NAME_CHARS: Final = 200
MAX_VALUE_CHARS: Final = 10_000

_CANONICAL: Final = (
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "begins_with",
    "ends_with",
    "is_set",
    "is_not_set",
    "greater_than",
    "less_than",
)
OPERATORS: Final = frozenset(_CANONICAL)

_ALIASES: Final[Mapping[str, str]] = {
    **{name: name for name in _CANONICAL},
    "=": "equals",
    "==": "equals",
    "eq": "equals",
    "is": "equals",
    "equal": "equals",
    "equal_to": "equals",
    "is_equal_to": "equals",
    "!=": "not_equals",
    "<>": "not_equals",
    "ne": "not_equals",
    "neq": "not_equals",
    "is_not": "not_equals",
    "not_equal": "not_equals",
    "not_equal_to": "not_equals",
    "does_not_equal": "not_equals",
    "is_not_equal_to": "not_equals",
    "contain": "contains",
    "does_contain": "contains",
    "not_contain": "not_contains",
    "does_not_contain": "not_contains",
    "doesnt_contain": "not_contains",
    "begin_with": "begins_with",
    "starts_with": "begins_with",
    "start_with": "begins_with",
    "end_with": "ends_with",
    "set": "is_set",
    "exists": "is_set",
    "is_not_empty": "is_set",
    "not_empty": "is_set",
    "not_set": "is_not_set",
    "is_empty": "is_not_set",
    "empty": "is_not_set",
    "not_exists": "is_not_set",
    "does_not_exist": "is_not_set",
    "gt": "greater_than",
    ">": "greater_than",
    "is_greater_than": "greater_than",
    "after": "greater_than",
    "is_after": "greater_than",
    "lt": "less_than",
    "<": "less_than",
    "is_less_than": "less_than",
    "before": "less_than",
    "is_before": "less_than",
}
_NO_VALUE_OPERATORS: Final = frozenset({"is_set", "is_not_set"})
_SEPARATORS = re.compile(r"[\s\-]+")


class SegmentError(ValueError):
    """A bundle that cannot be a segment; the message names the offending part."""


@dataclass(frozen=True)
class Rule:
    field_id: str
    operator: str  # canonical, one of OPERATORS
    value: str


@dataclass(frozen=True)
class Criterion:
    list_id: str
    operator: str  # "and" | "or"
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Segment:
    operator: str  # "and" | "or"
    criteria: tuple[Criterion, ...]

    @property
    def list_ids(self) -> tuple[str, ...]:
        """The mentioned lists, in first-mention order: the only lists evaluation reads."""
        return tuple(dict.fromkeys(c.list_id for c in self.criteria))


# --------------------------------------------------------------------------- parsing


def normalise_operator(operator: str) -> str | None:
    """The canonical name of a rule operator, or None when it is not one we know."""
    return _ALIASES.get(_SEPARATORS.sub("_", operator.strip().lower()))


def _show(value: object) -> str:
    """A repr short enough for an error message, whatever the caller sent."""
    try:
        text = repr(value)
    except Exception:  # a 5000-digit int, a cyclic or absurdly deep structure
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _combinator(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise SegmentError(f'{where}operator must be "and" or "or", not {_kind(value)}')
    lowered = value.strip().lower()
    if lowered not in ("and", "or"):
        raise SegmentError(f'{where}operator must be "and" or "or", not {_show(value)}')
    return lowered


def _sequence(value: object, what: str, limit: int) -> list[object] | tuple[object, ...]:
    if not isinstance(value, (list, tuple)):
        raise SegmentError(f"{what} must be an array, not {_kind(value)}")
    if len(value) > limit:
        raise SegmentError(f"{what} has {len(value)} entries; at most {limit} are allowed")
    return value


def _name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SegmentError(f"{what} must be a string, not {_kind(value)}")
    name = value.strip()
    if not name:
        raise SegmentError(f"{what} is empty")
    if len(name) > MAX_NAME_CHARS:
        raise SegmentError(f"{what} is longer than {MAX_NAME_CHARS} characters")
    return name


def _list_id(value: object, where: str) -> str:
    if value is None:
        raise SegmentError(f"{where}: list_id is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 63:
            raise SegmentError(f"{where}: list_id is out of range")
        return str(value)
    if isinstance(value, str):
        return _name(value, f"{where}: list_id")
    raise SegmentError(f"{where}: list_id must be an integer or a string, not {_kind(value)}")


def _value(value: object, operator: str, where: str) -> str:
    if value is None and operator in _NO_VALUE_OPERATORS:
        return ""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise SegmentError(f"{where}: value is longer than {MAX_VALUE_CHARS} characters")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 200:
            raise SegmentError(f"{where}: value is too large a number")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SegmentError(f"{where}: value must be a finite number")
        return repr(value)
    if value is None:
        raise SegmentError(f"{where}: value is missing")
    raise SegmentError(f"{where}: value must be a string or a number, not {_kind(value)}")


def _rule(raw: object, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise SegmentError(f"{where}: a rule must be an object, not {_kind(raw)}")
    kind = raw.get("type", "fields")
    if not isinstance(kind, str) or kind.strip().lower() != "fields":
        raise SegmentError(f"{where}: unsupported rule type {_show(kind)} (only 'fields')")
    if "field_id" not in raw:
        raise SegmentError(f"{where}: field_id is missing")
    field_id = _name(raw["field_id"], f"{where}: field_id")
    raw_operator = raw.get("operator")
    if raw_operator is None:
        raise SegmentError(f"{where}: operator is missing")
    if not isinstance(raw_operator, str):
        raise SegmentError(f"{where}: operator must be a string, not {_kind(raw_operator)}")
    operator = normalise_operator(raw_operator)
    if operator is None:
        raise SegmentError(f"{where}: unknown operator {_show(raw_operator)}")
    return Rule(field_id, operator, _value(raw.get("value"), operator, where))


def _criterion(raw: object, where: str) -> Criterion:
    if not isinstance(raw, Mapping):
        raise SegmentError(f"{where}: a criterion must be an object, not {_kind(raw)}")
    list_id = _list_id(raw.get("list_id"), where)
    if "operator" not in raw:
        raise SegmentError(f"{where}: operator is missing")
    operator = _combinator(raw["operator"], f"{where}: ")
    if "rules" not in raw:
        raise SegmentError(f"{where}: rules is missing")
    rules = _sequence(raw["rules"], f"{where}.rules", MAX_RULES)
    return Criterion(
        list_id,
        operator,
        tuple(_rule(rule, f"{where}.rules[{i}]") for i, rule in enumerate(rules)),
    )


def parse_segment(bundle: object) -> Segment:
    """Validate a RulesJsonBundle (decoded, or as JSON text) into a Segment.

    Every failure is a SegmentError naming the offending part, so the API can hand the
    message straight back to the customer; nothing else escapes, whatever the input.
    """
    if isinstance(bundle, (bytes, bytearray)):
        try:
            bundle = bytes(bundle).decode("utf-8")
        except UnicodeDecodeError as error:
            raise SegmentError(f"the bundle is not UTF-8 text: {error.reason}") from None
    if isinstance(bundle, str):
        if len(bundle) > MAX_BUNDLE_CHARS:
            raise SegmentError(f"the bundle is longer than {MAX_BUNDLE_CHARS} characters")
        try:
            bundle = json.loads(bundle)
        except RecursionError:
            raise SegmentError("the bundle is not valid JSON: nested too deeply") from None
        except ValueError as error:
            raise SegmentError(f"the bundle is not valid JSON: {error}") from None
    if not isinstance(bundle, Mapping):
        raise SegmentError(f"the bundle must be an object, not {_kind(bundle)}")
    if "operator" not in bundle:
        raise SegmentError("operator is missing")
    operator = _combinator(bundle["operator"], "")
    if "criteria" not in bundle:
        raise SegmentError("criteria is missing")
    criteria = _sequence(bundle["criteria"], "criteria", MAX_CRITERIA)
    if not criteria:
        raise SegmentError("criteria is empty: a segment needs at least one criterion")
    return Segment(
        operator,
        tuple(_criterion(raw, f"criteria[{i}]") for i, raw in enumerate(criteria)),
    )


def to_bundle(segment: Segment) -> dict[str, object]:
    """The canonical bundle of a segment, e.g. to record in an event.

    ``parse_segment(to_bundle(s)) == s``; list ids stay strings (the parser takes both).
    """
    return {
        "operator": segment.operator,
        "criteria": [
            {
                "list_id": c.list_id,
                "operator": c.operator,
                "rules": [
                    {
                        "type": "fields",
                        "field_id": r.field_id,
                        "operator": r.operator,
                        "value": r.value,
                    }
                    for r in c.rules
                ],
            }
            for c in segment.criteria
        ],
    }


# ----------------------------------------------------------------- values in fields

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)


def parse_number(text: str) -> int | float | None:
    """A decimal number, or None: ``1_000``, ``nan``, ``inf`` and non-ASCII digits are
    not numbers to a subscriber list, even though ``float()`` would take them."""
    text = text.strip()
    if text.isdigit() and text.isascii():  # the common case, without the regex
        try:
            return int(text)
        except ValueError:  # more digits than int() converts
            return None
    if _NUMBER.fullmatch(text) is None:
        return None
    if "." in text or "e" in text or "E" in text:
        number = float(text)
        return number if math.isfinite(number) else None
    try:
        return int(text)
    except ValueError:
        return None


def parse_instant(text: str) -> datetime | None:
    """An ISO date or date-time as an aware UTC datetime, or None."""
    match = _INSTANT.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        instant = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if offset is not None and offset not in "Zz":
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            return None
        shift = timedelta(hours=hours, minutes=minutes)
        try:
            instant = instant - shift if offset[0] == "+" else instant + shift
        except OverflowError:
            return None
    return instant


def _field(fields: Mapping[str, str], key: str) -> str:
    """A field by case-insensitive name; called only when the exact-case key misses."""
    for name, value in fields.items():
        if name.lower() == key:
            if value is None:
                return ""
            return value if type(value) is str else str(value)
    return ""


# ---------------------------------------------------------------------- compilation


def _compile_rule(rule: Rule) -> FieldsPredicate:
    """One closure per rule with its constants prepared once: this runs per subscriber.

    Each closure inlines the exact-case lookup; only a miss (or a non-str value) takes
    the slower case-insensitive path.
    """
    name, key, operator = rule.field_id, rule.field_id.lower(), rule.operator
    c = rule.value.lower()

    if operator == "equals":

        def equals(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return v.lower() == c

        return equals
    if operator == "not_equals":

        def not_equals(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return v.lower() != c

        return not_equals
    if operator == "contains":

        def contains(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return c in v.lower()

        return contains
    if operator == "not_contains":

        def not_contains(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return c not in v.lower()

        return not_contains
    if operator == "begins_with":

        def begins_with(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return v.lower().startswith(c)

        return begins_with
    if operator == "ends_with":

        def ends_with(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return v.lower().endswith(c)

        return ends_with
    if operator in ("is_set", "is_not_set"):
        want = operator == "is_set"

        def is_set(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            return (not v.isspace() and v != "") is want

        return is_set
    if operator in ("greater_than", "less_than"):
        return _compile_order(name, key, rule.value, operator == "greater_than")
    raise SegmentError(f"unknown operator {_show(operator)}")  # a Rule built by hand


def _never(f: Mapping[str, str]) -> bool:
    return False


def _compile_order(name: str, key: str, value: str, greater: bool) -> FieldsPredicate:
    number = parse_number(value)
    if number is not None:
        bound = number

        def numbers(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            n = parse_number(v)
            if n is None:
                return False
            return n > bound if greater else n < bound

        return numbers
    instant = parse_instant(value)
    if instant is not None:
        moment = instant
        # Subscriber dates repeat a lot (signup days, birthdays) and building a datetime
        # is the costliest step of any rule, so each closure memoises its parses; bounded,
        # so a list of unique timestamps costs a cleared dict, not unbounded memory.
        seen: dict[str, datetime | None] = {}

        def instants(f: Mapping[str, str]) -> bool:
            v = f.get(name)
            if type(v) is not str:
                v = _field(f, key)
            try:
                t = seen[v]
            except KeyError:
                if len(seen) >= 100_000:
                    seen.clear()
                t = seen[v] = parse_instant(v)
            if t is None:
                return False
            return t > moment if greater else t < moment

        return instants
    return _never  # the rule's own value is neither: no subscriber can compare to it


def _always(f: Mapping[str, str]) -> bool:
    return True


def _compile_rules(criterion: Criterion) -> FieldsPredicate:
    rules = tuple(_compile_rule(rule) for rule in criterion.rules)
    if not rules:
        return _always
    if len(rules) == 1:
        return rules[0]
    if criterion.operator == "and":

        def all_rules(f: Mapping[str, str]) -> bool:
            return all(rule(f) for rule in rules)

        return all_rules

    def any_rule(f: Mapping[str, str]) -> bool:
        return any(rule(f) for rule in rules)

    return any_rule


def compile_segment(segment: Segment) -> Callable[[Mapping[str, Mapping[str, str]]], bool]:
    """The segment as a predicate on one subscriber's memberships (list id -> the
    subscriber's fields in that list, for the lists it is a member of)."""
    criteria = tuple((c.list_id, _compile_rules(c)) for c in segment.criteria)

    if segment.operator == "and":

        def all_criteria(memberships: Mapping[str, Mapping[str, str]]) -> bool:
            for list_id, holds in criteria:
                fields = memberships.get(list_id)
                if fields is None or not holds(fields):
                    return False
            return True

        return all_criteria

    def any_criterion(memberships: Mapping[str, Mapping[str, str]]) -> bool:
        for list_id, holds in criteria:
            fields = memberships.get(list_id)
            if fields is not None and holds(fields):
                return True
        return False

    return any_criterion


# ----------------------------------------------------------------------- evaluation

_Member = tuple[str, Mapping[str, str]]


def _members(subscribers: Iterable[Mapping[str, str]]) -> dict[str, Mapping[str, str]]:
    """A list's members by identity, first entry winning, in list order."""
    members: dict[str, Mapping[str, str]] = {}
    for subscriber in subscribers:
        email = subscriber.get("EmailAddress")
        if type(email) is not str:
            email = _field(subscriber, "emailaddress")
        email = email.strip().lower()
        if email and email not in members:
            members[email] = subscriber
    return members


def _select(candidates: list[_Member], criterion: Criterion) -> list[_Member]:
    """The candidates a criterion's rules accept.

    Rules run one at a time over the whole candidate list (a comprehension per rule)
    rather than all rules per subscriber: "and" shrinks the list rule by rule and "or"
    stops testing a subscriber once a rule accepted it - the same short-circuit as the
    per-subscriber predicate, without its per-call loop.
    """
    rules = [_compile_rule(rule) for rule in criterion.rules]
    if not rules:
        return candidates
    if criterion.operator == "and":
        for rule in rules:
            if not candidates:
                break
            candidates = [m for m in candidates if rule(m[1])]
        return candidates
    accepted: list[_Member] = []
    for rule in rules:
        rest: list[_Member] = []
        for member in candidates:
            (accepted if rule(member[1]) else rest).append(member)
        candidates = rest
        if not candidates:
            break
    return accepted


def evaluate(segment: Segment, lists: Mapping[str, Iterable[Mapping[str, str]]]) -> list[str]:
    """The audience: lowercased addresses, each once, in first-met order (module doc).

    Equivalent to testing ``compile_segment(segment)`` on every subscriber of the
    mentioned lists, but set-wise: "and" only tests the survivors of the previous
    criteria, "or" only those no criterion has selected yet.
    """
    order = segment.list_ids
    members = {list_id: _members(lists.get(list_id, ())) for list_id in order}
    selected: set[str] = set()
    if segment.operator == "and":
        for i, criterion in enumerate(segment.criteria):
            in_list = members[criterion.list_id]
            if i == 0:
                candidates = list(in_list.items())
            else:
                candidates = [(e, in_list[e]) for e in selected if e in in_list]
            selected = {e for e, _ in _select(candidates, criterion)}
            if not selected:
                return []
        # every selected address is in every mentioned list, so the first list orders them
        return [e for e in members[order[0]] if e in selected]
    for criterion in segment.criteria:
        in_list = members[criterion.list_id]
        if selected:
            candidates = [m for m in in_list.items() if m[0] not in selected]
        else:
            candidates = list(in_list.items())
        selected.update(e for e, _ in _select(candidates, criterion))
    if len(order) == 1:
        return [e for e in members[order[0]] if e in selected]
    return list(dict.fromkeys(e for list_id in order for e in members[list_id] if e in selected))
