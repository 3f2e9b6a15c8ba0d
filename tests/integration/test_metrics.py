"""``/metrics`` and ``X-Request-ID`` in one process (test_processes.py counts across
``serve``'s processes)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from api.metrics import route_of
from engine.runtime.composition import Engine, Role

Client = Callable[[Engine], httpx.AsyncClient]


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
