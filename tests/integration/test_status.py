"""``sendstream status``: the holder of each lease, and each reader's place in the stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.runtime.composition import Engine, Role
from engine.runtime.status import installation_status
from tests.integration.conftest import wait_for
from tests.integration.test_engine_costs import send_some

pytestmark = pytest.mark.unit  # the embedded run; the Kafka groups' figures are the broker's


def test_status_names_the_leaders_and_how_far_each_reader_is(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    send_some(engine, 4)
    newest = engine.app.recorder.max_notification_id()

    def caught_up() -> bool:
        readers = {f.reader: f for f in installation_status(engine).followers}
        return all(readers[name].lag == 0 for name in ("delivery", "projector", "scheduler"))

    wait_for(caught_up, timeout=30)
    status = installation_status(engine)
    assert status.leaders == {
        "scheduler": f"process {os.getpid()}",
        "campaigns": f"process {os.getpid()}",
    }
    readers = {f.reader: f for f in status.followers}
    assert readers["projector"].end == engine.app.recorder.max_notification_id() >= newest

    answer = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        env={**os.environ, "SENDSTREAM_DATA_DIR": str(engine.settings.data_dir)},
        cwd=Path(__file__).resolve().parents[2], capture_output=True, check=True,
    )  # fmt: skip
    document = json.loads(answer.stdout)
    assert {"Role": "scheduler", "Holder": f"process {os.getpid()}"} in document["Leaders"]
    assert {r["Reader"] for r in document["Readers"]} >= {"delivery", "projector", "scheduler"}

    engine.close()
    nobody = installation_status(make_engine(start=False))
    assert nobody.leaders == {"scheduler": None, "campaigns": None}  # freed at close


def test_a_reader_that_is_not_running_shows_what_waits_for_it(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    send_some(engine, 3)  # a submission, its message's Accepted and Queued, each

    readers = {f.reader: f for f in installation_status(engine).followers}

    assert readers["delivery"].position is None  # never read
    assert readers["delivery"].lag == 9
    assert readers["projector"].lag == 6  # it reads only the messages' events
    assert readers["scheduler"].lag == 3  # of those only Queued sets or clears a timer


def test_each_delivery_share_counts_only_its_own_messages(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}), DELIVERY_PROCESSES="2")
    send_some(engine, 10)  # ten one-recipient messages, nobody delivering

    readers = {f.reader: f for f in installation_status(engine).followers}

    first, second = readers["delivery-1of2"].lag, readers["delivery-2of2"].lag
    assert first is not None and second is not None
    # Each message is one share's: its Accepted and Queued count there and only there.
    assert first + second == 20
    assert first % 2 == second % 2 == 0
