"""Leases for the roles that run once: one holder, freed when the holder dies however it
dies (a killed process, a dropped database session), taken by a standby at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.lease import FileLease, PostgresLease
from adapters.ports import Lease
from tests.integration.conftest import POSTGRES_URL

pytestmark = pytest.mark.unit  # no Kafka here: the embedded run covers it


@pytest.fixture(params=["file", "postgres"])
def make_lease(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Lease]]:
    leases: list[Lease] = []
    schema = f"t_{uuid.uuid4().hex[:12]}"

    def make(role: str = "relay", installation: str = "") -> Lease:
        lease: Lease
        if request.param == "file":
            lease = FileLease(tmp_path / (installation or "var") / "leases" / f"{role}.lock")
        else:
            lease = PostgresLease(POSTGRES_URL, role, schema=f"{schema}{installation}")
        leases.append(lease)
        return lease

    yield make
    for lease in leases:
        lease.release()


def test_one_holder_at_a_time(make_lease: Callable[..., Lease]) -> None:
    first, second = make_lease(), make_lease()

    assert first.try_acquire(), "a free lease is taken"
    assert first.still_held()
    assert first.try_acquire(), "asking again keeps it"
    assert not second.try_acquire(), "a held lease is not taken"
    assert not second.still_held()
    assert make_lease("scheduler").try_acquire(), "another role's lease is another lock"
    assert make_lease(installation="other").try_acquire(), "so is another installation's"

    first.release()
    assert not first.still_held()
    assert second.try_acquire() and second.still_held()
    assert not first.try_acquire()


def test_a_file_lease_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "leases" / "relay.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from adapters.lease import FileLease; from pathlib import Path\n"
            f"assert FileLease(Path({str(path)!r})).try_acquire()\n"
            "print('held', flush=True); time.sleep(600)"
        )],
        stdout=subprocess.PIPE, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        standby = FileLease(path)
        assert not standby.try_acquire()
        assert path.read_text() == f"{holder.pid}\n"  # who holds it, for an operator
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert standby.try_acquire()
        standby.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_postgres_lease_is_lost_with_its_session() -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    holder, standby = (PostgresLease(POSTGRES_URL, "relay", schema=schema) for _ in range(2))
    try:
        assert holder.try_acquire()
        session = holder._db.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (session,))
        deadline = time.monotonic() + 10
        while not standby.try_acquire():
            assert time.monotonic() < deadline, "the standby never got the lease"
            time.sleep(0.1)
        assert not holder.still_held()  # the old holder learns it lost the lease
        assert not holder.try_acquire()  # and cannot take it back while it is held
    finally:
        holder.release()
        standby.release()
