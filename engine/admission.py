"""Load shedding for the accepting paths: at most so many sends in progress in a process;
one more is refused at once (503 and Retry-After; SMTP 451 4.3.2), not queued.

Offered more than it can accept, a server that takes everything only makes every client
wait longer: requests queue in its event loop, its writer's queue and its sockets, and
every answer comes later, without end. By Little's law a send's time in the process is the
number of sends in progress divided by the rate they are accepted at, so bounding that
number bounds the time, whatever the offer; and a refusal, answered at once and storing
nothing, costs the process little, so the rate accepted stays near the most it can do.

A controller that refused a growing share of the offer while the median answer was slower
than a target was tried first and measured at three times the capacity: the answers were
not quicker (the requests' own handling and the projector's share of the interpreter
make them slow then, not the number accepted), so the share kept growing, and the
process accepted less than delivery could send (440 a second of 1,500 offered, against
about 1,100 with no shedding at all).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from domain.errors import Extensions, RequestRejected

# A refused send comes back after this long.
BUSY_RETRY_AFTER = 1


class Admission:
    def __init__(self, limit: int) -> None:
        """``limit``: sends in progress at most; 0 for no limit."""
        self._limit = limit
        self._lock = threading.Lock()
        self.in_progress = 0
        self.refused = 0

    def admit(self) -> bool:
        """Whether to take a new send now (False: answer it busy, to come back later). An
        admitted send is :meth:`release`\\ d once answered."""
        with self._lock:
            if self._limit and self.in_progress >= self._limit:
                self.refused += 1
                return False
            self.in_progress += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_progress -= 1

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """The block as an admitted send; refused with ``Extensions.BUSY``."""
        if not self.admit():
            raise RequestRejected(Extensions.BUSY, retry_after=BUSY_RETRY_AFTER)
        try:
            yield
        finally:
            self.release()
