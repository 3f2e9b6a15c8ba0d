"""Fixtures that run the real engine against real services.

Embedded mode by default; with SENDSTREAM_TEST_KAFKA=1 every engine built here
streams through the real Kafka-protocol broker instead of the notification log.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from engine.runtime.composition import ALL_ROLES, Engine, Role
from engine.settings import Settings
from tests.integration.receiver import Receiver
from tests.services import PrivatePostgres
from tests.webhook_receiver import WebhookReceiver

KAFKA_MODE = os.environ.get("SENDSTREAM_TEST_KAFKA", "0") == "1"
POSTGRES_URL = os.environ.get("SENDSTREAM_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until ``condition()`` is truthy; return its value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def new_postgres_schema() -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{POSTGRES_URL}?schema={schema}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    """A server of the test's own, which it may stop and start, and whose processes' pools,
    beside the other tests' at the same time, cannot use up the machine's server's
    connections."""
    server = PrivatePostgres().create()
    yield server
    server.remove()


@pytest.fixture
def make_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Engine]]:
    """Build engines on a fresh data folder; each is closed at the end of the test."""
    engines: list[Engine] = []
    kafka_servers = ""
    if KAFKA_MODE:
        kafka_servers = request.getfixturevalue("kafka_broker").url
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def make(roles: frozenset[Role] = ALL_ROLES, start: bool = True, **env: Any) -> Engine:
        values: dict[str, Any] = {
            "SENDSTREAM_DATA_DIR": tmp_path / "var",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
            "KAFKA_TOPIC_PREFIX": prefix,
            "DELIVERY_RETRY_SCHEDULE": "1",
            # Tests that want the SMTP submission server give it free ports themselves.
            "SMTP_SUBMISSION_PORTS": "",
            "BOUNCE_SMTP_PORTS": "",
            "INBOUND_SMTP_PORTS": "",
        }
        values.update(env)
        engine = Engine(Settings(**values), roles=roles)
        engines.append(engine)
        if start:
            engine.start_workers()
        return engine

    yield make
    for engine in reversed(engines):
        engine.close()


@pytest.fixture
async def api_client() -> AsyncIterator[Callable[[Engine], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def client_for(engine: Engine) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://sendstream.test"
        )
        clients.append(client)
        return client

    yield client_for
    for client in clients:
        await client.aclose()
