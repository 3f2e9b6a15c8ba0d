"""Two accounts on one engine: each command that takes an id another account's command
answered treats that id as unknown (object-level authorization, OWASP API1).

The pairs come from the OpenAPI document's links (a command that answers an id links to
every command that takes it), so a new command is covered as soon as it is documented.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import Served

# What each producing command needs to succeed for the first account.
PRODUCERS: dict[str, dict[str, Any]] = {
    "EmailGateway.AddDomain": {"DomainName": "other-example.com"},
    "Campaign.Create": {"CampaignName": "Summer Sale Campaign"},
    "List.Create": {"ListName": "Newsletter"},
    "Template.Create": {"TemplateName": "Receipt", "Subject": "Hi", "PlainContent": "Hello"},
}
# What needs the domain the first account added.
DOMAIN_PRODUCERS: dict[str, dict[str, Any]] = {
    "EmailGateway.AddAPI": {"Description": "My new API key"},
    "EmailGateway.AddSMTP": {},
    "EmailGateway.AddWebhook": {"Event": "bounce", "WebhookURL": "http://127.0.0.1:9/hook"},
}


def _call(served: Served, key: str, command: str, **params: Any) -> httpx.Response:
    return httpx.post(
        f"{served.url}/api.php", json={"APIKey": key, "Command": command, **params}, timeout=30
    )


def test_no_command_reaches_another_accounts_objects(served: Served) -> None:
    owner, intruder = served.keys["ACCOUNT_KEY"], served.other_keys["ACCOUNT_KEY"]
    document = httpx.get(f"{served.url}/openapi.json").json()
    answers: dict[str, dict[str, Any]] = {}
    for command, params in PRODUCERS.items():
        answers[command] = _call(served, owner, command, **params).json()
        assert answers[command]["Success"], answers[command]
    domain_id = answers["EmailGateway.AddDomain"]["NewSenderDomainID"]
    for command, params in DOMAIN_PRODUCERS.items():
        answers[command] = _call(served, owner, command, DomainID=domain_id, **params).json()
        assert answers[command]["Success"], answers[command]

    tried = []
    for command, answer in answers.items():
        operation = document["paths"][f"/api.php#{command}"]["post"]
        for link in operation["responses"]["200"]["links"].values():
            ((parameter, expression),) = link["requestBody"].items()
            taken = answer[expression.removeprefix("$response.body#/")]
            target = _command_named(document, link["operationId"])
            refused = _call(served, intruder, target, **{parameter: taken})
            assert refused.json()["Success"] is False, (target, parameter, refused.text)
            tried.append(target)
    assert len(tried) >= 30 and "EmailGateway.DeleteDomain" in tried, tried

    # Nothing the intruder tried changed the owner's objects.
    shown = _call(served, owner, "EmailGateway.GetDomain", DomainID=domain_id).json()
    assert shown["Success"] and shown["Domain"]["DomainName"] == "other-example.com"
    campaign_id = answers["Campaign.Create"]["CampaignID"]
    campaign = _call(served, owner, "Campaign.Get", CampaignID=campaign_id).json()
    assert campaign["Success"], campaign
    webhooks = _call(served, owner, "EmailGateway.GetWebhooks", DomainID=domain_id).json()
    assert [w["WebhookID"] for w in webhooks["Webhooks"]] == [
        answers["EmailGateway.AddWebhook"]["NewWebhookID"]
    ]


def _command_named(document: dict[str, Any], operation_id: str) -> str:
    for path, methods in document["paths"].items():
        if methods.get("post", {}).get("operationId") == operation_id and "#" in path:
            return str(path.split("#", 1)[1])
    raise AssertionError(f"no command is {operation_id}")


def test_the_rest_endpoints_do_not_reach_another_accounts_mail_or_webhooks(
    served: Served,
) -> None:
    def bearer(keys: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys['SENDER_KEY']}"}

    owner, intruder = bearer(served.keys), bearer(served.other_keys)
    sent = httpx.post(
        f"{served.url}/api/v1/email",
        headers=owner,
        json={"Subject": "Hello World", "ContentType": "plain", "PlainContent": "Hello",
              "From": {"email": "sender@example.com", "name": "Sender"},
              "To": [{"email": "a@example.net", "name": "A"}]},
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["MessageID"]
    assert httpx.get(f"{served.url}/api/v1/email/{message_id}", headers=intruder).status_code == 404
    assert httpx.get(f"{served.url}/api/v1/email/{message_id}", headers=owner).status_code == 200

    added = httpx.post(
        f"{served.url}/api/v1/webhooks", headers=owner,
        params={"Event": "delivered", "WebhookURL": "http://127.0.0.1:9/hook"},
    )  # fmt: skip
    assert added.status_code == 200, added.text
    webhook_id = added.json()["NewWebhookID"]
    refused = httpx.request(
        "DELETE", f"{served.url}/api/v1/webhooks", headers=intruder,
        params={"WebhookID": webhook_id},
    )  # fmt: skip
    assert refused.status_code in (404, 422), refused.text
    listed = httpx.get(f"{served.url}/api/v1/webhooks", headers=owner).json()
    assert webhook_id in [w["WebhookID"] for w in listed["Webhooks"]]
    events = httpx.get(
        f"{served.url}/api/v1/events", headers=intruder, params={"MessageID": message_id}
    ).json()
    assert events["Events"] == [], events
