"""Per-domain throttling: concurrency, rate, fairness, cancellation and forgetting."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from adapters.throttle import KeyedThrottle


async def settle() -> None:
    """Lets every ready task run until all are blocked again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrency_per_domain_while_other_domains_proceed() -> None:
    throttle = KeyedThrottle(max_concurrent=3, per_second=0)
    in_flight = {"gmail.com": 0, "example.org": 0}
    peak = {"gmail.com": 0, "example.org": 0}
    example_done = asyncio.Event()

    async def send(domain: str, hold: float) -> None:
        async with throttle.slot(domain):
            in_flight[domain] += 1
            peak[domain] = max(peak[domain], in_flight[domain])
            await asyncio.sleep(hold)
            in_flight[domain] -= 1

    async def example() -> None:
        await asyncio.gather(*(send("example.org", 0) for _ in range(3)))
        example_done.set()

    gmail = [asyncio.create_task(send("gmail.com", 0.02)) for _ in range(20)]
    await settle()
    assert throttle.stats()["gmail.com"] == {"in_flight": 3.0, "waiting": 17.0}
    # Another domain is not queued behind gmail.com's 17 waiters.
    await asyncio.wait_for(example(), timeout=0.1)
    assert example_done.is_set()
    assert any(not task.done() for task in gmail)
    await asyncio.gather(*gmail)
    assert peak == {"gmail.com": 3, "example.org": 3}


async def test_domains_are_case_insensitive() -> None:
    throttle = KeyedThrottle(max_concurrent=1, per_second=0)
    async with throttle.slot("GMail.COM."):
        assert throttle.stats() == {"gmail.com": {"in_flight": 1.0, "waiting": 0.0}}
        waiter = asyncio.create_task(_enter(throttle, "gmail.com"))
        await settle()
        assert not waiter.done()
    await waiter


async def _enter(throttle: KeyedThrottle, domain: str) -> None:
    async with throttle.slot(domain):
        pass


async def test_rate_with_burst_one() -> None:
    throttle = KeyedThrottle(max_concurrent=0, per_second=20, burst=1)
    started = time.monotonic()
    await asyncio.gather(*(_enter(throttle, "gmail.com") for _ in range(30)))
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed <= 3 * 1.45  # 29 intervals of 50 ms after the first


async def test_burst_goes_at_once_and_rate_is_per_domain() -> None:
    throttle = KeyedThrottle(max_concurrent=0, per_second=5, burst=5)
    started = time.monotonic()
    await asyncio.gather(
        *(_enter(throttle, domain) for domain in ("a.example", "b.example") for _ in range(5))
    )
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    await _enter(throttle, "a.example")  # the bucket is empty now
    assert time.monotonic() - started >= 0.15


async def test_waiters_are_served_in_arrival_order() -> None:
    throttle = KeyedThrottle(max_concurrent=1, per_second=200, burst=1)
    order: list[int] = []

    async def send(n: int) -> None:
        async with throttle.slot("gmail.com"):
            order.append(n)
            await asyncio.sleep(0.001)

    tasks = []
    for n in range(20):
        tasks.append(asyncio.create_task(send(n)))
        await asyncio.sleep(0)  # each task enqueues before the next is created
    await asyncio.gather(*tasks)
    assert order == list(range(20))


async def test_a_new_arrival_does_not_overtake_waiters() -> None:
    throttle = KeyedThrottle(max_concurrent=1, per_second=0)
    order: list[str] = []

    async def send(name: str) -> None:
        async with throttle.slot("gmail.com"):
            order.append(name)

    async with throttle.slot("gmail.com"):
        first = asyncio.create_task(send("first"))
        await settle()
    # The slot was handed to "first" on release, before "late" even asked.
    late = asyncio.create_task(send("late"))
    await asyncio.gather(first, late)
    assert order == ["first", "late"]


@pytest.mark.parametrize("per_second", [0.0, 1000.0])
async def test_cancelled_waiters_leak_nothing(per_second: float) -> None:
    throttle = KeyedThrottle(max_concurrent=2, per_second=per_second, burst=100)
    release = asyncio.Event()

    async def hold() -> None:
        async with throttle.slot("gmail.com"):
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    waiters = [asyncio.create_task(hold()) for _ in range(10)]
    await settle()
    assert throttle.stats()["gmail.com"] == {"in_flight": 2.0, "waiting": 10.0}
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert throttle.stats()["gmail.com"] == {"in_flight": 2.0, "waiting": 0.0}
    release.set()
    await asyncio.gather(*holders)

    # N new slots can be taken at once: nothing was left behind by the cancellations.
    release.clear()
    again = [asyncio.create_task(hold()) for _ in range(2)]
    await settle()
    assert throttle.stats()["gmail.com"] == {"in_flight": 2.0, "waiting": 0.0}
    release.set()
    await asyncio.gather(*again)


