"""``Template.*`` (issue 21, first step): stored templates with versions, each part
checked when stored, so a broken one is refused with its line then; every account sees
only its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx

from domain.errors import Extensions, Templates
from engine.runtime.composition import Engine, Role
from tests.integration.receiver import Receiver

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


async def test_a_send_from_a_template_is_rendered_with_its_data_and_records_the_version(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    stranger = engine.app.bootstrap("other.example")["AccountAPIKey"]

    async def create(account_key: str, **parts: str) -> str:
        body = {"APIKey": account_key, "Command": "Template.Create", **parts}
        answer = (await client.post("/api.php", json=body)).json()
        assert answer["Success"] is True, answer
        return str(answer["TemplateID"])

    template_id = await create(
        keys["AccountAPIKey"], TemplateName="Receipt", Subject="Order {{ order.number }}",
        HTMLContent="<p>Hi {{ name }}</p><ul>{% for i in order.items %}<li>{{ i }}</li>"
        "{% endfor %}</ul>", PlainContent="Hi {{ name | default('there') }}",
    )  # fmt: skip
    foreign_id = await create(stranger, TemplateName="Theirs", Subject="S", PlainContent="x")

    async def send(**fields: Any) -> httpx.Response:
        body = {"From": {"email": "news@shop.example", "name": "Shop"},
                "To": [{"email": "reader@example.org", "name": "Reader"}], **fields}  # fmt: skip
        headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
        return await client.post("/api/v1/email", json=body, headers=headers)

    data = {"name": "<b>Ann</b>", "order": {"number": "7\r\nBcc: all@example.org",
                                              "items": ["tea", "cups"]}}  # fmt: skip
    sent = await send(TemplateID=template_id, TemplateData=data)
    assert sent.status_code == 200, sent.text
    (received,) = receiver.wait_for_count(1)
    message = received.message
    assert str(message["Subject"]) == "Order 7 Bcc: all@example.org"
    assert message["Bcc"] is None
    html = next(p for p in message.walk() if p.get_content_type() == "text/html")
    assert "<p>Hi &lt;b&gt;Ann&lt;/b&gt;</p><ul><li>tea</li><li>cups</li></ul>" in (
        html.get_content()  # type: ignore[attr-defined]
    )
    submission = engine.app.submission(UUID(sent.json()["MessageID"]))
    assert submission.template == {"TemplateID": template_id, "Version": 1}
    # An update is used by the very next send (the send path keeps templates a moment).
    update = {"APIKey": keys["AccountAPIKey"], "Command": "Template.Update",
              "TemplateID": template_id, "Subject": "Receipt {{ order.number }}"}  # fmt: skip
    assert (await client.post("/api.php", json=update)).json()["Version"] == 2
    resent = await send(TemplateID=template_id, TemplateData=data)
    assert engine.app.submission(UUID(resent.json()["MessageID"])).template == {
        "TemplateID": template_id, "Version": 2
    }  # fmt: skip

    def error(answer: httpx.Response) -> tuple[int, int, str]:
        (only,) = answer.json()["Errors"]
        return answer.status_code, only["Code"], only["Message"]

    invalid_id = (422, 15, "Invalid TemplateID")
    assert error(await send(TemplateID=foreign_id)) == invalid_id
    assert error(await send(TemplateID=str(UUID(int=1)))) == invalid_id
    assert error(await send(TemplateID=template_id, TemplateVersion=3)) == invalid_id
    both = await send(TemplateID=template_id, Subject="Mine")
    assert error(both) == (422, 422, Extensions.TEMPLATE_AND_CONTENT.message)
    not_data = await send(TemplateID=template_id, TemplateData=["x"])
    assert error(not_data) == (422, 422, "Invalid TemplateData")


async def test_a_retry_of_a_template_send_is_answered_after_the_template_is_gone(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")

    async def command(name: str, **params: Any) -> dict[str, Any]:
        body = {"APIKey": keys["AccountAPIKey"], "Command": name, **params}
        answer: dict[str, Any] = (await client.post("/api.php", json=body)).json()
        assert answer["Success"] is True, answer
        return answer

    template_id = (await command("Template.Create", TemplateName="T", Subject="Hi",
                                 PlainContent="Hello {{ name }}"))["TemplateID"]  # fmt: skip
    body = {"TemplateID": template_id, "TemplateData": {"name": "Ann"},
            "From": {"email": "news@shop.example", "name": "Shop"},
            "To": [{"email": "reader@example.org", "name": "Reader"}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}", "Idempotency-Key": "t-1"}
    first = await client.post("/api/v1/email", json=body, headers=headers)
    assert first.status_code == 200, first.text
    await command("Template.Delete", TemplateID=template_id)
    again = await client.post("/api/v1/email", json=body, headers=headers)
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
