from __future__ import annotations

import pytest

from engine.rate_limit import Rate, RateLimiter, seconds_to_wait


def test_rules_parse() -> None:
    assert Rate.parse("100/second") == Rate(100, 1.0)
    assert Rate.parse("5 per minute") == Rate(5, 60.0)
    assert Rate.parse("2/hours") == Rate(2, 3600.0)
    for bad in ("", "0/second", "ten/second", "5/fortnight"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_a_burst_of_the_full_amount_then_one_per_interval() -> None:
    limiter = RateLimiter(Rate(3, 60.0))
    assert [limiter.acquire("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("k", now=0.0)
    assert wait == pytest.approx(20.0)
    assert seconds_to_wait(wait) == 20
    assert limiter.acquire("k", now=19.9) > 0
    assert limiter.acquire("k", now=20.0) == 0.0
    assert limiter.acquire("k", now=20.0) > 0


def test_keys_are_independent_and_refusals_are_not_counted() -> None:
    limiter = RateLimiter(Rate(1, 1.0))
    assert limiter.acquire("a", now=0.0) == 0.0
    for _ in range(100):
        assert limiter.acquire("a", now=0.5) > 0
    assert limiter.acquire("b", now=0.5) == 0.0
    assert limiter.acquire("a", now=1.0) == 0.0


def test_idle_keys_are_forgotten() -> None:
    limiter = RateLimiter(Rate(10, 1.0))
    for n in range(1000):
        limiter.acquire(f"key{n}", now=0.0)
    limiter.acquire("late", now=10.0)
    assert len(limiter._empty_at) == 1


def test_waiting_is_read_without_being_counted() -> None:
    limiter = RateLimiter(Rate(2, 60.0))
    for _ in range(10):
        assert limiter.wait("k", now=0.0) == 0.0  # looking spends nothing
    limiter.acquire("k", now=0.0)
    limiter.acquire("k", now=0.0)
    assert limiter.wait("k", now=0.0) == pytest.approx(30.0)
    assert limiter.acquire("k", now=0.0) == pytest.approx(30.0)
    assert limiter.wait("k", now=30.0) == 0.0
