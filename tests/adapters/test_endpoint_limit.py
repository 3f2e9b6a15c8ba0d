"""``EndpointLimit``: an adaptive per-endpoint concurrency limit (AIMD on latency).

Latency is simulated with a fake clock put in place of the module's ``time``
(only ``adapters.endpoint_limit`` sees it: the event loop keeps the real one),
so ``release(taken_at, ...)`` sees exactly the latency a test chose. Waiters are
real asyncio tasks blocked in ``acquire``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from adapters import endpoint_limit
from adapters.endpoint_limit import EndpointLimit

# Dyadic numbers, so that latencies computed as ``now - taken_at`` are exact.
START = 1024.0
FAST = 0.0625  # 1/16 s
SLACK = 0.0078125  # 1/128 s
TOLERANCE = 2.0
THRESHOLD = FAST * TOLERANCE + SLACK  # slower than this is "slow" while FAST is the fastest


class FakeClock:
    """Stands in for the ``time`` module inside ``adapters.endpoint_limit``."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(endpoint_limit, "time", fake)
    yield fake


def new_limit(maximum: int = 100, initial: int = 2) -> EndpointLimit:
    return EndpointLimit(maximum, initial=initial, tolerance=TOLERANCE, slack=SLACK)


async def settle() -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def start_waiters(limit: EndpointLimit, count: int) -> list[asyncio.Task[float]]:
    before = limit.waiting
    tasks = [asyncio.create_task(limit.acquire()) for _ in range(count)]
    await settle()
    assert limit.waiting == before + count
    assert not any(task.done() for task in tasks)
    return tasks


def answer(limit: EndpointLimit, clock: FakeClock, latency: float, answered: bool = True) -> None:
    """Release one held slot as if its call took ``latency`` seconds."""
    assert limit.in_use > 0
    limit.release(clock.now - latency, answered=answered)


