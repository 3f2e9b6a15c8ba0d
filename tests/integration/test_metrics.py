"""``/metrics`` and ``X-Request-ID`` in one process (test_processes.py counts across
``serve``'s processes)."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapters.metrics import exposition
from api.metrics import route_of
from domain.providers import PROVIDERS, provider_of
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver

Client = Callable[[Engine], httpx.AsyncClient]


def counted(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` in an exposition, 0 when there is none.
    Counters are this test process's (other tests count too): compare with a count taken
    before."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def now_counted(name: str, **labels: str) -> float:
    return counted(exposition().decode(), name, **labels)


def test_routes_are_counted_by_their_templates() -> None:
    assert route_of("/api/v1/email/") == "/api/v1/email"
    assert route_of("/api/v1/email/0192f3a4-1111-7222-8333-944455556666") == (
        "/api/v1/email/{MessageID}")  # fmt: skip
    assert route_of("/api/v1/templates/0192f3a4111172228333944455556666") == (
        "/api/v1/templates/{TemplateID}")  # fmt: skip
    assert route_of("/t/o/abc.gif") == "tracking"
    assert route_of("/wp-admin/x.php") == "other"


async def test_requests_are_counted_and_carry_their_id(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    given = await client.get("/api/v1/events", headers={
        "Authorization": f"Bearer {keys['SenderAPIKey']}", "X-Request-ID": "trace-42"})  # fmt: skip
    assert given.headers["x-request-id"] == "trace-42"
    made = await client.get("/healthz", headers={"X-Request-ID": "not a token"})
    assert len(made.headers["x-request-id"]) == 32  # a new one for one that is not a token
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    line = next(
        line for line in metrics.text.splitlines()
        if line.startswith("sendstream_http_requests_total{") and 'route="/healthz"' in line
    )  # fmt: skip
    assert 'method="GET"' in line and 'status="200"' in line
    assert float(line.rpartition(" ")[2]) >= 1


def test_a_recipient_is_counted_under_a_few_known_providers_or_other() -> None:
    assert provider_of("Reader@GMAIL.com") == "google"
    assert provider_of("someone@hotmail.co.uk") == "microsoft"
    assert provider_of("a@aol.com") == "yahoo"
    assert provider_of("a@mail.gmail.com.evil.example") == "other"  # whole domains only
    assert provider_of("a@shop.example") == "other"
    assert len(PROVIDERS) == len(set(PROVIDERS)) < 20 and "other" in PROVIDERS


async def test_delivery_outcomes_are_counted_by_provider_and_source(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    source = "relay:127.0.0.1"  # the relay the message left through (SMTP_RELAY_URL's host)
    delivered = {"outcome": "delivered", "provider": "google", "source": source}
    bounced = {"outcome": "bounced", "provider": "microsoft", "source": source}
    name = "sendstream_delivery_outcomes_total"
    before = now_counted(name, **delivered), now_counted(name, **bounced)

    for recipient in ("reader@gmail.com", "bounce-gone@outlook.com"):  # the receiver: 550
        response = await client.post(
            "/api/v1/email",
            headers={"Authorization": f"Bearer {keys['SenderAPIKey']}"},
            json={
                "Subject": "Counted",
                "ContentType": "plain",
                "PlainContent": "hello",
                "From": {"email": "news@shop.example", "name": "Shop"},
                "To": [{"email": recipient, "name": ""}],
            },
        )
        assert response.status_code == 200, response.text
        [message_id] = engine.app.submission(UUID(response.json()["MessageID"])).message_ids
    wait_for(
        lambda: (
            now_counted(name, **delivered) > before[0] and now_counted(name, **bounced) > before[1]
        )
    )
    assert [r.recipients for r in receiver.received] == [["reader@gmail.com"]]
    assert engine.app.message(message_id).status.value == "bounced"

    text = (await client.get("/metrics")).text
    assert counted(text, name, **delivered) == before[0] + 1
    assert counted(text, name, **bounced) == before[1] + 1


async def test_smtp_sessions_are_counted_by_server_as_they_open_and_close(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(
        roles=frozenset({Role.API, Role.SMTP}),
        SMTP_SUBMISSION_HOST="127.0.0.1",
        SMTP_SUBMISSION_PORTS="0",
        BOUNCE_SMTP_PORTS="0",
        INBOUND_SMTP_PORTS="0",
    )
    assert engine.submission_server and engine.bounce_intake and engine.inbound_server
    servers = {
        "submission": engine.submission_server.ports[0],
        "bounce": engine.bounce_intake.ports[0],
        "inbound": engine.inbound_server.ports[0],
    }
    opened, closed = "sendstream_smtp_sessions_total", "sendstream_smtp_sessions_closed_total"
    before = {
        server: (now_counted(opened, server=server), now_counted(closed, server=server))
        for server in servers
    }

    sessions = {}
    for server, port in servers.items():
        sessions[server] = client = smtplib.SMTP("127.0.0.1", port, timeout=10)
        assert client.ehlo()[0] == 250
    # Open: counted as opened, not yet as closed.
    for server in servers:
        assert now_counted(opened, server=server) == before[server][0] + 1
        assert now_counted(closed, server=server) == before[server][1]
    for client in sessions.values():
        client.quit()
    wait_for(lambda: all(now_counted(closed, server=s) == before[s][1] + 1 for s in servers))

    answer = await api_client(engine).get("/metrics")
    assert answer.status_code == 200
    for server in servers:
        assert counted(answer.text, opened, server=server) == before[server][0] + 1
        assert counted(answer.text, closed, server=server) == before[server][1] + 1


async def test_messages_waiting_for_a_time_and_webhook_calls_owed_are_shown(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    # The scheduler sets the timers; nothing delivers, so nothing leaves them.
    engine = make_engine(roles=frozenset({Role.API, Role.SCHEDULER, Role.RELAY}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")

    async def shown(name: str, **labels: str) -> float:
        return counted((await client.get("/metrics")).text, name, **labels)

    assert await shown("sendstream_messages_waiting", state="waiting") == 0
    assert await shown("sendstream_webhook_backlog") == engine.webhook_store.pending_count()
    for n in range(3):
        sent = await client.post(
            "/api/v1/email",
            json={
                "Subject": "Later", "ContentType": "plain", "PlainContent": "Hi",
                "SendAt": "2099-01-01T00:00:00Z",
                "From": {"email": "news@shop.example", "name": "Shop"},
                "To": [{"email": f"r{n}@example.org", "name": "R"}],
            },
            headers={"Authorization": f"Bearer {keys['SenderAPIKey']}"},
        )  # fmt: skip
        assert sent.status_code == 200, sent.text
    wait_for(lambda: engine.schedule_store.waiting(datetime.now(UTC))[0] == 3)
    assert await shown("sendstream_messages_waiting", state="waiting") == 3
    assert await shown("sendstream_messages_waiting", state="due") == 0
