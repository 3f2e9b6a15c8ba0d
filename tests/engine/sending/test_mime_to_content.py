"""A message received over SMTP becomes the EmailContent the send service accepts."""

from __future__ import annotations

import base64
import contextlib
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mime import build_message
from domain.content import Address, EmailContent
from engine.sending.smtp_submission import (
    MAX_HEADER_SECTION_BYTES,
    UnusableMessage,
    content_from_mime,
)


def simple(**headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = "News <news@example.com>"
    message["To"] = "Jane <jane@example.org>"
    message["Subject"] = "Hello"
    for name, value in headers.items():
        del message[name.replace("_", "-")]
        message[name.replace("_", "-")] = value
    message.set_content("Hello, Jane.\n")
    return message.as_bytes(policy=SMTP)


def refused(raw: bytes, recipients: list[str] | None = None) -> str:
    with pytest.raises(UnusableMessage) as caught:
        content_from_mime(raw, recipients or ["jane@example.org"])
    return str(caught.value)


def test_a_plain_message() -> None:
    content = content_from_mime(simple(), ["jane@example.org"])
    assert content == EmailContent(
        subject="Hello",
        sender=Address("news@example.com", "News"),
        to=(Address("jane@example.org", "Jane"),),
        plain="Hello, Jane.\n",
    )


def test_non_ascii_subject_and_names_are_decoded() -> None:
    message = EmailMessage()
    message["From"] = "Jörg Müller <news@example.com>"
    message["To"] = "Zoë Ørsted <zoe@example.org>"
    message["Cc"] = "山田 太郎 <taro@example.org>"
    message["Subject"] = "Grüße aus Köln — 日本語の件名も"
    message.set_content("Grüße\n")
    raw = message.as_bytes(policy=SMTP)
    # The client encoded them (RFC 2047), as SMTP without SMTPUTF8 needs; the body is 8bit.
    assert raw.partition(b"\r\n\r\n")[0].isascii()
    content = content_from_mime(raw, ["zoe@example.org", "taro@example.org"])
    assert content.subject == "Grüße aus Köln — 日本語の件名も"
    assert content.sender == Address("news@example.com", "Jörg Müller")
    assert content.to == (Address("zoe@example.org", "Zoë Ørsted"),)
    assert content.cc == (Address("taro@example.org", "山田 太郎"),)
    assert content.plain == "Grüße\n"


def test_multipart_alternative_with_attachments() -> None:
    pdf = b"%PDF-1.4\x00\x01\xff binary"
    message = EmailMessage()
    message["From"] = "news@example.com"
    message["To"] = "jane@example.org"
    message["Subject"] = "Report"
    message.set_content("Plain text\n")
    message.add_alternative("<p>HTML</p>\n", subtype="html")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="report.pdf")
    message.add_attachment("a,b\n1,2\n", subtype="csv", filename="Zahlen €.csv")
    content = content_from_mime(message.as_bytes(policy=SMTP), ["jane@example.org"])
    assert content.sender == Address("news@example.com", "")
    assert content.plain == "Plain text\n"
    assert content.html == "<p>HTML</p>\n"
    assert [(a.filename, a.content_type) for a in content.attachments] == [
        ("report.pdf", "application/pdf"),
        ("Zahlen €.csv", "text/csv"),
    ]
    assert base64.b64decode(content.attachments[0].content_base64) == pdf
    # A text attachment travels in canonical form, CRLF line ends, and is kept so.
    assert base64.b64decode(content.attachments[1].content_base64) == b"a,b\r\n1,2\r\n"


def test_html_only_has_no_plain_part() -> None:
    message = MIMEText("<p>Only HTML</p>", "html", "utf-8")
    message["From"] = "news@example.com"
    message["To"] = "jane@example.org"
    message["Subject"] = "HTML"
    content = content_from_mime(message.as_bytes(), ["jane@example.org"])
    assert content.plain is None
    assert content.html == "<p>Only HTML</p>"


def test_legacy_mime_classes_and_a_nameless_attachment() -> None:
    message = MIMEMultipart("mixed")
    message["From"] = "news@example.com"
    message["To"] = "jane@example.org"
    message["Subject"] = "Legacy"
    message.attach(MIMEText("latin-1 text: café", "plain", "iso-8859-1"))
    message.attach(MIMEApplication(b"\x00\x01", "octet-stream"))
    content = content_from_mime(message.as_bytes(), ["jane@example.org"])
    assert content.plain == "latin-1 text: café"
    assert [a.filename for a in content.attachments] == ["attachment-1.bin"]


