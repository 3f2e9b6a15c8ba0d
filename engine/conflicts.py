"""Doing again what another request's change to the same aggregate made fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

_ATTEMPTS = 8
T = TypeVar("T")


def retried(attempt: Callable[[], T]) -> T:
    """``attempt`` again, on what is stored by then, while another request changed the same
    account first (a version conflict: users, keys and clients are listed on it). Each
    attempt reads afresh and checks again what it must (a name taken is then refused)."""
    for _ in range(_ATTEMPTS - 1):
        try:
            return attempt()
        except IntegrityError:
            continue
    return attempt()
