"""Every documented error of the REST endpoints, over HTTP, and nothing recorded after one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from engine.runtime.composition import Engine
from tests.integration.test_send_pipeline import bearer, email_body


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(roles=frozenset(), start=False, API_RATE_LIMIT="1000/second")


def notifications(engine: Engine) -> int:
    return engine.app.recorder.max_notification_id() or 0


async def post(client: httpx.AsyncClient, key: str | None, body: Any, **kw: Any) -> httpx.Response:
    headers = bearer(key) if key else {}
    headers.update(kw.pop("headers", {}))
    if isinstance(body, bytes):
        return await client.post("/api/v1/email", content=body, headers=headers, **kw)
    return await client.post("/api/v1/email", json=body, headers=headers, **kw)


def errors(response: httpx.Response) -> list[tuple[int, str]]:
    return [(e["Code"], e["Message"]) for e in response.json()["Errors"]]


async def test_authentication_errors(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    client = api_client(engine)
    missing = await post(client, None, email_body())
    assert missing.status_code == 401 and errors(missing) == [(1, "Missing SenderAPIKey")]
    wrong = await post(client, "snd_not-a-key", email_body())
    assert wrong.status_code == 401 and errors(wrong) == [(13, "Invalid SenderAPIKey")]
    keys = engine.app.bootstrap("example.com")
    in_body = await post(client, None, {**email_body(), "SenderAPIKey": keys["SenderAPIKey"]})
    assert in_body.status_code == 200
    events = await client.get("/api/v1/events")
    assert events.status_code == 401 and errors(events) == [(1, "Missing SenderAPIKey")]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, 400),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, 400),
        (b"\xff\xfe\x00", {"Content-Type": "application/json"}, 400, 400),
        (b"Subject=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, 415),
        (b"{" + b" " * (2 * 1024 * 1024) + b"}", {"Content-Type": "application/json"}, 413, 413),
    ],
)
async def test_malformed_bodies(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: int,
) -> None:
    engine = make_engine(roles=frozenset(), start=False, MAX_REQUEST_BYTES=1024 * 1024)
    keys = engine.app.bootstrap("example.com")
    before = notifications(engine)
    response = await post(api_client(engine), keys["SenderAPIKey"], body, headers=headers)
    assert response.status_code == status
    assert errors(response)[0][0] == code
    assert notifications(engine) == before


async def test_field_errors_answer_422_and_record_nothing(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    before = notifications(engine)
    response = await post(client, keys["SenderAPIKey"], email_body(Subject="", To=[]))
    assert response.status_code == 422
    assert errors(response) == [
        (8, "Missing Subject"),
        (20, "There is no recipient set for the email."),
    ]
    other_domain = await post(
        client, keys["SenderAPIKey"], email_body(From={"email": "a@evil.example.net", "name": "A"})
    )
    assert other_domain.status_code == 422 and errors(other_domain)[0][0] == 3
    assert notifications(engine) == before


async def test_account_and_domain_state_errors(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    from uuid import UUID

    client = api_client(engine)
    cases = [
        ("deactivate", 403, 12, "Invalid or deactivated user account"),
        ("unverify", 403, 34, "User account is not verified"),
        ("domain", 403, 32, "Domain is not activated"),
        ("limit", 420, 17, "Email sending limit reached"),
        ("suppress", 422, 14,
         "Email address is in the suppression list. Email delivery is blocked."),
    ]  # fmt: skip
    for change, status, code, text in cases:
        keys = engine.app.bootstrap(f"{change}.example.com")
        account = engine.app.account(UUID(keys["AccountID"]))
        domain = engine.app.domain(UUID(keys["DomainID"]))
        if change == "deactivate":
            account.deactivate()
        elif change == "unverify":
            account.mark_unverified()
        elif change == "domain":
            domain.deactivate()
        elif change == "limit":
            account.set_daily_send_limit(0)
        engine.app.save(account, domain)
        if change == "suppress":
            engine.sending.suppress(account.id, "recipient@example.org", "manual")
        engine.sending.forget_key(keys["SenderAPIKey"])
        before = notifications(engine)
        response = await post(
            client,
            keys["SenderAPIKey"],
            email_body(From={"email": f"a@{change}.example.com", "name": "A"}),
        )
        assert (response.status_code, errors(response)) == (status, [(code, text)]), change
        assert notifications(engine) == before


async def test_rate_limit_answers_429_with_retry_after(
    make_engine: Callable[..., Engine], api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    engine = make_engine(roles=frozenset(), start=False, API_RATE_LIMIT="2/minute")
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    answers = [await post(client, keys["SenderAPIKey"], email_body()) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[-1]
    assert int(limited.headers["Retry-After"]) >= 1
    ((code, text),) = errors(limited)
    assert code == 429
    assert text.startswith("Too many requests. Wait for ") and text.endswith(
        " seconds for another 2 attempts."
    )


async def test_trailing_slash_and_unknown_routes(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    response = await client.post(
        "/api/v1/email/", json=email_body(), headers=bearer(keys["SenderAPIKey"])
    )
    assert response.status_code == 200
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and errors(missing)[0][0] == 404
    wrong_method = await client.put("/api/v1/email", json={})
    assert wrong_method.status_code == 405


async def test_events_parameter_errors(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    for params, code in [
        ({"StartFrom": "abc"}, 4),
        ({"StartFrom": "-1"}, 4),
        ({"RetrieveCount": "many"}, 5),
        ({"StartDate": "yesterday"}, 422),
        ({"Event": "teleported"}, 422),
        ({"MessageID": "not-a-uuid"}, 422),
    ]:
        response = await client.get(
            "/api/v1/events", params=params, headers=bearer(keys["SenderAPIKey"])
        )
        assert response.status_code in (401, 403, 422), params
        assert errors(response)[0][0] == code, params
    wrong = await client.get("/api/v1/events", headers=bearer("snd_wrong"))
    assert errors(wrong) == [(13, "Invalid SenderAPIKey")]


async def test_the_docs_describe_the_endpoints(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    client = api_client(engine)
    page = await client.get("/docs")
    assert page.status_code == 200
    # Its files are the engine's own: the page works where no CDN can be reached.
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        served = await client.get(asset)
        assert served.status_code == 200 and served.content, asset
    assert "SwaggerUIBundle" in (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    schema = (await client.get("/openapi.json")).json()
    assert {"/api/v1/email", "/api/v1/events"} <= set(schema["paths"])
    body = schema["paths"]["/api/v1/email"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/SendEmailRequest"}
    assert "Subject" in schema["components"]["schemas"]["SendEmailRequest"]["properties"]


async def test_a_multipart_body_without_its_boundary_is_malformed_not_a_failure(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    # Found by schemathesis: it answered 500.
    client = api_client(engine)
    for method in ("GET", "POST"):
        response = await client.request(
            method, "/api.php?Command=Account.Get", content=b'{"APIKey": "x"}',
            headers={"Content-Type": "multipart/form-data"},
        )  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.json() == {
            "Success": False, "ErrorCode": 400,
            "ErrorMessage": "The request body could not be read as JSON or form fields",
        }  # fmt: skip


async def test_what_is_accepted_renders_whatever_characters_it_came_with(
    engine: Engine, api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    # Found by schemathesis in fresh-clone CI: a subject with C1 control characters was
    # accepted, then failed to render (GET /api/v1/email/{id} answered 500).
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    # A header's value is the sender's own text: refused, not changed (first: a send
    # that succeeds records its key's day of use a moment later).
    before = notifications(engine)
    refused = await post(client, keys["SenderAPIKey"],
                         email_body(From={"email": "news@example.com", "name": "N"},
                                    Headers={"X-Note": "a\u0085b"}))  # fmt: skip
    assert refused.status_code == 422
    assert errors(refused)[0][1].endswith("the value of X-Note is not one line")
    assert notifications(engine) == before
    hostile = '{"Subject": "A\\u0088B\\u0000C\\u008b\\u2028D\\udaf7\\udef5", ' \
        '"ContentType": "plain", "PlainContent": "Hi", ' \
        '"From": {"email": "news@example.com", "name": "N\\u0085ews"}, ' \
        '"To": [{"email": "jane@example.org", "name": "Jane\\u001b"}]}'  # fmt: skip
    sent = await post(client, keys["SenderAPIKey"], hostile.encode(),
                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    shown = await client.get(f"/api/v1/email/{sent.json()['MessageID']}",
                             headers=bearer(keys["SenderAPIKey"]))  # fmt: skip
    assert shown.status_code == 200, shown.text
    assert shown.json()["Subject"] == "A B C  D\U000cdef5"  # the escaped pair is one character
    raw = shown.json()["Recipients"][0]["Raw"]
    assert "Subject: =?utf-8?" in raw and "From: N ews <news@example.com>" in raw
