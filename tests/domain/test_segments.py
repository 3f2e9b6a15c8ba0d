"""Audience segments from a RulesJsonBundle: parsing, operators, semantics, robustness.

The property tests compare ``evaluate`` with ``reference_audience`` below: a
deliberately plain, loop-by-loop evaluator written from the module's documented
semantics, sharing nothing with the implementation but ``parse_segment``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from domain.segments import (
    MAX_CRITERIA,
    MAX_RULES,
    OPERATORS,
    Criterion,
    Rule,
    Segment,
    SegmentError,
    compile_segment,
    evaluate,
    normalise_operator,
    parse_segment,
    to_bundle,
)

SEED_BUNDLE: dict[str, Any] = {
    "operator": "or",
    "criteria": [
        {
            "list_id": 1,
            "operator": "and",
            "rules": [
                {
                    "type": "fields",
                    "field_id": "EmailAddress",
                    "operator": "contains",
                    "value": "user1",
                },
                {
                    "type": "fields",
                    "field_id": "EmailAddress",
                    "operator": "contains",
                    "value": ".net",
                },
            ],
        },
        {
            "list_id": 2,
            "operator": "or",
            "rules": [
                {
                    "type": "fields",
                    "field_id": "EmailAddress",
                    "operator": "contains",
                    "value": "@test",
                },
                {
                    "type": "fields",
                    "field_id": "EmailAddress",
                    "operator": "contains",
                    "value": "@gmail",
                },
            ],
        },
    ],
}


def bundle(*criteria: object, operator: str = "or") -> dict[str, Any]:
    """Loosely typed on purpose: the refusal tests pass garbage through it."""
    return {"operator": operator, "criteria": list(criteria)}


def criterion(list_id: object, *rules: object, operator: str = "and") -> dict[str, Any]:
    return {"list_id": list_id, "operator": operator, "rules": list(rules)}


def rule(field_id: str, operator: str, value: object = "") -> dict[str, Any]:
    return {"type": "fields", "field_id": field_id, "operator": operator, "value": value}


def matches(operator: str, value: str, fields: dict[str, str]) -> bool:
    """Whether a one-rule segment on list 1 selects a subscriber with these fields."""
    segment = parse_segment(bundle(criterion(1, rule("Field", operator, value))))
    return evaluate(segment, {"1": [{"EmailAddress": "a@x.org", **fields}]}) == ["a@x.org"]


# --- the seed's example ------------------------------------------------------------------


def test_the_documented_example_bundle() -> None:
    segment = parse_segment(SEED_BUNDLE)
    assert segment == Segment(
        "or",
        (
            Criterion(
                "1",
                "and",
                (
                    Rule("EmailAddress", "contains", "user1"),
                    Rule("EmailAddress", "contains", ".net"),
                ),
            ),
            Criterion(
                "2",
                "or",
                (
                    Rule("EmailAddress", "contains", "@test"),
                    Rule("EmailAddress", "contains", "@gmail"),
                ),
            ),
        ),
    )
    lists = {
        "1": [
            {"EmailAddress": "User1@Example.NET"},  # both rules
            {"EmailAddress": "user1@example.com"},  # only one
            {"EmailAddress": "user2@example.net"},
            {"EmailAddress": "someone@gmail.com"},  # list 2's rules, but this is list 1
        ],
        "2": [
            {"EmailAddress": "x@test.org"},
            {"EmailAddress": "y@GMAIL.com"},
            {"EmailAddress": "z@yahoo.com"},
            {"EmailAddress": "user1@example.com"},  # not list 2's rules
        ],
        "3": [{"EmailAddress": "never@test.org"}],  # not mentioned
    }
    assert evaluate(segment, lists) == ["user1@example.net", "x@test.org", "y@gmail.com"]


def test_the_bundle_may_come_as_json_text_or_bytes() -> None:
    text = json.dumps(SEED_BUNDLE)
    assert parse_segment(text) == parse_segment(SEED_BUNDLE)
    assert parse_segment(text.encode()) == parse_segment(SEED_BUNDLE)


# --- operators ---------------------------------------------------------------------------

OPERATOR_EXAMPLES = [
    # (operator, rule value, field value or None for missing, expected)
    ("equals", "Paris", "paris", True),
    ("equals", "Paris", "Paris ", False),
    ("equals", "", None, True),
    ("equals", "x", None, False),
    ("not_equals", "Paris", "Lyon", True),
    ("not_equals", "Paris", "PARIS", False),
    ("not_equals", "Paris", None, True),
    ("contains", "AR", "Paris", True),
    ("contains", "ris!", "Paris", False),
    ("contains", "", None, True),
    ("contains", "a", None, False),
    ("not_contains", "xyz", "Paris", True),
    ("not_contains", "ARI", "Paris", False),
    ("not_contains", "anything", None, True),
    ("begins_with", "pa", "Paris", True),
    ("begins_with", "ar", "Paris", False),
    ("ends_with", "IS", "Paris", True),
    ("ends_with", "par", "Paris", False),
    ("is_set", "", "x", True),
    ("is_set", "", " \t ", False),
    ("is_set", "", "", False),
    ("is_set", "", None, False),
    ("is_not_set", "", None, True),
    ("is_not_set", "", "  ", True),
    ("is_not_set", "", "0", False),
    ("greater_than", "30", "31", True),
    ("greater_than", "30", "30", False),
    ("greater_than", "30", "30.5", True),
    ("greater_than", "30", " 100 ", True),  # numbers are compared numerically, not as text
    ("greater_than", "9", "10", True),
    ("greater_than", "-1.5", "-1", True),
    ("greater_than", "1e3", "1001", True),
    ("greater_than", "30", "abc", False),
    ("greater_than", "30", None, False),
    ("greater_than", "30", "1_000", False),
    ("greater_than", "30", "inf", False),
    ("greater_than", "30", "nan", False),
    ("greater_than", "30", "٣١", False),  # non-ASCII digits are text
    ("greater_than", "abc", "abd", False),  # neither numbers nor dates: no ordering
    ("less_than", "30", "29.99", True),
    ("less_than", "30", "30", False),
    ("less_than", "0", "-0.5", True),
    ("greater_than", "2024-01-01", "2024-01-02", True),
    ("greater_than", "2024-01-01", "2024-01-01", False),
    ("greater_than", "2024-01-01", "2024-01-01 00:00:01", True),
    ("greater_than", "2024-01-01", "2023-12-31T23:59:59Z", False),
    ("less_than", "2024-01-01T09:00Z", "2024-01-01T10:00:00+02:00", True),  # 08:00 UTC
    ("less_than", "2024-01-01T09:00:00-01:00", "2024-01-01T09:30", True),  # 10:00 UTC
    ("greater_than", "2024-01-01 12:00", "2024-01-01T12:00:00.5", True),
    ("less_than", "2024-01-01T12:00:00.40", "2024-01-01T12:00:00.5", False),  # .5 s > .40 s
    ("greater_than", "2024-01-01T12:00:00.40", "2024-01-01T12:00:00.400001", True),
    ("greater_than", "2024-01-01", "2024-02-30", False),  # not a date
    ("greater_than", "2024-01-01", "2024-1-2", False),
    ("greater_than", "2024-01-01", "20240102", False),  # a number and a date never compare
    ("greater_than", "2024", "2024-01-02", False),
]


@pytest.mark.parametrize(("operator", "value", "field", "expected"), OPERATOR_EXAMPLES)
def test_operator(operator: str, value: str, field: str | None, expected: bool) -> None:
    fields = {} if field is None else {"Field": field}
    assert matches(operator, value, fields) is expected


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("not equals", "not_equals"),
        ("Does Not Contain", "not_contains"),
        ("begins with", "begins_with"),
        ("ends-with", "ends_with"),
        ("is set", "is_set"),
        ("is  not   set", "is_not_set"),
        ("greater than", "greater_than"),
        ("less than", "less_than"),
        ("GT", "greater_than"),
        ("lt", "less_than"),
        ("=", "equals"),
        ("!=", "not_equals"),
        ("CONTAINS", "contains"),
        ("starts with", "begins_with"),
    ],
)
def test_operator_spellings_normalise(spelling: str, canonical: str) -> None:
    assert normalise_operator(spelling) == canonical
    parsed = parse_segment(bundle(criterion(1, rule("f", spelling, "v"))))
    assert parsed.criteria[0].rules[0].operator == canonical


def test_every_canonical_operator_is_its_own_spelling() -> None:
    for operator in OPERATORS:
        assert normalise_operator(operator) == operator


def test_is_set_needs_no_value() -> None:
    raw = bundle(criterion(1, {"field_id": "City", "operator": "is set"}))
    assert parse_segment(raw).criteria[0].rules[0] == Rule("City", "is_set", "")
    raw = bundle(criterion(1, {"field_id": "City", "operator": "is_not_set", "value": None}))
    assert parse_segment(raw).criteria[0].rules[0] == Rule("City", "is_not_set", "")


def test_numeric_rule_values_become_text() -> None:
    raw = bundle(criterion("7", rule("Age", "gt", 30), rule("Score", "lt", 2.5)))
    segment = parse_segment(raw)
    assert segment.criteria[0].list_id == "7"
    assert [r.value for r in segment.criteria[0].rules] == ["30", "2.5"]


# --- semantics ---------------------------------------------------------------------------


def test_field_names_match_case_insensitively() -> None:
    segment = parse_segment(bundle(criterion(1, rule("emailaddress", "ends_with", ".ORG"))))
    lists = {"1": [{"EMAILADDRESS": "A@X.org"}, {"EmailAddress": "b@x.com"}]}
    assert evaluate(segment, lists) == ["a@x.org"]
    assert matches("equals", "lyon", {"CITY": "Lyon"}) is False  # "Field" is the rule's field
    segment = parse_segment(bundle(criterion(1, rule("city", "equals", "lyon"))))
    assert evaluate(segment, {"1": [{"EmailAddress": "a@x.org", "CITY": "Lyon"}]}) == ["a@x.org"]


def test_an_exact_case_key_wins_over_another_spelling() -> None:
    segment = parse_segment(bundle(criterion(1, rule("City", "equals", "lyon"))))
    member = {"EmailAddress": "a@x.org", "city": "Paris", "City": "Lyon"}
    assert evaluate(segment, {"1": [member]}) == ["a@x.org"]


def test_a_criterion_is_false_for_non_members_of_its_list() -> None:
    # "not_contains" would hold on anyone's missing field, but only list 1 is asked
    segment = parse_segment(bundle(criterion(1, rule("City", "not_contains", "zzz"))))
    lists = {"1": [{"EmailAddress": "in@x.org"}], "2": [{"EmailAddress": "out@x.org"}]}
    assert evaluate(segment, lists) == ["in@x.org"]
    predicate = compile_segment(segment)
    assert predicate({"1": {"EmailAddress": "in@x.org"}})
    assert not predicate({"2": {"EmailAddress": "out@x.org"}})
    assert not predicate({})


def test_an_empty_rule_list_selects_the_whole_list() -> None:
    segment = parse_segment(bundle(criterion(1), criterion(2, operator="or")))
    lists = {"1": [{"EmailAddress": "a@x.org"}], "2": [{"EmailAddress": "b@x.org"}]}
    assert evaluate(segment, lists) == ["a@x.org", "b@x.org"]


def test_and_at_the_top_requires_every_list() -> None:
    segment = parse_segment(
        bundle(
            criterion(1, rule("City", "equals", "Paris")),
            criterion(2, rule("Plan", "equals", "gold")),
            operator="and",
        )
    )
    lists = {
        "1": [
            {"EmailAddress": "both@x.org", "City": "Paris"},
            {"EmailAddress": "only-one@x.org", "City": "Paris"},
            {"EmailAddress": "wrong-city@x.org", "City": "Lyon"},
        ],
        "2": [
            {"EmailAddress": "wrong-city@x.org", "Plan": "gold"},
            {"EmailAddress": "BOTH@x.org", "Plan": "GOLD"},
            {"EmailAddress": "only-two@x.org", "Plan": "gold"},
        ],
    }
    assert evaluate(segment, lists) == ["both@x.org"]


def test_each_criterion_reads_the_fields_of_its_own_list() -> None:
    segment = parse_segment(
        bundle(
            criterion(1, rule("City", "equals", "Paris")),
            criterion(2, rule("City", "equals", "Lyon")),
            operator="and",
        )
    )
    lists = {
        "1": [{"EmailAddress": "a@x.org", "City": "Paris"}],
        "2": [{"EmailAddress": "a@x.org", "City": "Lyon"}],
    }
    assert evaluate(segment, lists) == ["a@x.org"]


def test_audience_order_is_first_met_and_deduplicated() -> None:
    segment = parse_segment(
        bundle(
            criterion(2, rule("Tag", "equals", "yes")),
            criterion(1, rule("Tag", "equals", "yes")),
        )
    )
    lists = {
        "1": [{"EmailAddress": "c@x.org", "Tag": "yes"}, {"EmailAddress": "b@x.org", "Tag": "no"}],
        "2": [
            {"EmailAddress": "b@x.org", "Tag": "yes"},
            {"EmailAddress": "a@x.org", "Tag": "yes"},
            {"EmailAddress": " A@X.ORG ", "Tag": "yes"},
            {"EmailAddress": "c@x.org", "Tag": "no"},  # met here first, selected via list 1
        ],
    }
    assert evaluate(segment, lists) == ["b@x.org", "a@x.org", "c@x.org"]


def test_a_repeated_address_in_one_list_is_its_first_entry() -> None:
    segment = parse_segment(bundle(criterion(1, rule("Tag", "equals", "yes"))))
    lists = {
        "1": [{"EmailAddress": "a@x.org", "Tag": "no"}, {"EmailAddress": "A@x.org", "Tag": "yes"}]
    }
    assert evaluate(segment, lists) == []


def test_members_without_an_address_are_ignored() -> None:
    segment = parse_segment(bundle(criterion(1)))
    assert evaluate(segment, {"1": [{"EmailAddress": "  "}, {"FirstName": "x"}]}) == []


def test_a_mentioned_list_missing_from_the_data_is_empty() -> None:
    segment = parse_segment(bundle(criterion(1), criterion(9)))
    assert evaluate(segment, {"1": [{"EmailAddress": "a@x.org"}]}) == ["a@x.org"]
    assert evaluate(parse_segment(bundle(criterion(1), criterion(9), operator="and")), {}) == []


class Untouchable(Mapping[str, Iterable[Mapping[str, str]]]):
    """Lists where only the allowed ones may be read."""

    def __init__(self, allowed: dict[str, list[dict[str, str]]]) -> None:
        self.allowed = allowed

    def __getitem__(self, key: str) -> list[dict[str, str]]:
        if key not in self.allowed:
            raise AssertionError(f"list {key} was read")
        return self.allowed[key]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the lists were enumerated")

    def __len__(self) -> int:
        raise AssertionError("the lists were counted")

    def __contains__(self, key: object) -> bool:
        return key in self.allowed


def test_only_the_mentioned_lists_are_read() -> None:
    segment = parse_segment(bundle(criterion(1), criterion("2")))
    lists = Untouchable({"1": [{"EmailAddress": "a@x.org"}], "2": [{"EmailAddress": "b@x.org"}]})
    assert evaluate(segment, lists) == ["a@x.org", "b@x.org"]


def test_non_text_field_values_are_read_as_text() -> None:
    segment = parse_segment(bundle(criterion(1, rule("Age", "greater_than", "30"))))
    member: dict[str, Any] = {"EmailAddress": "a@x.org", "Age": 31}
    assert evaluate(segment, {"1": [member]}) == ["a@x.org"]


# --- invalid bundles ---------------------------------------------------------------------

GOOD_RULE = rule("City", "equals", "Paris")

INVALID = [
    ([], "the bundle must be an object, not an array"),
    ("[]", "the bundle must be an object, not an array"),
    (None, "the bundle must be an object, not null"),
    (42, "the bundle must be an object, not a number"),
    ("{not json", "the bundle is not valid JSON"),
    (b"\xff\xfe", "the bundle is not UTF-8 text"),
    ({"criteria": [criterion(1)]}, "operator is missing"),
    (bundle(criterion(1), operator="xor"), 'operator must be "and" or "or", not \'xor\''),
    ({"operator": 1, "criteria": [criterion(1)]}, 'operator must be "and" or "or", not a number'),
    ({"operator": "or"}, "criteria is missing"),
    ({"operator": "or", "criteria": {}}, "criteria must be an array, not an object"),
    (bundle(), "criteria is empty"),
    (bundle("x"), "criteria[0]: a criterion must be an object, not a string"),
    (bundle({"operator": "and", "rules": []}), "criteria[0]: list_id is missing"),
    (bundle(criterion(True)), "criteria[0]: list_id must be an integer or a string, not a boolean"),
    (bundle(criterion(1.5)), "criteria[0]: list_id must be an integer or a string, not a number"),
    (bundle(criterion(" ")), "criteria[0]: list_id is empty"),
    (bundle(criterion(2**80)), "criteria[0]: list_id is out of range"),
    (bundle({"list_id": 1, "rules": []}), "criteria[0]: operator is missing"),
    (
        bundle(criterion(1, operator="nand")),
        'criteria[0]: operator must be "and" or "or", not \'nand\'',
    ),
    (bundle({"list_id": 1, "operator": "or"}), "criteria[0]: rules is missing"),
    (
        bundle({"list_id": 1, "operator": "or", "rules": "x"}),
        "criteria[0].rules must be an array, not a string",
    ),
    (
        bundle(criterion(1), criterion(2, GOOD_RULE, 7)),
        "criteria[1].rules[1]: a rule must be an object, not a number",
    ),
    (
        bundle(criterion(1), criterion(2, rule("City", "foo", "x"))),
        "criteria[1].rules[0]: unknown operator 'foo'",
    ),
    (
        bundle(criterion(1, {"field_id": "City", "value": "x"})),
        "criteria[0].rules[0]: operator is missing",
    ),
    (
        bundle(criterion(1, {"field_id": "City", "operator": ["eq"]})),
        "criteria[0].rules[0]: operator must be a string, not an array",
    ),
    (
        bundle(criterion(1, {"operator": "equals", "value": "x"})),
        "criteria[0].rules[0]: field_id is missing",
    ),
    (bundle(criterion(1, rule("", "equals", "x"))), "criteria[0].rules[0]: field_id is empty"),
    (
        bundle(criterion(1, {"field_id": 3, "operator": "eq", "value": "x"})),
        "criteria[0].rules[0]: field_id must be a string, not a number",
    ),
    (
        bundle(criterion(1, {"field_id": "City", "operator": "contains"})),
        "criteria[0].rules[0]: value is missing",
    ),
    (
        bundle(criterion(1, rule("City", "contains", {"a": 1}))),
        "criteria[0].rules[0]: value must be a string or a number, not an object",
    ),
    (
        bundle(criterion(1, rule("City", "contains", True))),
        "criteria[0].rules[0]: value must be a string or a number, not a boolean",
    ),
    (
        bundle(criterion(1, rule("City", "gt", float("nan")))),
        "criteria[0].rules[0]: value must be a finite number",
    ),
    (
        bundle(criterion(1, rule("City", "gt", 10**100))),
        "criteria[0].rules[0]: value is too large a number",
    ),
    (
        bundle(criterion(1, {**GOOD_RULE, "type": "tags"})),
        "criteria[0].rules[0]: unsupported rule type 'tags' (only 'fields')",
    ),
    (
        bundle(*[criterion(i) for i in range(MAX_CRITERIA + 1)]),
        f"criteria has {MAX_CRITERIA + 1} entries; at most {MAX_CRITERIA}",
    ),
    (
        bundle(criterion(1, *[GOOD_RULE] * (MAX_RULES + 1))),
        f"criteria[0].rules has {MAX_RULES + 1} entries",
    ),
    (
        bundle(criterion(1, rule("City", "contains", "x" * 20_000))),
        "criteria[0].rules[0]: value is longer than",
    ),
    (
        bundle(criterion(1, rule("x" * 500, "contains", "x"))),
        "criteria[0].rules[0]: field_id is longer than",
    ),
    (
        '{"operator": "or", "criteria": [{"list_id": ' + "1" * 5000 + "}]}",
        "the bundle is not valid JSON",
    ),
    ("[" * 100_000 + "]" * 100_000, "the bundle is not valid JSON"),
    (" " * 1_000_001, "the bundle is longer than 1000000 characters"),
]


@pytest.mark.parametrize(("raw", "message"), INVALID)
def test_invalid_bundles_are_refused_with_a_clear_message(raw: object, message: str) -> None:
    with pytest.raises(SegmentError) as refused:
        parse_segment(raw)
    assert message in str(refused.value)


def test_an_unknown_operator_names_its_place() -> None:
    raw = bundle(criterion(1, GOOD_RULE), criterion(2, rule("City", "foo", "x")))
    with pytest.raises(
        SegmentError, match=re.escape("criteria[1].rules[0]: unknown operator 'foo'")
    ):
        parse_segment(raw)


def test_deep_python_structures_are_refused_without_recursing() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SegmentError, match="must be an object, not an array"):
        parse_segment({"operator": "or", "criteria": deep})
    cyclic: dict[str, object] = {"operator": "or"}
    cyclic["criteria"] = [cyclic]
    with pytest.raises(SegmentError, match=re.escape("criteria[0]: list_id is missing")):
        parse_segment(cyclic)
    with pytest.raises(SegmentError, match="unsupported rule type <int>"):
        parse_segment(bundle(criterion(1, {**GOOD_RULE, "type": 10**5000})))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(["operator", "criteria", "list_id", "rules", "field_id", "value", "type"])
NEAR_BUNDLE = st.recursive(
    st.sampled_from(["and", "or", "contains", "gt", "fields", "", 1, "1", None]) | JSON,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, NEAR_BUNDLE, NEAR_BUNDLE.map(lambda b: json.dumps(b)), st.text(max_size=50)))
def test_garbage_is_a_segment_or_a_segment_error_never_anything_else(raw: object) -> None:
    try:
        segment = parse_segment(raw)
    except SegmentError as error:
        assert str(error)
    else:
        assert isinstance(segment, Segment)
        assert parse_segment(to_bundle(segment)) == segment


# --- the reference evaluator -------------------------------------------------------------


def ref_field(subscriber: Mapping[str, str], name: str) -> str:
    if name in subscriber:
        return str(subscriber[name])
    for key in subscriber:
        if key.lower() == name.lower():
            return str(subscriber[key])
    return ""


def ref_number(text: str) -> Decimal | None:
    text = text.strip()
    if not text or any(ch not in "0123456789+-.eE" for ch in text):
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() and abs(number) < Decimal("1e300") else None


def ref_instant(text: str) -> datetime | None:
    text = text.strip()
    date, rest = text[:10], text[10:]
    if len(date) != 10 or date[4] != "-" or date[7] != "-":
        return None
    if not (date[:4] + date[5:7] + date[8:]).isdecimal() or not date.isascii():
        return None
    time, offset = "00:00:00", "+00:00"
    if rest:
        if rest[0] not in "Tt ":
            return None
        rest = rest[1:]
        if rest[-1:] in ("Z", "z"):
            rest = rest[:-1]
        elif len(rest) > 6 and rest[-6] in "+-":
            offset, rest = rest[-6:], rest[:-6]
            if not (offset[1:3] + offset[4:]).isdecimal() or offset[3] != ":":
                return None
            if int(offset[4:]) > 59:
                return None
        pieces = rest.split(":")
        if len(pieces) not in (2, 3) or any(len(p) != 2 for p in pieces[:2]):
            return None
        seconds = pieces[2] if len(pieces) == 3 else "00"
        whole, _, fraction = seconds.partition(".")
        if len(whole) != 2 or ("." in seconds and not 1 <= len(fraction) <= 6):
            return None
        if not all((p.isdecimal() and p.isascii()) for p in [*pieces[:2], whole]):
            return None
        if fraction and not (fraction.isdecimal() and fraction.isascii()):
            return None
        time = f"{pieces[0]}:{pieces[1]}:{whole}" + (
            f".{fraction.ljust(6, '0')}" if fraction else ""
        )
    try:
        return datetime.fromisoformat(f"{date}T{time}{offset}")
    except ValueError:
        return None


def ref_rule(r: Rule, subscriber: Mapping[str, str]) -> bool:
    value = ref_field(subscriber, r.field_id)
    if r.operator == "equals":
        return value.lower() == r.value.lower()
    if r.operator == "not_equals":
        return value.lower() != r.value.lower()
    if r.operator == "contains":
        return r.value.lower() in value.lower()
    if r.operator == "not_contains":
        return r.value.lower() not in value.lower()
    if r.operator == "begins_with":
        return value.lower().startswith(r.value.lower())
    if r.operator == "ends_with":
        return value.lower().endswith(r.value.lower())
    if r.operator == "is_set":
        return value.strip() != ""
    if r.operator == "is_not_set":
        return value.strip() == ""
    mine_n, theirs_n = ref_number(value), ref_number(r.value)
    if mine_n is not None and theirs_n is not None:
        return mine_n > theirs_n if r.operator == "greater_than" else mine_n < theirs_n
    mine_d, theirs_d = ref_instant(value), ref_instant(r.value)
    if mine_d is not None and theirs_d is not None:
        return mine_d > theirs_d if r.operator == "greater_than" else mine_d < theirs_d
    return False


def ref_criterion(c: Criterion, memberships: dict[str, Mapping[str, str]]) -> bool:
    if c.list_id not in memberships:
        return False
    results = [ref_rule(r, memberships[c.list_id]) for r in c.rules]
    if not results:
        return True
    return all(results) if c.operator == "and" else any(results)


def reference_memberships(
    segment: Segment, lists: Mapping[str, list[dict[str, str]]]
) -> tuple[list[str], dict[str, dict[str, Mapping[str, str]]]]:
    list_order: list[str] = []
    for c in segment.criteria:
        if c.list_id not in list_order:
            list_order.append(c.list_id)
    emails: list[str] = []
    memberships: dict[str, dict[str, Mapping[str, str]]] = {}
    for list_id in list_order:
        for subscriber in lists.get(list_id, []):
            email = ref_field(subscriber, "EmailAddress").strip().lower()
            if email == "":
                continue
            if email not in memberships:
                memberships[email] = {}
                emails.append(email)
            if list_id not in memberships[email]:
                memberships[email][list_id] = subscriber
    return emails, memberships


def reference_audience(segment: Segment, lists: Mapping[str, list[dict[str, str]]]) -> list[str]:
    emails, memberships = reference_memberships(segment, lists)
    audience = []
    for email in emails:
        results = [ref_criterion(c, memberships[email]) for c in segment.criteria]
        if all(results) if segment.operator == "and" else any(results):
            audience.append(email)
    return audience


def test_the_reference_agrees_with_the_examples() -> None:
    for operator, value, field, expected in OPERATOR_EXAMPLES:
        fields = {} if field is None else {"Field": field}
        r = parse_segment(bundle(criterion(1, rule("Field", operator, value)))).criteria[0].rules[0]
        assert ref_rule(r, fields) is expected, (operator, value, field)


# --- property: evaluate == reference -----------------------------------------------------


def random_case(draw: st.DrawFn, name: str) -> str:
    return draw(st.sampled_from([name, name, name.lower(), name.upper(), name.swapcase()]))


# Small pools, so that rules and fields often meet on equal, bordering or blank values,
# and instants written differently (offsets, fractions, a bare date) that compare equal.
TEXT = st.text(alphabet="aB. ", max_size=2)
NUMBER = st.one_of(
    st.integers(-2, 2).map(str),
    st.decimals(-2, 2, places=1, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e0", "-2.0E0", ".5", "1.", " 1 ", "+1", "1_0", "nan", "inf", "0x1", ""]),
)
INSTANT = st.one_of(
    st.builds(
        lambda day, time: day + time,
        st.sampled_from(["2024-01-01", "2024-01-02"]),
        st.sampled_from(
            ["", "T00:00", " 00:00:00", "T02:00+02:00", "t23:30:00-00:30", "T10:00:00.5Z",
             "T10:00:00.40", "T10:00:00.400001+00:00", "T12:00+02:00", "T10:00z"]
        ),
    ),
    st.sampled_from(["2024-13-01", "2024-02-30", "2024-01-01T25:00", "2024-01-01T10:00+24:00",
                     "2024-1-1", "2024-01-01T10:00:00.1234567", ""]),
)  # fmt: skip
EMAIL_PART = st.sampled_from(["a", "B@", "@x", ".org", "GMAIL", "", "a@x.org"])
KIND_OF_FIELD = {"FirstName": TEXT, "City": TEXT, "Age": NUMBER, "Joined": INSTANT}
ANY_VALUE = st.one_of(TEXT, NUMBER, INSTANT)
OPERATOR_SPELLINGS = st.sampled_from(
    [*sorted(OPERATORS), "not equals", "does not contain", "begins with", "ends with", "is set",
     "is not set", "greater than", "less than", "gt", "lt", "=", "!="]
)  # fmt: skip


@st.composite
def subscriber(draw: st.DrawFn) -> dict[str, str]:
    email = draw(st.sampled_from("abc")) + draw(st.sampled_from(["@x.org", "@gmail.com"]))
    address = draw(st.sampled_from([email, email.upper(), f" {email} "]))
    fields = {random_case(draw, "EmailAddress"): address}
    for name, kind in KIND_OF_FIELD.items():
        if draw(st.integers(0, 5)):  # most subscribers have most fields
            fields[random_case(draw, name)] = draw(
                kind | ANY_VALUE if draw(st.booleans()) else kind
            )
    return fields


@st.composite
def random_bundle(draw: st.DrawFn) -> dict[str, Any]:
    def one_rule() -> dict[str, Any]:
        name = draw(st.sampled_from([*KIND_OF_FIELD, "EmailAddress", "Missing"]))
        kind = {**KIND_OF_FIELD, "EmailAddress": EMAIL_PART}.get(name, ANY_VALUE)
        value = draw(kind if draw(st.integers(0, 4)) else ANY_VALUE)
        return rule(random_case(draw, name), draw(OPERATOR_SPELLINGS), value)

    criteria = [
        criterion(
            draw(st.sampled_from([1, 2, "1", "2", 3])),
            *[one_rule() for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3])))],
            operator=draw(st.sampled_from(["and", "or", "AND", "Or"])),
        )
        for _ in range(draw(st.sampled_from([1, 1, 2, 2, 3])))
    ]
    return bundle(*criteria, operator=draw(st.sampled_from(["and", "or"])))


LISTS = st.dictionaries(st.sampled_from(["1", "2", "3"]), st.lists(subscriber(), max_size=6))


POOLS = {"text": TEXT, "number": NUMBER, "instant": INSTANT, "email": EMAIL_PART}


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(POOLS)), OPERATOR_SPELLINGS, st.data())
def test_single_rules_agree_with_the_reference(
    kind: str, operator: str, data: st.DataObject
) -> None:
    """One rule against many values of its kind (and a few others): where operator bugs
    show. Each member has its own address, so the audience lists exactly the matches."""
    value = data.draw(POOLS[kind], label="rule value")
    found = data.draw(st.lists(POOLS[kind] | ANY_VALUE | st.none(), min_size=1, max_size=20))
    members = [
        {
            "EmailAddress": f"m{i}@x.org",
            **({} if v is None else {data.draw(st.sampled_from(["Field", "field", "FIELD"])): v}),
        }
        for i, v in enumerate(found)
    ]
    segment = parse_segment(bundle(criterion(1, rule("Field", operator, value))))
    assert evaluate(segment, {"1": members}) == reference_audience(segment, {"1": members})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_bundle(), LISTS)
def test_evaluate_agrees_with_the_reference(
    raw: dict[str, Any], lists: dict[str, list[dict[str, str]]]
) -> None:
    segment = parse_segment(raw)
    expected = reference_audience(segment, lists)
    target(float(len(expected)))  # steer towards non-trivial audiences
    assert evaluate(segment, lists) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_bundle(), LISTS)
def test_the_compiled_predicate_agrees_with_the_reference(
    raw: dict[str, Any], lists: dict[str, list[dict[str, str]]]
) -> None:
    segment = parse_segment(raw)
    predicate = compile_segment(segment)
    emails, memberships = reference_memberships(segment, lists)
    for email in emails:
        expected = all if segment.operator == "and" else any
        assert predicate(memberships[email]) is expected(
            ref_criterion(c, memberships[email]) for c in segment.criteria
        )


@settings(max_examples=300, deadline=None)
@given(random_bundle())
def test_parsing_is_stable(raw: dict[str, Any]) -> None:
    segment = parse_segment(raw)
    assert parse_segment(raw) == segment
    assert parse_segment(json.dumps(raw)) == segment
    assert parse_segment(to_bundle(segment)) == segment
    assert parse_segment(json.dumps(to_bundle(segment))) == segment
