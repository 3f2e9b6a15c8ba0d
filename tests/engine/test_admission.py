"""The shedding controller on a clock of the test's own: slow answers refuse a growing
share, a pause does not, and the share falls once answers are quick again."""

from __future__ import annotations

import itertools

from engine.admission import MOST_SHED, SHED_STEP, Admission


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_interval(admission: Admission, clock: Clock, seconds_each: list[float]) -> int:
    """Offer one send per entry, spread evenly over one interval (of half a second, from the
    clock's time); returns how many were admitted."""
    admitted = 0
    for took in seconds_each:
        if admission.admit():
            admitted += 1
            admission.record(took)
        clock.now += 0.5 / len(seconds_each)
    return admitted


def test_a_standing_queue_refuses_a_growing_share_and_quick_sends_lower_it_again() -> None:
    clock = Clock()
    draws = itertools.cycle([n / 64 for n in range(64)])  # an even spread of draws
    admission = Admission(0.030, interval_seconds=0.5, clock=clock, draw=lambda: next(draws))
    assert run_interval(admission, clock, [0.005] * 64) == 64
    assert admission.shed_share == 0.0

    for interval in range(1, 4):  # most sends slow, though some are quick
        run_interval(admission, clock, [0.040] * 40 + [0.002] * 24)
        admission.admit()  # the interval is over: the next send closes it
        assert round(admission.shed_share, 6) == round(SHED_STEP * interval, 6)
    admitted = run_interval(admission, clock, [0.040] * 64)
    assert 40 <= admitted <= 50  # about 30 % refused meanwhile
    assert admission.refused > 0

    for _ in range(100):  # it never refuses everything
        run_interval(admission, clock, [0.040] * 64)
    assert admission.shed_share == MOST_SHED
    assert run_interval(admission, clock, [0.040] * 64) > 0

    shares = []
    for _ in range(20):  # quick again: the share falls by half a step an interval
        run_interval(admission, clock, [0.005] * 64)
        shares.append(admission.shed_share)
    assert shares == sorted(shares, reverse=True)
    assert shares[-1] == 0.0


def test_a_pause_that_slows_some_sends_refuses_none() -> None:
    clock = Clock()
    admission = Admission(0.030, clock=clock, draw=lambda: 0.0)
    for _ in range(10):
        run_interval(admission, clock, [0.005] * 44 + [0.200] * 20)
    assert admission.shed_share == 0.0
    assert admission.refused == 0


def test_a_target_of_zero_admits_everything() -> None:
    clock = Clock()
    admission = Admission(0.0, clock=clock, draw=lambda: 0.0)
    for _ in range(10):
        assert run_interval(admission, clock, [5.0] * 10) == 10