async def drain(limit: EndpointLimit, tasks: list[asyncio.Task[float]]) -> None:
    """Cancel whatever still waits, so no task outlives its test."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert limit.waiting == 0


# --- Slots -----------------------------------------------------------------------------------


async def test_starts_with_initial_slots_and_the_next_acquire_waits(clock: FakeClock) -> None:
    limit = new_limit(maximum=10)
    assert limit.limit == 2.0
    assert limit.slots == 2

    assert await limit.acquire() == START
    assert await limit.acquire() == START
    assert limit.in_use == 2
    assert limit.waiting == 0

    (third,) = await start_waiters(limit, 1)
    assert limit.in_use == 2

    clock.now += 1.0
    answer(limit, clock, FAST)  # a call waited: slow start makes three slots; it takes one
    assert limit.slots == 3
    assert limit.waiting == 0
    assert limit.in_use == 2
    assert await third == START + 1.0  # the moment the waiter got its slot


@pytest.mark.parametrize(
    ("maximum", "initial", "slots"),
    [(10, 2, 2), (1, 2, 1), (5, 0, 1), (5, -3, 1), (5, 9, 5), (3, 3, 3)],
)
def test_initial_is_clamped_between_one_and_maximum(maximum: int, initial: int, slots: int) -> None:
    limit = EndpointLimit(maximum, initial=initial)
    assert limit.slots == slots
    assert limit.limit == float(slots)
    assert limit.in_use == 0


@pytest.mark.parametrize("maximum", [0, -1])
def test_maximum_below_one_is_refused(maximum: int) -> None:
    with pytest.raises(ValueError, match="maximum must be at least 1"):
        EndpointLimit(maximum)


async def test_fast_answers_never_grow_the_limit_beyond_maximum(clock: FakeClock) -> None:
    limit = new_limit(maximum=4)
    await limit.acquire()
    await limit.acquire()
    waiters = await start_waiters(limit, 30)
    most_in_use = limit.in_use
    for _ in range(20):
        answer(limit, clock, FAST)
        most_in_use = max(most_in_use, limit.in_use)
        assert limit.limit <= 4.0
        assert limit.in_use <= 4
    assert limit.limit == 4.0
    assert limit.slots == 4
    assert most_in_use == 4
    # Each answer passed its slot on, and the two new slots took two more waiters.
    assert limit.waiting == 30 - 20 - 2
    await drain(limit, waiters)


async def test_waiters_get_slots_in_the_order_they_asked(clock: FakeClock) -> None:
    limit = new_limit(maximum=1)  # one slot, whatever the answers
    await limit.acquire()
    order: list[int] = []

    async def call(number: int) -> None:
        await limit.acquire()
        order.append(number)

    tasks = []
    for number in range(6):
        tasks.append(asyncio.create_task(call(number)))
        await asyncio.sleep(0)  # each one queues before the next is created
    await settle()
    assert limit.waiting == 6

    for expected in range(6):
        answer(limit, clock, FAST)
        await settle()
        assert order == list(range(expected + 1))
        assert limit.in_use == 1
    await asyncio.gather(*tasks)
    answer(limit, clock, FAST)
    assert limit.in_use == 0


async def test_a_grown_limit_wakes_the_first_waiters_only(clock: FakeClock) -> None:
    limit = new_limit(maximum=10)
    await limit.acquire()
    await limit.acquire()
    waiters = await start_waiters(limit, 6)

    answer(limit, clock, FAST)  # slow start: 2 -> 3, and one slot was freed: two waiters get in
    await settle()
    assert limit.limit == 3.0
    assert [task.done() for task in waiters] == [True, True, False, False, False, False]
    assert limit.in_use == 3
    assert limit.waiting == 4
    await drain(limit, waiters)


# --- Growth and decrease ---------------------------------------------------------------------


async def test_slow_start_grows_by_one_per_fast_answer_then_additively(clock: FakeClock) -> None:
    limit = new_limit(maximum=100)
    await limit.acquire()
    await limit.acquire()
    waiters = await start_waiters(limit, 60)

    # Slow start: +1 per fast answer while calls wait.
    for expected in (3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        answer(limit, clock, FAST)
        assert limit.limit == expected
    # Answers up to the threshold still count as fast.
    answer(limit, clock, THRESHOLD)
    assert limit.limit == 9.0

    # The first slow answer: multiplicative decrease, and slow start is over.
    answer(limit, clock, THRESHOLD + SLACK)
    assert limit.limit == pytest.approx(9.0 * 0.9)

    # From now on fast answers add 1/limit each (one per limit's worth of answers).
    expected = 9.0 * 0.9
    for _ in range(5):
        answer(limit, clock, FAST)
        expected += 1.0 / expected
        assert limit.limit == pytest.approx(expected)
    assert limit.slots == int(expected) == 8
    assert limit.in_use <= limit.slots
    await drain(limit, waiters)


async def test_fast_answers_without_waiters_do_not_grow_the_limit(clock: FakeClock) -> None:
    limit = new_limit(maximum=100)
    for _ in range(10):
        taken = await limit.acquire()
        clock.now += FAST
        limit.release(taken, answered=True)
    assert limit.limit == 2.0
    assert limit.in_use == 0


async def test_a_slow_answer_multiplies_the_limit_by_0_9(clock: FakeClock) -> None:
    limit = new_limit(maximum=100, initial=10)
    for _ in range(3):
        await limit.acquire()
    answer(limit, clock, FAST)  # sets the fastest answer; no waiters, so no change
    assert limit.limit == 10.0

    answer(limit, clock, THRESHOLD)  # exactly at the threshold: not slow
    assert limit.limit == 10.0
    answer(limit, clock, THRESHOLD + 0.001)
    assert limit.limit == pytest.approx(9.0)
    assert limit.slots == 9
    assert limit.in_use == 0


async def test_tolerance_and_slack_set_the_threshold(clock: FakeClock) -> None:
    limit = EndpointLimit(100, initial=10, tolerance=4.0, slack=0.0)
    for _ in range(3):
        await limit.acquire()
    answer(limit, clock, 0.25)
    answer(limit, clock, 1.0)  # 4 x 0.25: not slow
    assert limit.limit == 10.0
    answer(limit, clock, 1.0 + 2**-20)
    assert limit.limit == pytest.approx(9.0)


async def test_no_answer_halves_the_limit_and_ends_slow_start(clock: FakeClock) -> None:
    limit = new_limit(maximum=100, initial=8)
    for _ in range(8):
        await limit.acquire()
    waiters = await start_waiters(limit, 20)

    answer(limit, clock, 0.001, answered=False)
    assert limit.limit == 4.0
    answer(limit, clock, 5.0, answered=False)  # made before that decrease: the same round
    assert limit.limit == 4.0
    clock.now += 1.0
    answer(limit, clock, 0.5, answered=False)  # made after it: the next round
    assert limit.limit == 2.0

    # Slow start is over: a fast answer adds 1/limit, not 1.
    answer(limit, clock, FAST)
    assert limit.limit == pytest.approx(2.5)
    await drain(limit, waiters)


async def test_the_limit_never_drops_below_one(clock: FakeClock) -> None:
    limit = new_limit(maximum=100, initial=4)
    for _ in range(4):
        await limit.acquire()
    for _ in range(4):
        clock.now += 2.0  # each call made after the last decrease
        answer(limit, clock, 1.0, answered=False)
    assert limit.limit == 1.0
    assert limit.in_use == 0

    for _ in range(30):
        taken = await limit.acquire()
        clock.now += 1.0
        limit.release(taken, answered=False)
    assert limit.limit == 1.0

    # Slow answers too: fast once, then always slow.
    taken = await limit.acquire()
    clock.now += FAST
    limit.release(taken, answered=True)
    for _ in range(30):
        taken = await limit.acquire()
        clock.now += 10.0
        limit.release(taken, answered=True)
    assert limit.limit == 1.0

    # A dead endpoint still gets one call at a time.
    assert limit.slots == 1
    await limit.acquire()
    (waiter,) = await start_waiters(limit, 1)
    answer(limit, clock, 10.0, answered=False)
    await waiter
    assert limit.in_use == 1


# --- Cancellation ----------------------------------------------------------------------------


async def test_a_cancelled_waiter_leaves_no_trace(clock: FakeClock) -> None:
    limit = new_limit(maximum=10)
    await limit.acquire()
    await limit.acquire()
    (waiter,) = await start_waiters(limit, 1)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limit.waiting == 0
    assert limit.in_use == 2

    answer(limit, clock, FAST)
    answer(limit, clock, FAST)
    assert limit.in_use == 0
    await limit.acquire()
    await limit.acquire()
    assert limit.in_use == 2


async def test_a_waiter_that_times_out_leaves_no_trace(clock: FakeClock) -> None:
    limit = new_limit(maximum=10)
    await limit.acquire()
    await limit.acquire()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limit.acquire(), timeout=0.01)
    assert limit.waiting == 0
    assert limit.in_use == 2

    answer(limit, clock, FAST)
    assert limit.in_use == 1
    await asyncio.wait_for(limit.acquire(), timeout=1.0)  # taken at once
    assert limit.in_use == 2


async def test_a_slot_handed_over_as_the_waiter_is_cancelled_is_given_back(
    clock: FakeClock,
) -> None:
    limit = new_limit(maximum=2)
    first = await limit.acquire()
    await limit.acquire()
    (waiter,) = await start_waiters(limit, 1)

    # In one loop iteration: the slot goes to the waiter, then the waiter is cancelled.
    limit.release(first, answered=True)
    assert limit.in_use == 2  # handed over
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert limit.in_use == 1  # the handed-over slot came back
    assert limit.waiting == 0
    await asyncio.wait_for(limit.acquire(), timeout=1.0)
    assert limit.in_use == 2
    answer(limit, clock, FAST)
    answer(limit, clock, FAST)
    assert limit.in_use == 0


async def test_a_slot_handed_to_a_cancelled_waiter_passes_to_the_next(clock: FakeClock) -> None:
    limit = new_limit(maximum=2)
    first = await limit.acquire()
    await limit.acquire()
    doomed, patient = await start_waiters(limit, 2)

    limit.release(first, answered=True)  # maximum reached: one slot, to ``doomed``
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await settle()

    assert patient.done()
    assert not patient.cancelled()
    assert limit.in_use == 2
    assert limit.waiting == 0
    answer(limit, clock, FAST)
    answer(limit, clock, FAST)
    assert limit.in_use == 0


async def test_a_waiter_cancelled_just_before_the_slot_frees_is_skipped(clock: FakeClock) -> None:
    limit = new_limit(maximum=2)
    first = await limit.acquire()
    await limit.acquire()
    doomed, patient = await start_waiters(limit, 2)

    doomed.cancel()  # its future is cancelled now, the task has not run yet
    limit.release(first, answered=True)
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await settle()

    assert patient.done()
    assert limit.in_use == 2
    assert limit.waiting == 0
    answer(limit, clock, FAST)
    answer(limit, clock, FAST)
    assert limit.in_use == 0
    assert await limit.acquire() == clock.now


async def test_cancellations_racing_releases_balance(clock: FakeClock) -> None:
    limit = new_limit(maximum=3, initial=3)
    for _ in range(3):
        await limit.acquire()
    waiters = await start_waiters(limit, 12)
    doomed = []
    for round_ in range(6):
        head = next(task for task in waiters if not task.done())
        doomed.append(head)
        # In one loop iteration, in both orders: a slot frees and the head gives up.
        if round_ % 2:
            head.cancel()
            answer(limit, clock, FAST)
        else:
            answer(limit, clock, FAST)
            head.cancel()
        await settle()
        assert limit.in_use == 3
        assert limit.waiting == 12 - 2 * (round_ + 1)
    assert all(task.cancelled() for task in doomed)
    survivors = [task for task in waiters if task not in doomed]
    assert all(task.done() and not task.cancelled() for task in survivors)

    for _ in range(3):
        answer(limit, clock, FAST)
    assert limit.in_use == 0
    assert limit.waiting == 0
    for _ in range(limit.slots):
        await asyncio.wait_for(limit.acquire(), timeout=1.0)
    assert limit.in_use == limit.slots == 3


# --- Backlog ---------------------------------------------------------------------------------


async def test_backlog_grows_with_the_waiters(clock: FakeClock) -> None:
    limit = new_limit(maximum=10)
    assert limit.backlog_seconds() == 0.0
    taken = await limit.acquire()
    await limit.acquire()
    clock.now += 1.0
    limit.release(taken, answered=True)  # the moving average: 0.1 x 1.0 s
    await limit.acquire()
    assert limit.backlog_seconds() == 0.0  # nobody waits

    first = await start_waiters(limit, 4)
    # The slot taken before the clock moved has been held 1 s, longer than the 0.1 s
    # average: it is what the waiters wait behind.
    assert limit.backlog_seconds() == pytest.approx(4 * 1.0 / 2)
    second = await start_waiters(limit, 4)
    assert limit.backlog_seconds() == pytest.approx(8 * 1.0 / 2)

    await drain(limit, first + second)
    assert limit.backlog_seconds() == 0.0


async def test_backlog_grows_with_the_average_latency(clock: FakeClock) -> None:
    backlogs = []
    for latency in (0.1, 1.0):
        limit = new_limit(maximum=10)
        await limit.acquire()
        await limit.acquire()
        answer(limit, clock, latency)  # the moving average: 0.1 x latency
        await limit.acquire()
        waiters = await start_waiters(limit, 3)
        backlogs.append(limit.backlog_seconds())
        await drain(limit, waiters)
    assert backlogs == [pytest.approx(3 * 0.01 / 2), pytest.approx(3 * 0.1 / 2)]


async def test_backlog_follows_the_moving_average_of_latency(clock: FakeClock) -> None:
    limit = new_limit(maximum=10)
    seen = []
    for _ in range(5):
        await limit.acquire()
        await limit.acquire()
        waiters = await start_waiters(limit, 2)
        seen.append(limit.backlog_seconds())
        await drain(limit, waiters)
        answer(limit, clock, 1.0)
        answer(limit, clock, 1.0)
    assert limit.limit == 2.0
    # Two answers of 1 s per round: the average is 1 - 0.9 ** answers.
    assert seen == [pytest.approx(2 * (1 - 0.9 ** (2 * n)) / 2) for n in range(5)]
    assert seen == sorted(seen)


async def test_unanswered_calls_count_in_the_average(clock: FakeClock) -> None:
    limit = new_limit(maximum=10, initial=4)
    for _ in range(4):
        await limit.acquire()
    answer(limit, clock, 2.0, answered=False)  # limit 4 -> 2, average 0.2
    waiters = await start_waiters(limit, 2)
    assert limit.slots == 2
    assert limit.backlog_seconds() == pytest.approx(2 * 0.2 / 2)
    await drain(limit, waiters)


# --- The fastest answer drifts ----------------------------------------------------------------


async def test_an_old_fast_answer_stops_setting_the_benchmark(clock: FakeClock) -> None:
    async def judged_slow(age: float, latency: float) -> bool:
        """After a FAST answer ``age`` seconds ago, is an answer in ``latency`` slow?"""
        clock.now = START
        limit = new_limit(maximum=10)
        await limit.acquire()
        await limit.acquire()
        answer(limit, clock, FAST)
        clock.now = START + age
        answer(limit, clock, latency)
        assert limit.in_use == 0
        return limit.limit < 2.0

    # Right after the fast answer the threshold is 2 x 1/16 + 1/128 = 0.1328 s…
    assert await judged_slow(0.0, THRESHOLD + 0.001)
    assert not await judged_slow(0.0, THRESHOLD)
    # …the benchmark doubles every 60 s: after 60 s it is 0.2578 s…
    assert await judged_slow(60.0, 0.26)
    assert not await judged_slow(60.0, 0.25)
    # …after 120 s 0.5078 s, so the old fast answer no longer makes 0.5 s slow.
    assert await judged_slow(120.0, 0.51)
    assert not await judged_slow(120.0, 0.5)
    # Continuously: after 30 s the benchmark is sqrt(2) times the fast answer.
    threshold_30 = FAST * 2**0.5 * TOLERANCE + SLACK
    assert await judged_slow(30.0, threshold_30 + 0.001)
    assert not await judged_slow(30.0, threshold_30 - 0.001)


async def test_a_slower_answer_becomes_the_new_fastest_once_the_old_one_has_drifted(
    clock: FakeClock,
) -> None:
    limit = new_limit(maximum=10, initial=10)
    for _ in range(4):
        await limit.acquire()
    answer(limit, clock, FAST)

    # Ten minutes on, the old benchmark is 64 s: a 0.5 s answer is the new fastest…
    clock.now += 600.0
    answer(limit, clock, 0.5)
    assert limit.limit == 10.0
    # …so the threshold is now 2 x 0.5 + 1/128 = 1.0078 s: 1.0 s is fast, 1.01 s slow.
    answer(limit, clock, 1.0)
    assert limit.limit == 10.0
    answer(limit, clock, 1.01)
    assert limit.limit == pytest.approx(9.0)


async def test_the_first_answer_on_a_machine_up_for_a_day_is_judged(clock: FakeClock) -> None:
    clock.now = 86_400.0  # time.monotonic() on a machine booted a day ago
    limit = new_limit(maximum=10)
    taken = await limit.acquire()
    await limit.acquire()
    (waiter,) = await start_waiters(limit, 1)
    clock.now += FAST
    limit.release(taken, answered=True)
    assert limit.in_use == 2
    assert await waiter == clock.now


async def test_a_newly_silent_endpoint_is_behind_before_its_first_call_times_out(
    clock: FakeClock,
) -> None:
    limit = new_limit(maximum=10)
    await limit.acquire()
    await limit.acquire()
    waiters = await start_waiters(limit, 3)
    assert limit.backlog_seconds() == 0.0  # no answer yet, no time held yet
    clock.now += 2.0  # nothing comes back
    assert limit.backlog_seconds() == pytest.approx(3 * 2.0 / 2)
    await drain(limit, waiters)


async def test_a_burst_of_slow_answers_from_one_round_decreases_once(clock: FakeClock) -> None:
    limit = new_limit(maximum=100, initial=32)
    taken = [await limit.acquire() for _ in range(32)]
    answer(limit, clock, FAST)  # sets the fastest answer
    clock.now += 1.0
    for moment in taken[1:]:  # all made before the first of them came back slow
        limit.release(moment, answered=True)
    assert limit.limit == pytest.approx(32 * 0.9)
    assert limit.in_use == 0


async def test_an_answer_on_a_new_connection_is_not_judged(clock: FakeClock) -> None:
    limit = new_limit(maximum=100, initial=4)
    for _ in range(4):
        await limit.acquire()
    waiters = await start_waiters(limit, 2)
    answer(limit, clock, FAST)
    assert limit.limit == 5.0  # slow start
    taken = clock.now - 10 * FAST
    limit.release(taken, answered=True, judged=False)  # slow, but it had to connect first
    assert limit.limit == 5.0
    assert limit.in_use == 4  # the freed slots went to the waiters
    await drain(limit, waiters)
