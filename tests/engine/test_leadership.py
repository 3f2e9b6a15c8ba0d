"""A role that runs once runs in the lease holder only, and a standby takes over within
seconds when the holder stops or loses its lease."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from adapters.lease import FileLease, PostgresLease
from adapters.ports import Lease
from engine.runtime.leadership import run_as_leader
from tests.integration.conftest import POSTGRES_URL, wait_for

pytestmark = pytest.mark.unit


class Contender:
    """One process's instance of the role: it notes when it runs."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.stop = threading.Event()
        self.terms: list[tuple[float, float]] = []
        self.started: list[float] = []
        self.running = threading.Event()
        self.thread = threading.Thread(
            target=run_as_leader, args=("relay", lease, self.run, self.stop, 0.1), daemon=True
        )

    def run(self, term: threading.Event) -> None:
        started = time.monotonic()
        self.started.append(started)
        self.running.set()
        term.wait()
        self.running.clear()
        self.terms.append((started, time.monotonic()))


def test_a_standby_takes_over_when_the_leader_stops(tmp_path: Path) -> None:
    path = tmp_path / "leases" / "relay.lock"
    leader, standby = Contender(FileLease(path)), Contender(FileLease(path))
    leader.thread.start()
    wait_for(leader.running.is_set)
    standby.thread.start()
    time.sleep(0.5)
    assert not standby.running.is_set()  # only one runs the role

    leader.stop.set()
    leader.thread.join(5)
    wait_for(standby.running.is_set, timeout=5)
    assert leader.terms[0][1] <= standby.started[0]  # never two at once
    standby.stop.set()
    standby.thread.join(5)
    assert not standby.thread.is_alive()


def test_a_leader_that_loses_its_session_stops_and_the_standby_takes_over() -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    leader = Contender(PostgresLease(POSTGRES_URL, "relay", schema=schema))
    standby = Contender(PostgresLease(POSTGRES_URL, "relay", schema=schema))
    leader.thread.start()
    wait_for(leader.running.is_set)
    standby.thread.start()
    time.sleep(0.5)
    assert not standby.running.is_set()

    session = leader.lease._db.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[attr-defined]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (session,))
    wait_for(lambda: leader.terms, timeout=5)  # the old leader stopped its term
    wait_for(standby.running.is_set, timeout=5)
    assert not leader.running.is_set()
    assert leader.terms[0][1] <= standby.started[0] + 1  # the old term ends within a check
    for contender in (leader, standby):
        contender.stop.set()
        contender.thread.join(5)


def test_a_role_that_fails_gives_up_its_lease_and_is_tried_again(tmp_path: Path) -> None:
    lease = FileLease(tmp_path / "leases" / "relay.lock")
    stop = threading.Event()
    terms: list[str] = []

    def run(term: threading.Event) -> None:
        terms.append("started")
        if len(terms) == 1:
            assert FileLease(tmp_path / "leases" / "relay.lock").holder() is not None
            raise ConnectionError("the broker is away")
        term.wait()

    leader = threading.Thread(target=run_as_leader, args=("relay", lease, run, stop, 0.1))
    leader.start()
    wait_for(lambda: len(terms) == 2, timeout=5)  # it failed once, and runs again
    stop.set()
    leader.join(5)
    assert not leader.is_alive()
    assert FileLease(tmp_path / "leases" / "relay.lock").holder() is None
