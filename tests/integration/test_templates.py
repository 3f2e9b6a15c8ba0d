"""``Template.*`` (issue 21, first step): stored templates with versions, each part
checked when stored, so a broken one is refused with its line then; every account sees
only its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from domain.errors import Templates
from engine.runtime.composition import Engine, Role

Client = Callable[[Engine], httpx.AsyncClient]


async def test_templates_are_stored_with_versions_and_checked_when_stored(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    owner = engine.app.bootstrap("shop.example")["AccountAPIKey"]
    stranger = engine.app.bootstrap("other.example")["AccountAPIKey"]

    async def call(key: str, command: str, **params: Any) -> dict[str, Any]:
        answer = await client.post("/api.php", json={"APIKey": key, "Command": command, **params})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    created = await call(owner, "Template.Create", TemplateName="Receipt",
                         Subject="Your order {{ order.number }}",
                         HTMLContent="<p>Hi {{ name | default('there') }}</p>",
                         PlainContent="Hi {{ name }}")  # fmt: skip
    assert created["Success"] is True, created
    template_id = created["TemplateID"]
    assert created["Version"] == 1

    updated = await call(owner, "Template.Update", TemplateID=template_id,
                         HTMLContent="<p>Hello {{ name }}</p>")  # fmt: skip
    assert updated["Version"] == 2
    shown = (await call(owner, "Template.Get", TemplateID=template_id))["Template"]
    assert shown["ActiveVersion"] == 2
    assert [v["HTMLContent"] for v in shown["Versions"]] == [
        "<p>Hi {{ name | default('there') }}</p>", "<p>Hello {{ name }}</p>"
    ]  # fmt: skip
    assert shown["Versions"][1]["Subject"] == "Your order {{ order.number }}"  # kept
    back = await call(owner, "Template.Update", TemplateID=template_id, Version=1)
    assert back["Version"] == 1

    broken = await call(owner, "Template.Update", TemplateID=template_id,
                        HTMLContent="<p>ok</p>\n<p>{% if %}</p>")  # fmt: skip
    assert (broken["ErrorCode"], broken["ErrorMessage"]) == (
        4, "Invalid template: HTMLContent, line 2: Expected an expression, got "
        "'end of statement block'",
    )  # fmt: skip
    assert (await call(owner, "Template.Get", TemplateID=template_id))["Template"][
        "ActiveVersion"] == 1  # fmt: skip
    twice = await call(owner, "Template.Create", TemplateName="receipt", Subject="S",
                       PlainContent="x")  # fmt: skip
    assert (twice["ErrorCode"], twice["ErrorMessage"]) == (
        Templates.DUPLICATE_NAME.code, Templates.DUPLICATE_NAME.message
    )  # fmt: skip
    bodiless = await call(owner, "Template.Create", TemplateName="Empty", Subject="S")
    assert bodiless["ErrorCode"] == Templates.MISSING_PARAMETER.code
    bad_version = await call(owner, "Template.Update", TemplateID=template_id, Version=9)
    assert bad_version["ErrorCode"] == Templates.INVALID_VERSION.code

    for command in ("Template.Get", "Template.Update", "Template.Delete"):
        foreign = await call(stranger, command, TemplateID=template_id, Subject="x")
        assert (foreign["ErrorCode"], foreign["ErrorMessage"]) == (2, "Invalid TemplateID.")
    assert (await call(stranger, "Templates.Get"))["TotalTemplates"] == 0

    listed = await call(owner, "Templates.Get")
    assert [t["TemplateName"] for t in listed["Templates"]] == ["Receipt"]
    assert (await call(owner, "Template.Delete", TemplateID=template_id))["Success"] is True
    assert (await call(owner, "Templates.Get"))["TotalTemplates"] == 0
    gone = await call(owner, "Template.Get", TemplateID=template_id)
    assert gone["ErrorCode"] == Templates.INVALID_ID.code
