"""``python -m bench.segments``: time ``domain.segments.evaluate`` on a million subscribers.

Two overlapping lists (800,000 and 300,000 entries, 100,000 addresses in both, so
1,000,000 distinct subscribers) and a six-rule bundle mixing string, number and date
operators under both combinators: the shape of a real campaign audience. Building the
data is not timed; each of the three timed runs parses and compiles the bundle afresh,
as the planner would.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

from bench.machine import describe, print_table
from domain.segments import evaluate, parse_segment

FIRST_NAMES = (
    *("Anna", "Andreas", "Antoine", "Ben", "Chloé", "Daniel", "Elena", "Emma", "Fatima"),
    *("Félix", "Hannah", "Ivan", "Jonas", "Julia", "Karim", "Laura", "Léa", "Lukas"),
    *("Maria", "Mateo", "Mohammed", "Noah", "Olga", "Paul", "Priya", "Sara", "Sofia"),
    *("Tom", "Yuki", "Zoë"),
)
CITIES = (
    "Berlin",
    "Paris",
    "London",
    "Madrid",
    "Rome",
    "Lisbon",
    "Vienna",
    "Warsaw",
    "New York",
    "São Paulo",
    "Tokyo",
    "Lyon",
    "",  # some subscribers never told us
)
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "gmx.de", "orange.fr", "example.net")


def _rule(field_id: str, operator: str, value: str) -> dict[str, str]:
    return {"type": "fields", "field_id": field_id, "operator": operator, "value": value}


BUNDLE = {
    "operator": "or",
    "criteria": [
        {
            "list_id": 1,
            "operator": "and",
            "rules": [
                _rule("EmailAddress", "contains", "@gmail"),
                _rule("Age", "greater_than", "30"),
                _rule("SignupDate", "greater than", "2022-01-01"),
            ],
        },
        {
            "list_id": 2,
            "operator": "or",
            "rules": [
                _rule("City", "equals", "paris"),
                _rule("FirstName", "begins_with", "an"),
                _rule("SignupDate", "lt", "2016-03-01T00:00:00Z"),
            ],
        },
    ],
}


def build_subscribers(count: int, seed: int = 7) -> list[dict[str, str]]:
    """``count`` subscribers with a realistic spread; vocabulary drawn from small tuples
    by index so a million of them take about a second to build."""
    rng = random.Random(seed)
    names = [rng.choice(FIRST_NAMES) for _ in range(997)]
    cities = [rng.choice(CITIES) for _ in range(991)]
    domains = [rng.choice(DOMAINS) for _ in range(983)]
    ages = [str(rng.randint(16, 90)) for _ in range(977)]
    days = [
        f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        for _ in range(4001)
    ]
    return [
        {
            "EmailAddress": f"{names[i % 997].lower()}.{i}@{domains[i % 983]}",
            "FirstName": names[i % 997],
            "City": cities[i % 991],
            "Age": ages[i % 977],
            "SignupDate": days[i % 4001],
        }
        for i in range(count)
    ]


def lists_of(subscribers: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """List 1 holds the first 80 %, list 2 the last 30 %: a 10 % overlap."""
    count = len(subscribers)
    return {"1": subscribers[: count * 8 // 10], "2": subscribers[count * 7 // 10 :]}


def run(subscribers: int = 1_000_000) -> list[tuple[str, str, str]]:
    lists: Mapping[str, list[dict[str, str]]] = lists_of(build_subscribers(subscribers))
    best = float("inf")
    audience: list[str] = []
    for _ in range(3):
        started = time.perf_counter()
        audience = evaluate(parse_segment(BUNDLE), lists)
        best = min(best, time.perf_counter() - started)
    return [
        (f"segment evaluation over {subscribers:,} subscribers (s)", f"{best:.2f}", "<= 5"),
        ("segment audience size", f"{len(audience):,}", ""),
    ]


if __name__ == "__main__":
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    print_table("Segments", run())
