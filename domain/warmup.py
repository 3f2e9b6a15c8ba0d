"""Warm-up: how much mail a new sending address may carry on each day of its life.

Receivers trust an address by its history; one that starts at full volume looks like a
spammer's fresh address and is throttled or blocked. A warm-up schedule caps an address's
mail per hour and per day, rising step by step until it has no cap. Mail over the cap is
not refused: it waits until the address has room again (see ``engine.delivery.warmup``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class WarmUpStep:
    """From ``from_day`` (day 1 is the first day of warm-up) on: at most ``per_hour`` and
    ``per_day`` messages (0: no cap)."""

    from_day: int
    per_hour: int
    per_day: int


@dataclass(frozen=True)
class WarmUpSchedule:
    steps: tuple[WarmUpStep, ...]  # by from_day, the first from day 1

    def day_of(self, started_on: date, today: date) -> int:
        return max(1, (today - started_on).days + 1)

    def caps(self, day: int) -> tuple[int, int]:
        """``(per_hour, per_day)`` on ``day`` of warm-up; 0 means no cap."""
        current = (0, 0)
        for step in self.steps:
            if step.from_day > day:
                break
            current = (step.per_hour, step.per_day)
        return current

    def finished(self, day: int) -> bool:
        """True once the address has no cap left to grow out of."""
        return self.caps(day) == (0, 0) and bool(self.steps) and day >= self.steps[-1].from_day


# Day 1: 50 an hour, doubling roughly every few days; from day 30 no cap. In line with what
# the big mailbox providers' sender guidelines and the hosted ESPs' warm-up plans advise.
DEFAULT_WARMUP = WarmUpSchedule(
    (
        WarmUpStep(1, 50, 500),
        WarmUpStep(2, 100, 1_000),
        WarmUpStep(3, 200, 2_000),
        WarmUpStep(5, 500, 5_000),
        WarmUpStep(8, 1_000, 10_000),
        WarmUpStep(11, 2_500, 25_000),
        WarmUpStep(15, 5_000, 50_000),
        WarmUpStep(20, 10_000, 100_000),
        WarmUpStep(25, 25_000, 250_000),
        WarmUpStep(30, 0, 0),
    )
)
