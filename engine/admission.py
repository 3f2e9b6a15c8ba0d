"""Load shedding for the accepting paths: refuse a share of new sends while answering
them has been slow, so that those accepted keep their latency.

Offered more than it can accept, a server that takes everything only makes every client
wait longer: requests queue in its event loop, its writer's queue and its sockets, and
every answer comes later. The signal is the time from a send's arrival to its answer, as
CoDel (RFC 8289) watches the time packets spend queued rather than the queue's length:
its median over half a second. Not CoDel's minimum: a group commit answers the sends that
arrive just before it quickly even when the rest wait, so the minimum stays low in an
overload. A pause (a garbage collection, a checkpoint) slows the sends that meet it, not
half of an interval's. While the median is above the target, the share refused grows by
a step each interval; once it is below, the share falls again, more slowly, so that an
overload met once does not flap in and out.

A refusal costs far less than an acceptance (nothing is stored), so refusing frees the
CPU for the sends that are accepted, and the client, told to retry after a second, comes
back when there is room.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator

from domain.errors import Extensions, RequestRejected

# Each interval of a standing queue refuses this much more of the offer; each interval
# without one, half this much less. Never everything: some sends must pass to measure.
SHED_STEP = 0.1
MOST_SHED = 0.9
# The share of an interval's answers that must be quicker than the target: the median. A
# higher one (0.9 was tried) refused nine sends in ten at three times the capacity and its
# answers were no quicker: then the requests' own handling and the projector's share of
# the interpreter make the tail, not the sends accepted.
WATCHED_SHARE = 0.5
# A refused send comes back after this long: the share refused adapts every half second.
BUSY_RETRY_AFTER = 1


class Admission:
    def __init__(
        self,
        target_seconds: float,
        interval_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._target = target_seconds
        self._interval = interval_seconds
        self._clock = clock
        self._draw = draw
        self._lock = threading.Lock()
        self._shed_share = 0.0
        self._window_started = clock()
        self._window: list[float] = []
        self.refused = 0

    @property
    def shed_share(self) -> float:
        return self._shed_share

    def admit(self) -> bool:
        """Whether to take a new send now (False: answer it busy, to come back later). The
        caller then records how long it took, from its arrival to its answer."""
        if self._target <= 0:
            return True
        with self._lock:
            self._close_window()
            if self._shed_share and self._draw() < self._shed_share:
                self.refused += 1
                return False
            return True

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Refuse (``Extensions.BUSY``, Retry-After) or time the block, which is recorded
        if it ends without an error."""
        if not self.admit():
            raise RequestRejected(Extensions.BUSY, retry_after=BUSY_RETRY_AFTER)
        started = self._clock()
        yield
        self.record(self._clock() - started)

    def record(self, seconds: float) -> None:
        """How long an admitted send took, from its admission to its answer."""
        with self._lock:
            self._window.append(seconds)
            self._close_window()

    def _close_window(self) -> None:
        now = self._clock()
        if now - self._window_started < self._interval:
            return
        window = sorted(self._window)
        if window and window[int(len(window) * WATCHED_SHARE)] > self._target:
            self._shed_share = min(MOST_SHED, self._shed_share + SHED_STEP)
        else:
            self._shed_share = max(0.0, self._shed_share - SHED_STEP / 2)
        self._window_started = now
        self._window = []
