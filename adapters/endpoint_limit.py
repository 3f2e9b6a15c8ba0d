"""How many calls one endpoint gets at once: as many as keep its answers quick.

A fixed number of slots per endpoint is wrong both ways. An endpoint 200 ms
away needs 30 calls in flight to take 150 a second; one on the same network
answers in a millisecond and needs two, and every extra connection costs the
sender (httpcore's pool walks its connections on every request) and the
receiver. So the limit adapts, as TCP's congestion window does, with latency
as the signal, as in Netflix's concurrency-limits:

* while calls wait for a slot and answers come within ``tolerance`` times the
  fastest answer seen lately (plus ``slack``), the limit grows: by one per
  answer until the first slow answer (slow start: it doubles each round
  trip), then by one per limit's worth of answers (additive increase);
* when answers come slower than that, or not at all (timeout, refused,
  reset), it shrinks by a fraction (multiplicative decrease), never below one,
  once per round: answers to calls made before the last decrease do not
  shrink it again.

An answer on a connection the call had to open is not judged: the handshakes
make it slower than the endpoint is.

A dead endpoint therefore gets one call at a time, and a sender whose own CPU
is the bottleneck (latency grows with everything it has in flight) stops
opening connections it cannot serve.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

# The fastest answer is forgotten slowly: the benchmark it sets doubles every
# this many seconds, so an endpoint that moved somewhere slower is judged by
# its new normal within minutes, yet a minute of congestion does not become
# the new normal.
_FASTEST_HALF_LIFE = 60.0
_AVERAGE_WEIGHT = 0.1
_DECREASE = 0.9
_DECREASE_NO_ANSWER = 0.5


class EndpointLimit:
    """A semaphore whose size adapts to the endpoint's latency; FIFO for its waiters."""

    def __init__(
        self,
        maximum: int,
        initial: int = 2,
        tolerance: float = 2.0,
        slack: float = 0.005,
    ) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self.limit = float(min(max(initial, 1), maximum))
        self.in_use = 0
        self._tolerance = tolerance
        self._slack = slack
        self._fastest = float("inf")
        self._fastest_at = 0.0
        self._slow_start = True
        self._average = 0.0  # seconds a slot is held, answered or not (moving average)
        self._held: list[float] = []  # when each slot in use was taken
        self._decreased_at = float("-inf")
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def slots(self) -> int:
        return int(self.limit)

    def backlog_seconds(self) -> float:
        """About how long the calls waiting now will wait for a slot. A slot held longer
        than the average counts as held that long: a newly silent endpoint is behind
        before its first call times out."""
        if not self._waiters:
            return 0.0
        held = time.monotonic() - min(self._held) if self._held else 0.0
        return self.waiting * max(self._average, held) / self.slots

    async def acquire(self) -> float:
        """Wait for a slot; returns the moment it was taken (``time.monotonic()``), which
        ``release`` needs to judge the answer. Cancellable while waiting."""
        if self.in_use < self.slots and not self._waiters:
            self.in_use += 1
            return self._taken()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we gave up: pass it on.
                self.in_use -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(waiter)
            raise
        return self._taken()

    def _taken(self) -> float:
        now = time.monotonic()
        self._held.append(now)
        return now

    def release(self, taken_at: float, answered: bool, judged: bool = True) -> None:
        """Give the slot back. ``answered``: an HTTP answer came (whatever its status);
        ``judged``: the answer's latency is the endpoint's (no new connection in it)."""
        now = time.monotonic()
        latency = now - taken_at
        self.in_use -= 1
        if taken_at in self._held:
            self._held.remove(taken_at)
        elif self._held:  # not a moment acquire gave: a slot was given back all the same
            self._held.remove(min(self._held))
        self._average += (latency - self._average) * _AVERAGE_WEIGHT
        if not answered:
            self._decrease(taken_at, _DECREASE_NO_ANSWER)
        elif judged:
            # Capped: a monotonic clock counts from boot, and 2.0 ** (a day / 60 s) overflows.
            doublings = min((now - self._fastest_at) / _FASTEST_HALF_LIFE, 64.0)
            fastest = self._fastest * 2.0**doublings
            if latency < fastest:
                fastest = self._fastest = latency
                self._fastest_at = now
            if latency > fastest * self._tolerance + self._slack:
                self._decrease(taken_at, _DECREASE)
            elif self._waiters:
                step = 1.0 if self._slow_start else 1.0 / self.limit
                self.limit = min(float(self.maximum), self.limit + step)
        self._wake()

    def _decrease(self, taken_at: float, factor: float) -> None:
        self._slow_start = False
        if taken_at >= self._decreased_at:
            self.limit = max(1.0, self.limit * factor)
            self._decreased_at = time.monotonic()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.slots:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)