async def test_cancelled_right_after_being_granted_gives_the_slot_back() -> None:
    throttle = KeyedThrottle(max_concurrent=1, per_second=0)
    async with throttle.slot("gmail.com"):
        waiter = asyncio.create_task(_enter(throttle, "gmail.com"))
        await settle()
    # The release granted the slot to ``waiter``, which has not run yet.
    assert throttle.stats()["gmail.com"]["in_flight"] == 1.0
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert "gmail.com" not in throttle.stats()
    await asyncio.wait_for(_enter(throttle, "gmail.com"), timeout=0.1)


async def test_cancelling_the_head_lets_the_next_waiter_through() -> None:
    throttle = KeyedThrottle(max_concurrent=1, per_second=0)
    async with throttle.slot("gmail.com"):
        head = asyncio.create_task(_enter(throttle, "gmail.com"))
        await settle()
        second = asyncio.create_task(_enter(throttle, "gmail.com"))
        await settle()
        head.cancel()
        await asyncio.gather(head, return_exceptions=True)
    await asyncio.wait_for(second, timeout=0.1)


async def test_timeouts_while_waiting_for_a_token_leak_nothing() -> None:
    throttle = KeyedThrottle(max_concurrent=1, per_second=10, burst=1)
    await _enter(throttle, "gmail.com")  # empties the bucket
    for _ in range(5):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_enter(throttle, "gmail.com"), timeout=0.01)
    assert throttle.stats()["gmail.com"] == {"in_flight": 0.0, "waiting": 0.0}
    await asyncio.wait_for(_enter(throttle, "gmail.com"), timeout=1.0)


async def test_idle_domains_are_forgotten() -> None:
    unlimited = KeyedThrottle(max_concurrent=2, per_second=0)
    await asyncio.gather(*(_enter(unlimited, f"d{n}.example") for n in range(1000)))
    assert unlimited.stats() == {}

    limited = KeyedThrottle(max_concurrent=2, per_second=2, burst=2)
    await asyncio.gather(*(_enter(limited, f"d{n}.example") for n in range(1000)))
    # Kept while their buckets refill (forgetting them would allow an extra burst) ...
    assert len(limited.stats()) == 1000
    # ... and dropped once full (after a second; a busy machine may take longer).
    for _ in range(200):
        await asyncio.sleep(0.02)
        if limited.stats() == {}:
            break
    assert limited.stats() == {}


def test_burst_must_be_positive() -> None:
    with pytest.raises(ValueError, match="burst"):
        KeyedThrottle(max_concurrent=1, per_second=1, burst=0)


async def test_random_cancellations_keep_every_invariant() -> None:
    rng = random.Random(7)
    throttle = KeyedThrottle(max_concurrent=3, per_second=500, burst=5)
    domains = ["a.example", "b.example", "c.example"]
    in_flight = dict.fromkeys(domains, 0)
    peak = dict.fromkeys(domains, 0)

    async def send(domain: str) -> None:
        async with throttle.slot(domain):
            in_flight[domain] += 1
            peak[domain] = max(peak[domain], in_flight[domain])
            try:
                await asyncio.sleep(rng.uniform(0, 0.005))
            finally:
                in_flight[domain] -= 1

    tasks = [asyncio.create_task(send(rng.choice(domains))) for _ in range(300)]
    for _ in range(40):
        await asyncio.sleep(rng.uniform(0, 0.003))
        rng.choice(tasks).cancel()  # waiting, granted-but-not-resumed, or holding
    await asyncio.gather(*tasks, return_exceptions=True)
    assert max(peak.values()) <= 3
    assert all(
        domain["in_flight"] == 0 and domain["waiting"] == 0 for domain in throttle.stats().values()
    )
    await asyncio.sleep(5 / 500 + 0.05)
    assert throttle.stats() == {}


async def test_a_new_arrival_does_not_take_the_token_a_waiter_is_due() -> None:
    throttle = KeyedThrottle(max_concurrent=0, per_second=20, burst=1)
    order: list[str] = []

    async def send(name: str) -> None:
        async with throttle.slot("gmail.com"):
            order.append(name)

    await send("bucket emptied")
    first = asyncio.create_task(send("first"))
    await settle()
    # Block the loop past the refill, so "late" asks before the refill timer fires.
    time.sleep(0.06)  # noqa: ASYNC251
    late = asyncio.create_task(send("late"))
    await asyncio.gather(first, late)
    assert order == ["bucket emptied", "first", "late"]