def test_the_envelope_decides_who_gets_a_copy() -> None:
    raw = simple(
        To="Jane <jane@example.org>, Shown <shown-only@example.org>", Cc="C <c@EXAMPLE.org>"
    )
    content = content_from_mime(raw, ["JANE@example.org", "c@example.org", "hidden@example.org"])
    assert content.to == (Address("JANE@example.org", "Jane"),)
    assert content.cc == (Address("c@example.org", "C"),)
    assert content.bcc == (Address("hidden@example.org"),)
    assert [(kind.value, a.email) for kind, a in content.recipients()] == [
        ("to", "JANE@example.org"),
        ("cc", "c@example.org"),
        ("bcc", "hidden@example.org"),
    ]


def test_only_headers_the_content_can_carry_are_kept() -> None:
    raw = (
        b"Received: from somewhere\r\n"
        b"Return-Path: <bounce@example.com>\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com\r\n"
        b"From: news@example.com\r\n"
        b"To: jane@example.org\r\n"
        b"Bcc: secret@example.org\r\n"
        b"Reply-To: Help <help@example.com>\r\n"
        b"Subject: Hi\r\n"
        b"Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <1@client>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain\r\n"
        b"X-Sendstream-Tags: forged\r\n"
        b"List-Unsubscribe: <mailto:unsubscribe@example.com>,\r\n <https://example.com/u/1>\r\n"
        b"X-Campaign: =?utf-8?q?Fr=C3=BChling?=\r\n"
        b"\r\n"
        b"Hi\r\n"
    )
    content = content_from_mime(raw, ["jane@example.org"])
    assert content.headers == (
        ("List-Unsubscribe", "<mailto:unsubscribe@example.com>, <https://example.com/u/1>"),
        ("X-Campaign", "Frühling"),
    )
    assert content.reply_to == (Address("help@example.com", "Help"),)
    assert content.bcc == ()  # a Bcc header names nobody: the envelope does


def test_header_injection_does_not_pass_line_breaks() -> None:
    raw = (
        b"From: news@example.com\r\n"
        b"To: jane@example.org\r\n"
        b"Subject: =?utf-8?q?Hello=0D=0AX-Injected:_yes?=\r\n"
        b"\r\n"
        b"Hi\r\n"
    )
    content = content_from_mime(raw, ["jane@example.org"])
    assert content.subject == "Hello  X-Injected: yes"
    rendered = build_message(
        content, recipient=content.to[0], message_id="m1", domain="example.com"
    )
    header_lines = rendered.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert not any(line.startswith(b"X-Injected") for line in header_lines)

    # In an address header the stdlib refuses a decoded line break outright, and so do we.
    for field in (b"From", b"To", b"Reply-To"):
        forged = field + b": =?utf-8?q?Eve=0D=0ABcc:_victim@example.org?= <eve@example.com>\r\n"
        others = b"From: news@example.com\r\n" if field != b"From" else b""
        reason = refused(others + forged + b"\r\nHi\r\n")
        assert f"{field.decode()} header is not a valid address list" in reason
    custom = b"From: news@example.com\r\nX-Evil: =?utf-8?q?a=0D=0AB:_c?=\r\n\r\nHi\r\n"
    assert "the value of X-Evil is not one line" in refused(custom)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"To: jane@example.org\r\nSubject: x\r\n\r\nHi\r\n", "no From"),
        (b"From: news@example.com\r\nTo: jane@example.org\r\n\r\n   \r\n", "no text/plain"),
        (
            b"From: a@example.com, b@example.com\r\nTo: jane@example.org\r\n\r\nHi\r\n",
            "one address",
        ),
        (b"From: not an address\r\nTo: jane@example.org\r\n\r\nHi\r\n", "Invalid from"),
        (b"From: news@example.com\r\nTo: jane@example.org\r\n\r\nHi\x00\r\n", "NUL"),
        (b"From: J\xc3\xb6rg <news@example.com>\r\nTo: jane@example.org\r\n\r\nHi\r\n", "8-bit"),
        (
            b"From: news@example.com\r\nContent-Type: text/plain; charset=x-nonsense\r\n\r\nHi\r\n",
            "unknown charset",
        ),
        (
            b"From: news@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xff\r\n",
            "not valid utf-8",
        ),
        (
            b"From: news@example.com\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
            "boundary",
        ),
        (b"\x89PNG\r\n\x1a\n\xff\xd8\xff\xe0 binary garbage", "8-bit"),
        (bytes(range(1, 256)) * 10, "8-bit"),
        (b"", "no From"),
    ],
)
def test_unusable_input_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    assert reason in refused(raw)


