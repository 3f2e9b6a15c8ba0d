"""Every field rule of POST /api/v1/email gives its documented code and text."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import RequestRejected, SendEmail
from engine.sending.request import parse_send_request

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Subject": "Hello World",
        "ContentType": "html",
        "HtmlContent": "<p>Hello, World!</p>",
        "From": {"email": "sender@example.com", "name": "John Doe"},
        "To": [{"email": "recipient@example.org", "name": "Jane Doe"}],
    }
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def codes(body: dict[str, Any]) -> list[int]:
    with pytest.raises(RequestRejected) as caught:
        parse_send_request(body, max_recipients=5, max_reply_to=2, now=NOW)
    return [e.code for e in caught.value.errors]


def test_the_seed_example_is_accepted() -> None:
    content = parse_send_request(valid(), max_recipients=5, max_reply_to=2, now=NOW)
    assert content.subject == "Hello World"
    assert content.to[0].email == "recipient@example.org"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"Subject": ...}, [8]),
        ({"Subject": "  "}, [8]),
        ({"Subject": 5}, [8]),
        ({"ContentType": ...}, [9]),
        ({"ContentType": "rtf"}, [9]),
        ({"HtmlContent": ...}, [10]),
        ({"ContentType": "plain"}, [11]),
        ({"From": ...}, [3]),
        ({"From": {"email": "sender@example.com"}}, [3]),
        ({"From": {"email": "not-an-address", "name": "x"}}, [23]),
        ({"To": ...}, [20]),
        ({"To": []}, [20]),
        ({"To": [{"name": "No Address"}]}, [18]),
        ({"To": [{"email": "bad@", "name": "x"}]}, [19]),
        ({"CC": [{"email": "c@example.org"}]}, [21]),
        ({"CC": [{"email": "c@@example.org", "name": "c"}]}, [22]),
        ({"BCC": {"email": "b@example.org", "name": "b"}}, [24]),
        ({"BCC": [{"email": "b@example.org"}]}, [25]),
        ({"BCC": [{"email": "b@", "name": "b"}]}, [26]),
        ({"BCC": [{"email": f"b{i}@example.org", "name": "b"} for i in range(6)]}, [27]),
        ({"ReplyTo": {"email": "r@example.org", "name": "r"}}, [28]),
        ({"ReplyTo": [{"email": "r@example.org"}]}, [29]),
        ({"ReplyTo": [{"email": "r@", "name": "r"}]}, [30]),
        ({"ReplyTo": [{"email": f"r{i}@example.org", "name": "r"} for i in range(3)]}, [31]),
        ({"TemplateID": "t1"}, [15]),
        ({"TargetListID": "l1"}, [16]),
        ({"SendAt": "next tuesday"}, [422]),
        ({"Headers": {"X-Bad\r\nBcc": "x"}}, [422]),
        ({"Headers": {"X-Campaign": "a\r\nBcc: victim@example.org"}}, [422]),
        ({"Headers": {"From": "spoof@example.net"}}, [422]),
        ({"Attachments": [{"filename": "a.txt", "content": "%%%"}]}, [422]),
        ({"Tags": "x" * 200}, [422]),
        ({"Subject": ..., "ContentType": ..., "To": ...}, [8, 9, 20]),
    ],
)
def test_each_broken_rule_has_its_code(changes: dict[str, Any], expected: list[int]) -> None:
    assert codes(valid(**changes)) == expected


def test_error_texts_are_the_documented_ones() -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_send_request(valid(Subject=...), max_recipients=5, max_reply_to=2, now=NOW)
    assert caught.value.errors == (SendEmail.MISSING_SUBJECT,)
    assert SendEmail.MISSING_SUBJECT.message == "Missing Subject"


def test_all_optional_fields_are_read() -> None:
    attachment = base64.b64encode(b"hello").decode()
    content = parse_send_request(
        valid(
            PlainContent="Hello",
            CC=[{"email": "c@example.org", "name": "C"}],
            BCC=[{"email": "b@example.org", "name": "B"}],
            ReplyTo=[{"email": "r@example.org", "name": "R"}],
            Attachments=[{"filename": "a.txt", "type": "text/plain", "content": attachment}],
            Headers={"X-Campaign": "spring"},
            Tags=["welcome", "welcome", "onboarding"],
            TrackLinks="1",
            TrackOpens=False,
            SendAt="2026-12-01 09:30:00",
        ),
        max_recipients=5,
        max_reply_to=2,
        now=NOW,
    )
    assert content.plain == "Hello" and content.html
    assert [a.email for a in content.cc] == ["c@example.org"]
    assert content.attachments[0].filename == "a.txt"
    assert content.headers == (("X-Campaign", "spring"),)
    assert content.tags == ("welcome", "onboarding")
    assert content.track_links is True and content.track_opens is False
    assert content.send_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_line_breaks_in_subject_and_names_cannot_start_a_header() -> None:
    content = parse_send_request(
        valid(
            Subject="Hi\r\nBcc: victim@example.org",
            From={"email": "sender@example.com", "name": "J\nBcc: x@example.org"},
        ),
        max_recipients=5,
        max_reply_to=2,
        now=NOW,
    )
    assert "\n" not in content.subject and "\r" not in content.subject
    assert "\n" not in content.sender.name


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELD_NAMES = st.sampled_from(
    ["Subject", "ContentType", "HtmlContent", "PlainContent", "From", "To", "CC", "BCC",
     "ReplyTo", "Attachments", "Headers", "Tags", "TrackLinks", "TrackOpens", "SendAt"]
) | st.text(max_size=12)  # fmt: skip


@given(st.dictionaries(FIELD_NAMES, JSON_VALUES))
def test_arbitrary_json_is_accepted_or_rejected_never_crashes(body: dict[str, Any]) -> None:
    try:
        parse_send_request(body, max_recipients=5, max_reply_to=2, now=NOW)
    except RequestRejected as rejected:
        assert rejected.errors
