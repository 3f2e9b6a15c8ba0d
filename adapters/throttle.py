"""Keyed throttling: a concurrency limit and a token bucket per key (a recipient domain, a
destination provider), so one big campaign does not hammer one receiver.

Receivers such as gmail.com defer or block senders that open too many
connections or send too fast, and a campaign to 100,000 addresses at one domain
would do exactly that if delivery concurrency were only global. Each key
therefore gets its own concurrency limit and its own token bucket; a key's
waiters never hold up another key. The delivery worker keys it by recipient
domain; direct delivery by the traffic-shaping rule that claims the MX host.

The state of each domain is a counter, a bucket and a FIFO of futures. Waiters
are granted in the dispatcher (on release, and on a timer when the bucket is
empty) rather than by waking everyone to race for the slot, which keeps the
order strictly first come, first served and makes cancellation easy to reason
about: a waiter either has been granted (and owns a slot it must give back) or
has not (and owns nothing). A domain with nothing in flight, nobody waiting
and a full bucket is indistinguishable from one never seen, so it is dropped;
memory follows the domains currently being sent to, not all domains ever seen.

Not thread-safe: one instance belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Float slack when comparing token counts, so that a refill computed from the
# exact delay a timer was set for does not fall a hair short of one token.
_EPSILON = 1e-9


class _Domain:
    __slots__ = ("in_flight", "queue", "timer", "tokens", "updated", "waiting")

    def __init__(self, tokens: float, now: float) -> None:
        self.in_flight = 0
        self.waiting = 0  # live waiters; ``queue`` may also hold cancelled ones
        self.queue: deque[asyncio.Future[None]] = deque()
        self.tokens = tokens
        self.updated = now
        self.timer: asyncio.TimerHandle | None = None


class KeyedThrottle:
    """At most ``max_concurrent`` transactions and ``per_second`` messages per key.

    ``burst`` is the bucket size: how many messages may go at once after a quiet
    spell. It defaults to one second's worth, which lets a short campaign to a
    domain go out promptly while a long one settles at the rate. ``per_second``
    <= 0 turns the rate limit off, ``max_concurrent`` <= 0 the concurrency limit.
    """

    def __init__(self, max_concurrent: int, per_second: float, burst: int | None = None) -> None:
        self.max_concurrent = max_concurrent
        self.per_second = per_second
        if burst is None:
            burst = max(1, math.ceil(per_second)) if per_second > 0 else 1
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.burst = burst
        self._domains: dict[str, _Domain] = {}

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Holds a concurrency slot for the block; a rate token is spent on entry."""
        key = key.strip().lower().rstrip(".")
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    def stats(self) -> dict[str, dict[str, float]]:
        return {
            key: {"in_flight": float(domain.in_flight), "waiting": float(domain.waiting)}
            for key, domain in self._domains.items()
        }

    # --- internals ----------------------------------------------------------------------

    @property
    def _rate_limited(self) -> bool:
        return self.per_second > 0

    def _slot_free(self, domain: _Domain) -> bool:
        return self.max_concurrent <= 0 or domain.in_flight < self.max_concurrent

    def _token_ready(self, domain: _Domain) -> bool:
        return not self._rate_limited or domain.tokens >= 1 - _EPSILON

    def _refill(self, domain: _Domain, now: float) -> None:
        if self._rate_limited:
            elapsed = max(0.0, now - domain.updated)
            domain.tokens = min(float(self.burst), domain.tokens + elapsed * self.per_second)
        domain.updated = now

    def _take(self, domain: _Domain) -> None:
        domain.in_flight += 1
        if self._rate_limited:
            domain.tokens -= 1

    async def _acquire(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        domain = self._domains.get(key)
        if domain is None:
            domain = self._domains[key] = _Domain(float(self.burst), loop.time())
        self._refill(domain, loop.time())
        if domain.waiting == 0 and self._slot_free(domain) and self._token_ready(domain):
            self._take(domain)
            return
        granted: asyncio.Future[None] = loop.create_future()
        domain.queue.append(granted)
        domain.waiting += 1
        self._dispatch(key, domain)  # arms the refill timer if tokens are what is missing
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                # Granted, then cancelled before this task resumed: the slot and the
                # token were taken on our behalf, so give both back.
                self._release(key, refund=True)
            else:
                granted.cancel()
                domain.waiting -= 1
                self._dispatch(key, domain)
            raise

    def _release(self, key: str, *, refund: bool = False) -> None:
        domain = self._domains[key]
        domain.in_flight -= 1
        if refund and self._rate_limited:
            domain.tokens = min(float(self.burst), domain.tokens + 1)
        self._dispatch(key, domain)

    def _dispatch(self, key: str, domain: _Domain) -> None:
        """Grants waiters in arrival order, then decides when to look again."""
        loop = asyncio.get_running_loop()
        self._refill(domain, loop.time())
        queue = domain.queue
        while queue and self._slot_free(domain) and self._token_ready(domain):
            head = queue.popleft()
            if head.done():  # cancelled; its waiter uncounts itself when it resumes
                continue
            self._take(domain)
            domain.waiting -= 1
            head.set_result(None)
        if not domain.waiting:
            queue.clear()  # only cancelled futures can be left

        if domain.timer is not None:
            domain.timer.cancel()
            domain.timer = None
        if queue and self._slot_free(domain) and not self._token_ready(domain):
            # Blocked on the bucket: come back when the next token is in.
            delay = (1 - domain.tokens) / self.per_second
            domain.timer = loop.call_later(delay, self._on_timer, key, domain)
        elif not domain.waiting and not domain.in_flight:
            if not self._rate_limited or domain.tokens >= self.burst - _EPSILON:
                del self._domains[key]
            else:
                # Idle but not yet refilled: forgetting it now would allow an extra
                # burst, so forget it once the bucket is full.
                delay = (self.burst - domain.tokens) / self.per_second
                domain.timer = loop.call_later(delay, self._on_timer, key, domain)
        # Otherwise a release will come, and it dispatches.

    def _on_timer(self, key: str, domain: _Domain) -> None:
        domain.timer = None
        if self._domains.get(key) is domain:
            self._dispatch(key, domain)