def test_enormous_headers_are_refused() -> None:
    folded = b"X-Big: start\r\n" + b" more\r\n" * (MAX_HEADER_SECTION_BYTES // 6)
    raw = b"From: news@example.com\r\nTo: jane@example.org\r\n" + folded + b"\r\nHi\r\n"
    assert "header section exceeds" in refused(raw)
    long_value = b"X-Long: " + b"a " * 5000 + b"\r\n"
    raw = b"From: news@example.com\r\nTo: jane@example.org\r\n" + long_value + b"\r\nHi\r\n"
    assert "too long" in refused(raw)


def test_a_bad_envelope_recipient_is_refused() -> None:
    assert "invalid recipient" in refused(simple(), ["not-an-address"])
    with pytest.raises(UnusableMessage):
        content_from_mime(simple(), [])


@pytest.mark.parametrize("encoded", [False, True])
def test_a_forwarded_message_travels_as_an_attachment(encoded: bool) -> None:
    inner = EmailMessage()
    inner["From"] = "someone@example.net"
    inner["Subject"] = "Inner"
    inner.set_content("The forwarded text\n")
    outer = EmailMessage()
    outer["From"] = "news@example.com"
    outer["To"] = "jane@example.org"
    outer["Subject"] = "Fwd"
    outer.set_content("See below\n")
    if encoded:  # what some clients send, against RFC 2046
        source = inner.as_bytes(policy=SMTP)
        outer.add_attachment(source, maintype="message", subtype="rfc822", filename="fwd.eml")
    else:
        outer.add_attachment(inner)
    content = content_from_mime(outer.as_bytes(policy=SMTP), ["jane@example.org"])
    assert content.plain == "See below\n"  # not the forwarded message's own text
    (attachment,) = content.attachments
    assert attachment.content_type == "message/rfc822"
    forwarded = base64.b64decode(attachment.content_base64)
    assert b"Subject: Inner" in forwarded and b"The forwarded text" in forwarded


def test_encoded_word_filenames_are_decoded() -> None:
    raw = (
        b"From: news@example.com\r\nTo: jane@example.org\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="=?UTF-8?B?w5xiZXJzaWNodC5wZGY=?="\r\n\r\n'
        b"JVBERg==\r\n"
        b"--b--\r\n"
    )
    (attachment,) = content_from_mime(raw, ["jane@example.org"]).attachments
    assert attachment.filename == "Übersicht.pdf"
    assert base64.b64decode(attachment.content_base64) == b"%PDF"


def sample() -> bytes:
    message = EmailMessage()
    message["From"] = "Jörg <news@example.com>"
    message["To"] = "Jane <jane@example.org>"
    message["Subject"] = "Grüße"
    message.set_content("Plain\n")
    message.add_alternative("<p>HTML</p>\n", subtype="html")
    message.add_attachment(b"\x00\x01", maintype="application", subtype="pdf", filename="a.pdf")
    return message.as_bytes(policy=SMTP)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_a_damaged_message_gives_content_or_a_reason_never_a_crash(data: st.DataObject) -> None:
    raw = bytearray(sample())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 200))]
        else:
            raw[at:at] = data.draw(st.sampled_from([b"\r\n", b"--", b"=?", b":", b'"', b"\xff"]))
        if not raw:
            raw = bytearray(b"x")
    with contextlib.suppress(UnusableMessage):
        content = content_from_mime(bytes(raw), ["jane@example.org"])
        # Whatever is accepted renders, for the delivery worker.
        build_message(content, recipient=content.recipients()[0][1], message_id="m", domain="x.org")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_content_or_a_reason_never_a_crash(raw: bytes) -> None:
    with contextlib.suppress(UnusableMessage):
        content_from_mime(b"From: news@example.com\r\nTo: jane@example.org\r\n" + raw, ["a@b.org"])
