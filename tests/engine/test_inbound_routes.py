"""Which inbound route takes an address: its kinds, and the bound on a pattern's cost."""

from __future__ import annotations

import uuid

import pytest

from domain.inbound import MatchKind, RouteAction
from engine.inbound.routes import RouteView, _compiled

pytestmark = pytest.mark.unit


def _route(kind: MatchKind, expression: str) -> RouteView:
    pattern = _compiled(expression) if kind is MatchKind.PATTERN else None
    return RouteView(
        id=uuid.uuid4(), account_id=uuid.uuid4(), domain_id=uuid.uuid4(), kind=kind,
        expression=expression, action=RouteAction.STORE, webhook_id=None, forward_to=(),
        pattern=pattern,
    )  # fmt: skip


def test_an_address_route_takes_that_address_in_any_case() -> None:
    route = _route(MatchKind.ADDRESS, "support@in.shop.example")
    assert route.matches("Support@IN.shop.example")
    assert not route.matches("sales@in.shop.example")


def test_a_pattern_matches_the_whole_address_without_regard_to_case() -> None:
    route = _route(MatchKind.PATTERN, r"ticket-\d+@in\.shop\.example")
    assert route.matches("TICKET-42@in.shop.example")
    assert not route.matches("ticket-42@in.shop.example.evil")
    assert not route.matches("my-ticket-42@in.shop.example")


@pytest.mark.parametrize(
    ("pattern", "address"),
    [(r"(a|aa)+$", "a" * 5000 + "b@x.example"), (r"(\w+\s?)+$", "x" * 5000 + "!@x.example")],
)
def test_a_pattern_that_backtracks_without_end_gives_up_in_time(pattern: str, address: str) -> None:
    # Without the limit each would run for longer than the suite: ending is the proof.
    assert not _route(MatchKind.PATTERN, pattern).matches(address)
