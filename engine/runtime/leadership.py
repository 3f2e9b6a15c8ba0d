"""Roles that must run once run under a lease: the holder runs the role, the others wait
as standbys and take over within seconds of its death."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from adapters.ports import Lease

log = logging.getLogger(__name__)

__all__ = ["run_as_leader"]


def run_as_leader(
    role: str,
    lease: Lease,
    run: Callable[[threading.Event], None],
    stop: threading.Event,
    check_every: float = 1.0,
) -> None:
    """Run ``run`` whenever this process holds ``lease``, until ``stop``.

    ``run`` gets an event that is set when ``stop`` is, or when the lease is lost (its
    database session ended), and must then return; after a loss the lease is sought again.
    """
    waiting_logged = False
    while not stop.is_set():
        if not lease.try_acquire():
            if not waiting_logged:
                log.info("%s: another process leads; waiting as its standby", role)
                waiting_logged = True
            stop.wait(check_every)
            continue
        waiting_logged = False
        log.info("%s: leading", role)
        term = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(role, lease, stop, term, check_every),
            name=f"{role}-lease", daemon=True,
        )  # fmt: skip
        watcher.start()
        try:
            run(term)
        except Exception:
            # A role that fails to start (its database or broker away) must not leave the
            # installation without it: the lease goes, and this process asks again.
            log.exception("%s: stopped by an error; the lease is given up", role)
        finally:
            term.set()
            watcher.join()
            lease.release()
        # A term that ended without a stop ended by a lost session or an error: the
        # standbys, which ask every check, get two checks' head start before this process
        # asks again, so the one with the trouble does not win its own lease back.
        stop.wait(2 * check_every)


def _watch(
    role: str, lease: Lease, stop: threading.Event, term: threading.Event, every: float
) -> None:
    while not term.is_set():
        if stop.wait(every):
            break
        if not lease.still_held():
            log.warning("%s: lost the lease; stopping until it is held again", role)
            break
    term.set()
