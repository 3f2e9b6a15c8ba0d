"""Session-wide real services for every test folder (see ``tests/services.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fake_mx import FakeMx, start_fake_mx
from tests.services import (
    DnsEntry,
    DnsmasqService,
    RunningService,
    start_dnsmasq,
    start_kafka_broker,
    start_smtp_sink,
)

# Tests send bursts of thousands at once (crash and restart tests): load shedding would
# refuse sends of tests about other things. It is off unless a test turns it on
# (tests/integration/test_overload.py).
os.environ.setdefault("MAX_SENDS_IN_PROGRESS", "0")

# Tests whose outcome cannot depend on the stream: they build no engine that would follow
# Kafka. ``make test`` runs them once, in embedded mode (the Kafka run is ``-m "not unit"``).
_MODE_INDEPENDENT = (
    "domain", "engine", "projections", "api", "console", "adapters", "test_layers.py",
)  # fmt: skip
_TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(_TESTS).parts
        if parts[0] in _MODE_INDEPENDENT and item.path.name != "test_kafka.py":
            item.add_marker(pytest.mark.unit)
        # The fake mail servers listen on port 25 of fixed loopback addresses: with the
        # suite spread over processes (pytest-xdist), one process runs every test of them.
        if "fake_mx" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("fake-mx"))


def kafka_tests_enabled() -> bool:
    """Kafka mode is on unless SENDSTREAM_TEST_KAFKA is unset, empty or "0"."""
    return os.environ.get("SENDSTREAM_TEST_KAFKA", "0") not in ("", "0")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A Tansu broker for the whole session; ``.url`` is the bootstrap servers string.

    Skipped only when Kafka mode is off: with SENDSTREAM_TEST_KAFKA=1 a broker that
    will not start is an error, not a skip.
    """
    if not kafka_tests_enabled():
        pytest.skip("Kafka-protocol broker tests run with SENDSTREAM_TEST_KAFKA=1")
    broker = start_kafka_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """Postfix's smtp-sink for the whole session; ``.url`` is ``smtp://127.0.0.1:PORT``.

    Messages accumulate across tests: count relative to ``received_messages`` taken
    at the start of a test, or call ``clear_messages`` first.
    """
    sink = start_smtp_sink(tmp_path_factory.mktemp("smtp-sink"))
    yield sink
    sink.stop()


# --- DNS (dnsmasq) ---------------------------------------------------------------------


@pytest.fixture
def dns_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., DnsmasqService]]:
    """Start dnsmasq serving given records: ``dns_server([(host, type, value), …])``.

    Each call starts its own server (about 50 ms); all are stopped after the test.
    Keyword arguments go to ``start_dnsmasq`` (e.g. ``zones=``).
    """
    started: list[DnsmasqService] = []

    def start(records: Sequence[DnsEntry], **options: Any) -> DnsmasqService:
        server = start_dnsmasq(records, tmp_path_factory.mktemp("dnsmasq"), **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- Recipient domains' own mail servers (tests/fake_mx.py) ------------------------------


@pytest.fixture(scope="session")
def fake_mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMx]:
    """dnsmasq serving the ``.example`` domains of ``tests.fake_mx``, with their mail servers on
    port 25 of 127.0.0.2 … 127.0.0.18 (the tests run as root, as CI does)."""
    servers = start_fake_mx(tmp_path_factory.mktemp("fake-mx"))
    yield servers
    servers.stop()
