"""Identifiers for new aggregates: UUIDv7 (RFC 9562), time-ordered.

Time order keeps the event store's indexes append-mostly, and drawing the
random part from a per-process generator avoids a system call per id (which,
under load, costs a GIL hand-off). These ids name things; they guard nothing:
secrets come from ``secrets``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from uuid import UUID

_random = random.Random(os.urandom(32))
_lock = threading.Lock()


def new_id() -> UUID:
    milliseconds = time.time_ns() // 1_000_000
    with _lock:
        rand_a = _random.getrandbits(12)
        rand_b = _random.getrandbits(62)
    value = (milliseconds & (2**48 - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)
