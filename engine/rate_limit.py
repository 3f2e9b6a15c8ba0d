"""Request rate limits: the generic cell rate algorithm (GCRA), one timestamp per key.

``limits`` was the first choice, but its in-memory storage re-arms a timer thread
every 10 ms while any key is live; under load those threads took most of the
API's time. GCRA needs no expiry machinery: a key's whole state is the time at
which its bucket would be empty again.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass

from domain.errors import ErrorText, RequestRejected

_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RULE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Rate:
    amount: int
    period: float  # seconds

    @classmethod
    def parse(cls, rule: str) -> Rate:
        """``100/second``, ``600/minute``, ``5 per hour``."""
        match = _RULE.match(rule.lower())
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"not a rate: {rule!r} (expected e.g. '100/second')")
        return cls(int(match.group(1)), _UNITS[match.group(2)])


class RateLimiter:
    """Allows ``amount`` requests per ``period``, in bursts of up to ``amount``."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._interval = rate.period / rate.amount
        self._empty_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def acquire(self, key: str, now: float | None = None) -> float:
        """0.0 when allowed (and counted), else the seconds to wait before the next try."""
        now = time.monotonic() if now is None else now
        with self._lock:
            empty_at = max(self._empty_at.get(key, now), now) + self._interval
            wait = empty_at - now - self.rate.period
            if wait > 0:
                return wait
            self._empty_at[key] = empty_at
            if now >= self._next_prune:
                self._prune(now)
            return 0.0

    def wait(self, key: str, now: float | None = None) -> float:
        """What ``acquire`` would answer, without counting a request."""
        now = time.monotonic() if now is None else now
        with self._lock:
            empty_at = max(self._empty_at.get(key, now), now) + self._interval
            return max(0.0, empty_at - now - self.rate.period)

    def _prune(self, now: float) -> None:
        """Forget keys whose bucket is empty again: they are indistinguishable from new ones."""
        self._empty_at = {k: t for k, t in self._empty_at.items() if t > now}
        self._next_prune = now + self.rate.period


def seconds_to_wait(wait: float) -> int:
    return max(1, math.ceil(wait))


class RequestLimit:
    """A rate limit that answers with the endpoint's own 429 error and a Retry-After."""

    def __init__(self, rule: str) -> None:
        self._limiter = RateLimiter(Rate.parse(rule))

    def check(self, key: str, too_many: ErrorText) -> None:
        wait = self._limiter.acquire(key)
        if wait > 0:
            seconds = seconds_to_wait(wait)
            raise RequestRejected(
                too_many.format(seconds=seconds, attempts=self._limiter.rate.amount),
                retry_after=seconds,
            )
