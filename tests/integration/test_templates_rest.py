"""``/api/v1/templates`` (issue 21): the template commands as REST resources for a sender
key, with the same rules and REST's statuses."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import httpx

from domain.errors import Extensions, Templates
from engine.runtime.composition import Engine, Role

Client = Callable[[Engine], httpx.AsyncClient]


async def test_templates_are_created_changed_shown_and_deleted_over_rest(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    other = engine.app.bootstrap("other.example")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    stranger = {"Authorization": f"Bearer {other['SenderAPIKey']}"}

    def error(answer: httpx.Response) -> tuple[int, int, str]:
        (only,) = answer.json()["Errors"]
        return answer.status_code, only["Code"], only["Message"]

    receipt = {"TemplateName": "Receipt", "Subject": "Order {{ n }}", "PlainContent": "Hi"}
    created = await client.post("/api/v1/templates", headers=headers, json=receipt)
    assert created.status_code == 200, created.text
    template_id = created.json()["TemplateID"]
    assert created.json() == {"TemplateID": template_id, "Version": 1}
    path = f"/api/v1/templates/{template_id}"

    changed = await client.put(path, headers=headers, json={"HTMLContent": "<p>{{ name }}</p>"})
    assert changed.json() == {"TemplateID": template_id, "Version": 2}
    shown = (await client.get(path, headers=headers)).json()["Template"]
    assert (shown["TemplateName"], shown["ActiveVersion"], len(shown["Versions"])) == (
        "Receipt", 2, 2)  # fmt: skip
    back = await client.put(path, headers=headers, json={"Version": 1})
    assert back.json()["Version"] == 1
    listed = (await client.get("/api/v1/templates", headers=headers)).json()
    assert [t["TemplateID"] for t in listed["Templates"]] == [template_id]

    # The template sends, from the same key.
    sent = await client.post("/api/v1/email", headers=headers, json={
        "From": {"email": "news@shop.example", "name": "Shop"},
        "To": [{"email": "reader@example.org", "name": "R"}],
        "TemplateID": template_id, "TemplateData": {"n": 7}})  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert engine.app.submission(UUID(sent.json()["MessageID"])).content["subject"] == "Order 7"

    twice = await client.post("/api/v1/templates", headers=headers, json={
        "TemplateName": "receipt", "Subject": "S", "PlainContent": "x"})  # fmt: skip
    assert error(twice) == (409, 3, Templates.DUPLICATE_NAME.message)
    broken = await client.put(path, headers=headers, json={"PlainContent": "{% for %}"})
    assert error(broken)[:2] == (422, 4)
    assert error(broken)[2].startswith("Invalid template: PlainContent, line 1:")
    no_version = await client.put(path, headers=headers, json={"Version": 9})
    assert error(no_version) == (422, 5, Templates.INVALID_VERSION.message)
    missing = await client.post("/api/v1/templates", headers=headers, json={"Subject": "S"})
    assert error(missing) == (422, 1, "A required field was not supplied: TemplateName.")

    for method in ("GET", "PUT", "DELETE"):
        foreign = await client.request(method, path, headers=stranger, json={"Subject": "x"})
        assert error(foreign) == (404, 2, Templates.INVALID_ID.message), method
    assert error(await client.get("/api/v1/templates/not-an-id", headers=headers)) == (
        404, 404, Extensions.NOT_FOUND.message)  # fmt: skip
    assert (await client.get("/api/v1/templates")).status_code == 401

    assert (await client.delete(path, headers=headers)).json() == {"TemplateID": template_id}
    assert error(await client.get(path, headers=headers))[:2] == (404, 2)
    assert (await client.get("/api/v1/templates", headers=headers)).json()["TotalTemplates"] == 0


async def test_a_template_created_twice_with_one_key_is_one_template(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}", "Idempotency-Key": "t-1"}
    body = {"TemplateName": "Receipt", "Subject": "S", "PlainContent": "x"}
    first = await client.post("/api/v1/templates", headers=headers, json=body)
    again = await client.post("/api/v1/templates", headers=headers, json=body)
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/api/v1/templates", headers=headers, json={**body, "Subject": "T"})
    assert other.status_code == 422
    listed = await client.get("/api/v1/templates", headers=headers)
    assert listed.json()["TotalTemplates"] == 1
