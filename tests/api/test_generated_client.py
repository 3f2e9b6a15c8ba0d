"""A client generated from ``/openapi.json`` works: openapi-python-client writes it, and it
sends an email, finds its events, and adds, lists and deletes a webhook, against a
running engine. (The generator runs from ``.venv-tools``, which ``make test-deps``
makes: its own pins differ from the engine's.)"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served

GENERATOR = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "openapi-python-client"


@pytest.fixture
def generated(served: Served, tmp_path: Path) -> Any:
    """The generated package, imported."""
    if not GENERATOR.exists():
        pytest.fail(f"{GENERATOR} is missing: make test-deps installs it")
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{served.url}/openapi.json").content)
    made = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--meta", "none",
         "--output-path", str(tmp_path / "sendstream_client")],
        # Its ruff (formatting what it writes) beside it.
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    assert "some pieces may be missing" not in made.stdout + made.stderr, made.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("sendstream_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.split(".")[0] == "sendstream_client"]:
            del sys.modules[name]


def test_a_generated_client_sends_lists_events_and_manages_webhooks(
    served: Served, generated: Any
) -> None:
    email = importlib.import_module("sendstream_client.api.email.send_email")
    events = importlib.import_module("sendstream_client.api.events.get_events")
    add = importlib.import_module("sendstream_client.api.webhooks.add_webhook")
    listing = importlib.import_module("sendstream_client.api.webhooks.get_webhooks")
    delete = importlib.import_module("sendstream_client.api.webhooks.delete_webhook")
    models = importlib.import_module("sendstream_client.models")
    client = generated.AuthenticatedClient(base_url=served.url, token=served.keys["SENDER_KEY"])

    sent = email.sync(
        client=client,
        body=models.SendEmailRequest.from_dict({
            "Subject": "Hello", "ContentType": "plain", "PlainContent": "Hi there",
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": "reader@example.org", "name": "Reader"}],
        }),
    )  # fmt: skip
    assert isinstance(sent, models.SendEmailResponse), sent
    message_id = sent.message_id

    deadline = time.monotonic() + 30
    while True:  # the reports trail the stream by up to a second
        found = events.sync(client=client, message_id=message_id)
        assert isinstance(found, models.EventsResponse), found
        if found.total_records:
            break
        assert time.monotonic() < deadline, "no event of the sent email was listed"
        time.sleep(0.3)
    assert {event.message_id for event in found.events} == {message_id}
    assert "accepted" in {event.event_type for event in found.events}

    added = add.sync(
        client=client, event=models.AddWebhookEvent("delivered"),
        webhook_url="http://127.0.0.1:9/hooks",
    )  # fmt: skip
    assert isinstance(added, models.NewWebhookResponse), added
    listed = listing.sync(client=client)
    assert isinstance(listed, models.WebhooksResponse), listed
    assert [w.webhook_id for w in listed.webhooks] == [added.new_webhook_id]
    assert listed.signing_key.startswith("whsec_")
    deleted = delete.sync(client=client, webhook_id=added.new_webhook_id)
    assert isinstance(deleted, models.DeletedWebhookResponse), deleted

    refused = events.sync(
        client=generated.AuthenticatedClient(base_url=served.url, token="snd_unknown")
    )
    # Each status has its own model in the client (the codes it may carry differ); each
    # has the ErrorsResponse's fields.
    assert type(refused).__name__ == "GetEventsResponse401"
    assert [(e.code, e.message) for e in refused.errors] == [(13, "Invalid SenderAPIKey")]
