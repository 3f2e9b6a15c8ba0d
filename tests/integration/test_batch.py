"""``POST /api/v1/email/batch`` (issue 21): one content for many recipients, each rendered
with its own data into its own message; a recipient's fault is its own, the batch's fault
refuses it whole, and what is accepted is saved in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from eventsourcing.application import AggregateNotFoundError

from domain.errors import Extensions, SendEmail
from engine.eventlog.followers import to_envelope
from engine.runtime.composition import Engine, Role
from engine.sending.batch import MAX_BATCH_RECIPIENTS
from engine.sending.batch_fanout import BatchFanOut
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver

Client = Callable[[Engine], httpx.AsyncClient]
SENDER = {"email": "news@shop.example", "name": "Shop"}


def _made(engine: Engine, message_id: str) -> bool:
    """Whether the fan-out has made the recipient's submission (just after the answer)."""
    try:
        engine.app.submission(UUID(message_id))
    except AggregateNotFoundError:
        return False
    return True


def _error(answer: httpx.Response) -> tuple[int, int, str]:
    (only,) = answer.json()["Errors"]
    return answer.status_code, only["Code"], only["Message"]


async def test_each_recipient_gets_its_own_rendered_message_and_faults_are_its_own(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    engine.sending.suppress(UUID(keys["AccountID"]), "gone@example.org", "unsubscribed")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    body = {
        "From": SENDER,
        "Subject": "Order {{ order }} for {{ name }}",
        "ContentType": "html",
        "HtmlContent": "<p>Hi {{ name }}, {{ shop }} ships {{ order }}</p>",
        "PlainContent": "Hi {{ name }}",
        "TemplateData": {"shop": "Shop & Co", "name": "friend"},
        "Tags": ["orders"],
        "Recipients": [
            {"email": "ann@example.org", "name": "Ann",
             "TemplateData": {"name": "<b>Ann</b>", "order": "A-1"}},
            {"email": "not-an-address"},
            {"email": "bob@example.org", "TemplateData": {"order": "B-2\r\nBcc: x@y.z"}},
            {"email": "gone@example.org"},
            {"email": "ANN@example.org"},
            {"email": "cy@example.org", "TemplateData": {"order": {"a": 1}, "name": 5}},
            {"email": "dee@example.org", "TemplateData": ["not", "an", "object"]},
            "nobody",
        ],
    }  # fmt: skip
    answer = await client.post("/api/v1/email/batch", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["Accepted"], result["Refused"]) == (3, 5)
    outcomes = result["Recipients"]
    assert [o["Email"] for o in outcomes] == [
        "ann@example.org", "not-an-address", "bob@example.org", "gone@example.org",
        "ANN@example.org", "cy@example.org", "dee@example.org", "",
    ]  # fmt: skip

    def refusal(index: int) -> tuple[int, str]:
        (error,) = outcomes[index]["Errors"]
        assert "MessageID" not in outcomes[index]
        return error["Code"], error["Message"]

    assert refusal(1) == (SendEmail.RECIPIENT_INVALID.code, SendEmail.RECIPIENT_INVALID.message)
    assert refusal(3) == (SendEmail.SUPPRESSED.code, SendEmail.SUPPRESSED.message)
    assert refusal(4) == (422, Extensions.DUPLICATE_RECIPIENT.message)
    assert refusal(6) == (422, "Invalid TemplateData")
    assert refusal(7) == (SendEmail.RECIPIENT_MISSING.code, SendEmail.RECIPIENT_MISSING.message)
    ids = [outcomes[i]["MessageID"] for i in (0, 2, 5)]
    assert len(set(ids)) == 3

    received = {r.recipients[0]: r.message for r in receiver.wait_for_count(3)}
    assert set(received) == {"ann@example.org", "bob@example.org", "cy@example.org"}
    ann = received["ann@example.org"]
    assert str(ann["Subject"]) == "Order A-1 for <b>Ann</b>"
    html = next(p for p in ann.walk() if p.get_content_type() == "text/html")
    assert "<p>Hi &lt;b&gt;Ann&lt;/b&gt;, Shop &amp; Co ships A-1</p>" in (
        html.get_content()  # type: ignore[attr-defined]
    )
    bob = received["bob@example.org"]
    assert str(bob["Subject"]) == "Order B-2 Bcc: x@y.z for friend"  # one line, no header
    assert bob["Bcc"] is None
    assert str(received["cy@example.org"]["Subject"]) == "Order {'a': 1} for 5"

    for message_id, recipient in zip(ids, ("ann", "bob", "cy"), strict=True):
        wait_for(lambda m=message_id: _made(engine, m))  # type: ignore[misc]
        shown = await client.get(f"/api/v1/email/{message_id}", headers=headers)
        assert shown.status_code == 200, shown.text
        (only,) = shown.json()["Recipients"]
        assert only["Recipient"] == f"{recipient}@example.org"
        submission = engine.app.submission(UUID(message_id))
        assert submission.content["tags"] == ["orders"]


async def test_a_batch_from_a_stored_template_records_its_version(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API, Role.SCHEDULER, Role.RELAY}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    created = await client.post("/api.php", json={
        "APIKey": keys["AccountAPIKey"], "Command": "Template.Create", "TemplateName": "T",
        "Subject": "Hi {{ name }}", "PlainContent": "{% for i in items %}{{ i }} {% endfor %}",
    })  # fmt: skip
    template_id = created.json()["TemplateID"]
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    body = {"From": SENDER, "TemplateID": template_id, "TemplateData": {"items": [1, 2]},
            "Recipients": [{"email": "ann@example.org", "TemplateData": {"name": "Ann"}},
                           {"email": "bob@example.org", "TemplateData": {"items": 7}}]}  # fmt: skip
    answer = (await client.post("/api/v1/email/batch", json=body, headers=headers)).json()
    assert answer["Accepted"] == 1, answer
    wait_for(lambda: _made(engine, answer["Recipients"][0]["MessageID"]))
    submission = engine.app.submission(UUID(answer["Recipients"][0]["MessageID"]))
    assert submission.template == {"TemplateID": template_id, "Version": 1}
    assert (submission.content["subject"], submission.content["plain"]) == ("Hi Ann", "1 2 ")
    (error,) = answer["Recipients"][1]["Errors"]
    assert error["Code"] == 422
    assert error["Message"].startswith(
        "The template could not be rendered with this TemplateData: PlainContent"
    )
    with_content = await client.post(
        "/api/v1/email/batch", json={**body, "Subject": "Mine"}, headers=headers
    )
    assert _error(with_content) == (422, 422, Extensions.TEMPLATE_AND_CONTENT.message)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Recipients": []}, (422, 20, SendEmail.NO_RECIPIENT.message)),
        ({"Recipients": {"email": "a@example.org"}}, (422, 422, "Invalid Recipients")),
        (
            {"Recipients": [{"email": f"r{n}@example.org"} for n in range(1001)]},
            (422, 422, f"The number of recipients exceeds the allowed count of "
                       f"{MAX_BATCH_RECIPIENTS}"),
        ),
        ({"To": [{"email": "a@example.org", "name": "A"}]},
         (422, 422, Extensions.NOT_IN_A_BATCH.format(name="To").message)),
        ({"Subject": "Hi {{ name"}, (422, 422, "The content is not a valid template: "
                                     "Subject, line 1: unexpected end of template, expected "
                                     "'end of print statement'.")),
        ({"HtmlContent": "{% include 'x' %}"},
         (422, 422, "The content is not a valid template: HTMLContent, line 1: include, "
                    "import and extends are not allowed")),
        ({"From": {"email": "news@elsewhere.example", "name": "X"}},
         (422, 3, SendEmail.INVALID_FROM.message)),
        ({"TemplateData": "x"}, (422, 422, "Invalid TemplateData")),
        ({"Attachments": [{"filename": "a.bin", "content": "QUFB" * 30_000}]},
         (422, 422, Extensions.BATCH_ATTACHMENTS_TOO_LARGE.format(limit=100_000).message)),
        ({"TemplateID": "not-a-template"}, (422, 15, "Invalid TemplateID")),
    ],
)  # fmt: skip
async def test_a_fault_of_what_recipients_share_refuses_the_whole_batch(
    make_engine: Callable[..., Engine],
    api_client: Client,
    change: dict[str, Any],
    expected: tuple[int, int, str],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    body = {"From": SENDER, "Subject": "Hi {{ name }}", "ContentType": "html",
            "HtmlContent": "<p>Hi</p>", "Recipients": [{"email": "ann@example.org"}],
            **change}  # fmt: skip
    if "TemplateID" in change:
        body = {k: v for k, v in body.items() if k not in ("Subject", "HtmlContent")}
    before = engine.app.recorder.max_notification_id()
    assert _error(await client.post("/api/v1/email/batch", json=body, headers=headers)) == (
        expected
    )
    assert engine.app.recorder.max_notification_id() == before  # nothing stored


async def test_a_retried_batch_with_its_key_is_answered_again_and_sends_nothing_twice(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}", "Idempotency-Key": "b-1"}
    body = {"From": SENDER, "Subject": "Hi {{ n }}", "ContentType": "plain",
            "PlainContent": "x", "Recipients": [
                {"email": f"r{n}@example.org", "TemplateData": {"n": n}} for n in range(50)
            ]}  # fmt: skip
    first = await client.post("/api/v1/email/batch", json=body, headers=headers)
    assert first.json()["Accepted"] == 50
    stored = engine.app.recorder.max_notification_id()
    again = await client.post("/api/v1/email/batch", json=body, headers=headers)
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    # Only the key's day of use may have been recorded since (it is saved in the background).
    since = engine.app.recorder.select_notifications(start=(stored or 0) + 1, limit=100)
    assert all("SenderApiKey" in n.topic for n in since), [n.topic for n in since]
    other = await client.post(
        "/api/v1/email/batch", json={**body, "Subject": "Other"}, headers=headers
    )
    assert _error(other) == (422, 422, Extensions.IDEMPOTENCY_KEY_REUSED.message)


async def test_a_batch_made_again_after_a_crash_makes_each_recipient_once(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    """The fan-out dies after a part of a batch (here: its first 100 recipients made by
    hand) and reads the batch again: the rest is made, nothing twice, with the MessageIDs
    the answer gave."""
    engine = make_engine(roles=frozenset({Role.API}))  # no fan-out of its own
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    body = {"From": SENDER, "Subject": "Hi {{ n }}", "ContentType": "plain",
            "PlainContent": "x", "Recipients": [
                {"email": f"r{n}@example.org", "TemplateData": {"n": n}} for n in range(600)
            ]}  # fmt: skip
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    answer = (await client.post("/api/v1/email/batch", json=body, headers=headers)).json()
    ids = [r["MessageID"] for r in answer["Recipients"]]
    (notification,) = [
        n for n in engine.app.recorder.select_notifications(start=1, limit=10_000)
        if n.topic.endswith("Batch.Accepted")
    ]  # fmt: skip
    envelope = to_envelope(engine.app, notification)
    first = BatchFanOut(engine.app, _NoSource(), engine.writer)
    first_100 = {**envelope.data, "recipients": envelope.data["recipients"][:100]}
    first._make(envelope.aggregate_id, first_100)
    assert first.made == 100
    again = BatchFanOut(engine.app, _NoSource(), engine.writer)
    again._make(envelope.aggregate_id, envelope.data)
    assert again.made == 500
    subjects = [engine.app.submission(UUID(i)).content["subject"] for i in ids]
    assert subjects == [f"Hi {n}" for n in range(600)]
    accepted = [
        n for n in engine.app.recorder.select_notifications(start=1, limit=100_000)
        if n.topic.endswith("Message.Accepted")
    ]  # fmt: skip
    assert len(accepted) == 600


class _NoSource:
    """The fan-out's stream, unused when a test hands it a batch itself."""

    def poll(self, limit: int, timeout: float) -> list[Any]:
        return []

    def commit(self) -> None: ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...
