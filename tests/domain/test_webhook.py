"""The webhook aggregate and its rules: event names, parameter maps, the retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.webhook import (
    EVENT_FIELDS,
    WEBHOOK_EVENTS,
    InvalidParameterMap,
    Webhook,
    canonical_event,
    max_attempts,
    named_fields,
    parameter_map,
    retry_delay,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def new_webhook() -> Webhook:
    return Webhook(
        id=uuid4(), account_id=uuid4(), domain_id=uuid4(), event_type="open", event_name="open",
        url="https://hooks.example/open", method="POST", parameters={}, added_at=NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("delivery", "delivery"), ("Delivered", "delivery"), ("bounced", "bounce"),
     (" OPEN ", "open"), ("clicked", "click"), ("send", "sent"), ("sent", "sent"),
     ("blocked", "block"), ("spam", "complaint"), ("unsubscribed", "unsubscribe")],
)  # fmt: skip
def test_documented_event_names_and_their_synonyms(given: str, canonical: str) -> None:
    assert canonical_event(given) == canonical


@pytest.mark.parametrize("given", ["", "deferred", "opens!", "delivery ; drop", "x" * 300])
def test_other_event_names_are_refused(given: str) -> None:
    assert canonical_event(given) is None


def test_every_event_has_its_documented_fields() -> None:
    assert set(EVENT_FIELDS) == WEBHOOK_EVENTS
    assert EVENT_FIELDS["click"][:5] == (
        "UserID", "TransactionalEmailID", "TransactionalGroupID", "EmailAddress", "URL",
    )  # fmt: skip


def test_a_parameter_map_renames_and_blank_names_are_not_sent() -> None:
    chosen = parameter_map("open", {"emailaddress": "email", "IPAddress": " ip ", "Browser": ""})
    assert chosen == {"EmailAddress": "email", "IPAddress": "ip", "Browser": ""}
    values = {"EmailAddress": "a@b.example", "IPAddress": "192.0.2.1", "Browser": "Mozilla"}
    assert named_fields("open", chosen, values) == {"email": "a@b.example", "ip": "192.0.2.1"}


def test_no_map_sends_every_documented_field_under_its_own_name() -> None:
    fields = named_fields("complaint", {}, {"AbuseID": "7"})
    assert list(fields) == list(EVENT_FIELDS["complaint"])
    assert fields["AbuseID"] == "7" and fields["UserID"] == ""


@pytest.mark.parametrize(
    "given",
    [{"NoSuchField": "x"}, {"URL": "u"}, {"EmailAddress": 5}, {"EmailAddress": "a\nb"},
     {"EmailAddress": "n" * 101}],
)  # fmt: skip
def test_bad_parameter_maps_are_refused(given: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterMap):
        parameter_map("open", given)  # "URL" is a click's field, not an open's


def test_retries_follow_the_schedule_then_stop_after_about_a_day() -> None:
    delays = [retry_delay(n) for n in range(1, max_attempts() + 1)]
    assert delays[:7] == [5, 30, 120, 600, 1800, 3600, 3600]
    assert delays[-1] is None and None not in delays[:-1]
    spent = sum(d for d in delays if d is not None)
    assert 23 * 3600 <= spent <= 24 * 3600
    assert [retry_delay(n, (1.0,)) for n in (1, 2)] == [1.0, 1.0]  # a test's quick schedule


def test_disabling_lasts_until_the_url_or_parameters_change() -> None:
    webhook = new_webhook()
    webhook.disable("1000 consecutive failed calls", NOW)
    assert webhook.status == "Disabled" and not webhook.is_active
    webhook.change(webhook.url, webhook.method, dict(webhook.parameters))
    assert webhook.status == "Disabled"  # nothing changed, nothing lifted
    webhook.change("https://hooks.example/v2", "POST", {})
    assert webhook.status == "Active" and webhook.disabled_reason == ""
    webhook.delete(NOW)
    assert webhook.status == "Deleted"
    webhook.disable("late", NOW)
    assert webhook.status == "Deleted"
