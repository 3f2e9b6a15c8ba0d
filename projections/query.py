"""``Query`` of ``EmailGateway.GetEvents``: ``field:value`` terms, ANDed, into parameterized
SQL for the ``events`` table. Values are always bound, never spliced into the SQL text.

Terms: ``subject:welcome``, ``recipient:"jane@example.org"``, ``from:news@*``, ``tag:promo``,
``url:*sale*``, ``messageid:<MessageID>``, ``campaignid:<id>``. A value without ``*``
matches as a case-insensitive substring (as a search box does); with ``*`` it is a
wildcard pattern over the whole value. A bare word searches the subject.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

MAX_TERMS = 10
MAX_VALUE = 500

# field name → (SQL expression, whether it is matched exactly)
_FIELDS: dict[str, tuple[str, bool]] = {
    "subject": ("subject", False),
    "recipient": ("recipient", False),
    "to": ("recipient", False),
    "from": ("sender", False),
    "sender": ("sender", False),
    "tag": ("arrayStringConcat(tags, '\\n')", False),
    "url": ("JSONExtractString(details, 'URL')", False),
    "messageid": ("toString(submission_id)", True),
    "message_id": ("toString(submission_id)", True),
    "campaignid": ("campaign_id", True),
    "campaign_id": ("campaign_id", True),
}


class QueryError(ValueError):
    """The query cannot be read; the message says why."""


@dataclass(frozen=True)
class Term:
    field: str
    value: str


def parse_query(text: str) -> list[Term]:
    if len(text) > 2000:
        raise QueryError("the query is too long")
    try:
        words = shlex.split(text, posix=True)
    except ValueError as error:
        raise QueryError(f"the query cannot be read: {error}") from None
    terms: list[Term] = []
    for word in words:
        field, colon, value = word.partition(":")
        if not colon:
            field, value = "subject", word
        field = field.strip().lower().replace(" ", "")
        if field not in _FIELDS:
            raise QueryError(f"unknown field {field[:40]!r}")
        if not value or len(value) > MAX_VALUE or "\x00" in value:
            raise QueryError(f"no usable value for {field}")
        terms.append(Term(field, value))
    if len(terms) > MAX_TERMS:
        raise QueryError(f"at most {MAX_TERMS} terms")
    return terms


def _like(value: str, wildcard: bool) -> str:
    escaped = re.sub(r"([\\%_])", r"\\\1", value)
    if wildcard:
        return escaped.replace("*", "%")
    return f"%{escaped}%"


def query_sql(terms: list[Term]) -> tuple[list[str], dict[str, Any]]:
    """WHERE fragments (fixed text) and their bound parameters."""
    clauses: list[str] = []
    parameters: dict[str, Any] = {}
    for n, term in enumerate(terms):
        expression, exact = _FIELDS[term.field]
        name = f"q{n}"
        if exact and "*" not in term.value:
            clauses.append(f"{expression} = {{{name}:String}}")
            parameters[name] = term.value.strip().lower()
        else:
            clauses.append(f"{expression} ILIKE {{{name}:String}}")
            parameters[name] = _like(term.value, "*" in term.value)
    return clauses, parameters
