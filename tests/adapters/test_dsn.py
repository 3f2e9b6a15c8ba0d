"""Parsing real bounces and complaints: every sample of tests/fixtures/bounces must be
read and classified as this file's table says; and hostile input must never raise."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dsn import (
    DeliveryReport,
    FeedbackReport,
    classify_recipient,
    is_complaint,
    parse_report,
)
from tests.fixtures.bounces import make_postfix_samples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"

# Each sample: what parse_report reads from it, per recipient (recipient, action, kind,
# enhanced status the class was decided on; "" when the report gave none), or None for
# a message that is no report (a person's reply, an auto-reply). Each expectation was
# checked against the sample's text; where a sample says the reason only in words, the
# words decide (TEXT_RULES of domain.bounces).
EXPECTED: dict[str, list[tuple[str, str, str, str]] | None] = {
    "flufl/aol_01.txt": [("screenname@aol.com", "failed", "block", "")],
    "flufl/bounce_01.txt": [("", "failed", "soft", "")],
    "flufl/bounce_02.txt": [("userx@example.com", "failed", "hard", "5.0.0")],
    "flufl/bounce_03.txt": [("userx@example.uk", "failed", "hard", "")],
    "flufl/dsn_01.txt": [("userx@example.com", "failed", "soft", "5.0.0")],
    "flufl/dsn_02.txt": [("zzzzz@example.uk", "failed", "soft", "4.4.7")],
    "flufl/dsn_03.txt": [("userx@example.be", "failed", "soft", "")],
    "flufl/dsn_04.txt": [("userx@example.ch", "failed", "soft", "5.0.0")],
    "flufl/dsn_05.txt": [("userx@example.cz", "delayed", "soft", "4.4.1")],
    "flufl/dsn_06.txt": [("userx@example.com", "delayed", "soft", "4.4.0")],
    "flufl/dsn_07.txt": [("userx@example.nz", "delayed", "soft", "4.4.1")],
    "flufl/dsn_08.txt": [("userx@example.de", "delayed", "soft", "4.0.0")],
    "flufl/dsn_09.txt": [("userx@example.com", "failed", "block", "5.7.1")],
    "flufl/dsn_10.txt": [("anne.person@dom.ain", "failed", "hard", "5.0.0")],
    "flufl/dsn_11.txt": [("joem@example.com", "failed", "hard", "5.1.1")],
    "flufl/dsn_12.txt": [("userx@example.jp", "failed", "hard", "5.1.1")],
    "flufl/dsn_13.txt": [("userx@example.com", "failed", "hard", "5.1.1")],
    "flufl/dsn_14.txt": [("userx@example.com.dk", "failed", "hard", "5.1.1")],
    "flufl/dsn_15.txt": [("userx@example.com", "failed", "hard", "5.1.1")],
    "flufl/dsn_16.txt": [("userx@example.com", "failed", "hard", "5.0.0")],
    "flufl/dsn_17.txt": [("userx@example.fi", "delayed", "soft", "4.3.0")],
    "flufl/dsn_18.txt": [("email@replaced.net", "failed", "hard", "5.0.0")],
    "flufl/dumbass_01.txt": [("", "failed", "hard", "")],
    "flufl/exim_01.txt": [("userx@its.example.nl", "failed", "hard", "5.1.1")],
    "flufl/groupwise_01.txt": [("userx@example.EDU", "failed", "hard", "")],
    "flufl/groupwise_02.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/groupwise_03.txt": None,
    "flufl/hotpop_01.txt": [("userx@example.com", "failed", "soft", "")],
    "flufl/llnl_01.txt": [("user1@example.gov", "failed", "hard", "")],
    "flufl/microsoft_01.txt": [("userx@example.COM", "failed", "hard", "")],
    "flufl/microsoft_02.txt": [("userx@example.COM", "failed", "hard", "")],
    "flufl/microsoft_03.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/microsoft_04.txt": [("userx@example.COM", "failed", "hard", "")],
    "flufl/netscape_01.txt": [
        ("aaaaa@corel.com", "failed", "hard", ""),
        ("bbbbb@corel.com", "failed", "hard", ""),
    ],
    "flufl/newmailru_01.txt": [("zzzzz@newmail.ru", "failed", "soft", "")],
    "flufl/postfix_01.txt": [("xxxxx@local.ie", "failed", "hard", "5.1.1")],
    "flufl/postfix_02.txt": [("yyyyy@digicool.com", "failed", "soft", "")],
    "flufl/postfix_03.txt": [("ttttt@ggggg.com", "failed", "hard", "")],
    "flufl/postfix_04.txt": [("userx@mail1.example.com", "failed", "soft", "")],
    "flufl/postfix_05.txt": [("userx@example.net", "failed", "hard", "5.0.0")],
    "flufl/qmail_01.txt": [("userx@example.de", "failed", "hard", "")],
    "flufl/qmail_02.txt": [("userx@example.com", "failed", "soft", "")],
    "flufl/qmail_03.txt": [("userx@example.jp", "failed", "hard", "5.1.1")],
    "flufl/qmail_04.txt": [("userx@example.au", "failed", "hard", "5.0.0")],
    "flufl/qmail_05.txt": [("userx@example.com", "failed", "hard", "5.0.0")],
    "flufl/qmail_06.txt": [("ntl@xxx.com", "failed", "soft", "")],
    "flufl/qmail_07.txt": [("user@example.net", "failed", "soft", "")],
    "flufl/qmail_08.txt": None,
    "flufl/sendmail_01.txt": [
        ("zzzzz@nfg.nl", "failed", "soft", "5.0.0"),
        ("zzzzz@shaft.coal.nl", "failed", "soft", "5.0.0"),
    ],
    "flufl/simple_01.txt": [("bbbsss@example.com", "failed", "soft", "5.0.0")],
    "flufl/simple_02.txt": [("userx@example.net", "failed", "soft", "")],
    "flufl/simple_03.txt": [("userx@example.za", "delayed", "soft", "")],
    "flufl/simple_04.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_05.txt": [("userx@example.net", "failed", "hard", "")],
    "flufl/simple_06.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_07.txt": [("userx@example.net", "failed", "soft", "")],
    "flufl/simple_08.txt": [("userx@example.de", "failed", "hard", "5.0.0")],
    "flufl/simple_09.txt": [("userx@example.de", "failed", "soft", "")],
    "flufl/simple_10.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_11.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_12.txt": [("userx@example.ac.jp", "failed", "hard", "")],
    "flufl/simple_13.txt": [("userx@example.fr", "failed", "hard", "")],
    "flufl/simple_14.txt": [
        ("userx@example.com", "failed", "soft", "5.0.0"),
        ("usery@example.com", "failed", "soft", "5.0.0"),
    ],
    "flufl/simple_15.txt": [("userx@example.be", "failed", "hard", "5.1.1")],
    "flufl/simple_16.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_17.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_18.txt": [("userx@example.com", "failed", "soft", "5.0.0")],
    "flufl/simple_19.txt": [("userx@example.com.ar", "failed", "hard", "5.1.1")],
    "flufl/simple_20.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_21.txt": [("userx@example.com", "delayed", "soft", "")],
    "flufl/simple_22.txt": [("User@example.org", "delayed", "soft", "")],
    "flufl/simple_23.txt": [("userx@example.it", "failed", "hard", "")],
    "flufl/simple_24.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_25.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_26.txt": [("userx@example.it", "failed", "hard", "")],
    "flufl/simple_27.txt": [("userx@example.net.py", "failed", "hard", "")],
    "flufl/simple_28.txt": [("userx@example.com", "delayed", "soft", "")],
    "flufl/simple_29.txt": [("userx@example.com", "failed", "hard", "5.0.0")],
    "flufl/simple_30.txt": [("userx@example.com", "failed", "hard", "5.3.0")],
    "flufl/simple_31.txt": [("userx@example.fr", "failed", "hard", "")],
    "flufl/simple_32.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/simple_33.txt": [("userx@example.com", "failed", "hard", "5.3.0")],
    "flufl/simple_34.txt": [("roland@example.com", "failed", "hard", "5.1.1")],
    "flufl/simple_35.txt": [("calvin@example.com", "delayed", "soft", "")],
    "flufl/simple_36.txt": [("userx@example.com", "failed", "hard", "5.0.0")],
    "flufl/simple_37.txt": [("user@example.edu", "failed", "hard", "")],
    "flufl/simple_38.txt": [("userx@example.com", "failed", "soft", "")],
    "flufl/simple_39.txt": [("userx@example.ru", "failed", "hard", "")],
    "flufl/simple_40.txt": [("user@example.com", "delayed", "soft", "")],
    "flufl/simple_41.txt": [("userx@example.com", "failed", "hard", "5.0.0")],
    "flufl/simple_42.txt": [("david...@gmail.com", "failed", "block", "5.7.1")],
    "flufl/simple_43.txt": [("", "failed", "hard", "")],
    "flufl/simple_44.txt": [("user@example.com", "failed", "soft", "4.4.4")],
    "flufl/sina_01.txt": [
        ("userx@sina.com", "failed", "hard", ""),
        ("usery@sina.com", "failed", "hard", ""),
    ],
    "flufl/smtp32_01.txt": [("userx@example.ph", "failed", "hard", "")],
    "flufl/smtp32_02.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/smtp32_03.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/smtp32_04.txt": [
        ("after_another@example.net", "failed", "hard", "5.3.0"),
        ("one_bad_address@example.net", "failed", "hard", "5.3.0"),
    ],
    "flufl/smtp32_05.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/smtp32_06.txt": [("Absolute_garbage_addr@example.net", "failed", "hard", "5.3.0")],
    "flufl/smtp32_07.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/yahoo_01.txt": [("userx@example.com", "failed", "soft", "4.4.1")],
    "flufl/yahoo_02.txt": [("userx@example.es", "failed", "soft", "")],
    "flufl/yahoo_03.txt": [("userx@example.com", "failed", "hard", "")],
    "flufl/yahoo_04.txt": [
        ("userx@example.es", "failed", "soft", ""),
        ("usery@example.uk", "failed", "soft", ""),
    ],
    "flufl/yahoo_05.txt": [
        ("userx@example.com", "failed", "hard", ""),
        ("usery@example.com", "failed", "hard", ""),
    ],
    "flufl/yahoo_06.txt": [
        ("usera@example.com", "failed", "hard", ""),
        ("userx@example.com", "failed", "hard", ""),
        ("usery@example.com", "failed", "hard", ""),
        ("userz@example.com", "failed", "hard", ""),
    ],
    "flufl/yahoo_07.txt": [
        ("userw@example.com", "failed", "hard", ""),
        ("userx@example.com", "failed", "hard", ""),
        ("usery@example.com", "failed", "hard", ""),
        ("userz@example.com", "failed", "hard", ""),
    ],
    "flufl/yahoo_08.txt": [
        ("usera@example.com", "failed", "hard", ""),
        ("userb@example.com", "failed", "hard", ""),
        ("userc@example.com", "failed", "hard", ""),
        ("userd@example.com", "failed", "hard", ""),
        ("usere@example.com", "failed", "hard", ""),
        ("userf@example.com", "failed", "hard", ""),
    ],
    "flufl/yahoo_09.txt": [
        ("userx@example.com", "failed", "hard", ""),
        ("usery@example.com", "failed", "hard", ""),
    ],
    "flufl/yahoo_10.txt": [
        ("userx@example.com", "failed", "hard", ""),
        ("usery@example.com", "failed", "hard", ""),
        ("userz@example.com", "failed", "hard", ""),
    ],
    "flufl/yahoo_11.txt": [("bad_user@aol.com", "failed", "hard", "5.1.1")],
    "flufl/yahoo_12.txt": [("user@yahoo.com", "failed", "hard", "")],
    "flufl/yahoo_13.txt": [("bogus-address@example.net", "failed", "hard", "5.1.1")],
    "flufl/yale_01.txt": [
        ("userx@cs.yale.edu", "failed", "hard", ""),
        ("userx@yale.edu", "failed", "hard", ""),
    ],
    "postfix/local-unknown-user.eml": [("nosuchuser@local.test", "failed", "hard", "5.1.1")],
    "postfix/remote-blocked.eml": [("blocked@remote.test", "failed", "block", "5.7.1")],
    "postfix/remote-greylisted.eml": [("greylisted@remote.test", "failed", "soft", "4.2.0")],
    "postfix/remote-user-unknown.eml": [("gone@remote.test", "failed", "hard", "5.1.1")],
    "postfix/unreachable-domain.eml": [("someone@unreachable.test", "failed", "soft", "4.4.1")],
    "postfix/virtual-mailbox-full.eml": [("full@full.test", "failed", "soft", "5.2.2")],
}


def _samples() -> list[str]:
    return sorted(
        str(path.relative_to(FIXTURES))
        for folder in ("flufl", "postfix")
        for path in (FIXTURES / folder).iterdir()
        if path.suffix in (".txt", ".eml")
    )


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_sample_has_an_expectation() -> None:
    assert sorted(EXPECTED) == _samples()
    assert len(EXPECTED) >= 120


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    report = parse_report(_read(name))
    expected = EXPECTED[name]
    if expected is None:
        assert report is None
        return
    assert isinstance(report, DeliveryReport)
    found = [
        (r.recipient, r.action, cls.kind, cls.enhanced_status)
        for r, cls in ((r, classify_recipient(r)) for r in report.recipients)
    ]
    assert found == expected
    # Reports with recipient fields are read as such; the rest (including delivery-status
    # parts with per-message fields only) by flufl.bounce's heuristics.
    raw = _read(name).lower()
    standard = b"final-recipient:" in raw and b"report" in raw
    assert report.heuristic is not standard


def test_postfix_dsn_fields() -> None:
    report = parse_report(_read("postfix/remote-user-unknown.eml"))
    assert isinstance(report, DeliveryReport)
    assert report.reporting_mta == "mx.postfix.test"
    assert report.heuristic is False
    case = next(c for c in make_postfix_samples.CASES if c.name == "remote-user-unknown")
    assert report.original_message_id is not None
    assert str(case.message_id) in report.original_message_id
    assert not report.original_message_id.startswith("<")
    (recipient,) = report.recipients
    assert recipient.recipient == "gone@remote.test"
    assert recipient.remote_mta == "127.0.0.1"
    assert recipient.diagnostic == (
        "smtp; 550 5.1.1 <gone@remote.test>: Recipient address rejected: User unknown in "
        "virtual mailbox table"
    )
    assert recipient.smtp_code == 550
    bounce = classify_recipient(recipient)
    assert (bounce.kind, bounce.definitive) == ("hard", True)


def test_postfix_local_bounce_has_no_smtp_code() -> None:
    report = parse_report(_read("postfix/local-unknown-user.eml"))
    assert isinstance(report, DeliveryReport)
    (recipient,) = report.recipients
    assert recipient.diagnostic == 'X-Postfix; unknown user: "nosuchuser"'
    assert recipient.smtp_code is None
    assert recipient.remote_mta == ""


def test_a_status_comment_and_the_text_part_explain_an_unspecific_status() -> None:
    """dsn_01: "Status: 5.0.0 (recipient reached disk quota)", no Diagnostic-Code."""
    report = parse_report(_read("flufl/dsn_01.txt"))
    assert isinstance(report, DeliveryReport)
    (recipient,) = report.recipients
    assert recipient.diagnostic == ""
    assert recipient.notice.startswith("recipient reached disk quota")
    assert classify_recipient(recipient).kind == "soft"


def test_a_report_wrapped_in_a_message_is_read() -> None:
    """dsn_15: a gateway relayed the DSN as a message/rfc822 attachment of its own."""
    report = parse_report(_read("flufl/dsn_15.txt"))
    assert isinstance(report, DeliveryReport) and not report.heuristic


def test_repeated_recipient_blocks_count_once() -> None:
    """dsn_11: sendmail repeats the block once per alias it expanded."""
    raw = _read("flufl/dsn_11.txt")
    assert raw.count(b"Final-Recipient: RFC822; <joem@example.com>") > 1
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport) and len(report.recipients) == 1


# --- RFC 5965 ---------------------------------------------------------------------------


def test_rfc5965_simple_report() -> None:
    report = parse_report(_read("rfc5965/b1-simple.eml"))
    assert report == FeedbackReport(
        feedback_type="abuse",
        user_agent="SomeGenerator/1.0",
        original_recipient="",
        original_mail_from="",
        abuse_id=report.abuse_id if isinstance(report, FeedbackReport) else "",
        original_message_id="8787KJKJ3K4J3K4J3K4J3.mail@example.net",
        arrival_date="",
    )
    assert isinstance(report, FeedbackReport)
    assert re.fullmatch(r"sha256:[0-9a-f]{32}", report.abuse_id)
    assert is_complaint(report.feedback_type)


def test_rfc5965_complete_report() -> None:
    report = parse_report(_read("rfc5965/b2-complete.eml"))
    assert isinstance(report, FeedbackReport)
    assert report.feedback_type == "abuse"
    assert report.original_recipient == "user@example.com"
    assert report.original_mail_from == "somespammer@example.net"
    assert report.arrival_date == "Thu, 8 Mar 2005 14:00:00 EDT"
    # The RFC's example has a blank line inside the returned header: what follows it
    # (Message-ID included) is that message's body, as any parser reads it.
    assert report.original_message_id is None


def test_the_abuse_id_is_stable_for_a_report_and_differs_between_reports() -> None:
    raw = _read("rfc5965/b2-complete.eml")
    first, again = parse_report(raw), parse_report(raw)
    other = parse_report(
        raw.replace(b"Date: Thu, 8", b"Message-ID: <other@example.com>\nDate: Thu, 8", 1)
    )
    assert isinstance(first, FeedbackReport) and isinstance(again, FeedbackReport)
    assert isinstance(other, FeedbackReport)
    assert first.abuse_id == again.abuse_id != other.abuse_id


def test_a_report_that_names_itself_keeps_its_id() -> None:
    raw = _read("rfc5965/b2-complete.eml").replace(
        b"Version: 1\n", b"Version: 1\nFeedback-ID: 1234:campaign:fbl\n"
    )
    report = parse_report(raw)
    assert isinstance(report, FeedbackReport) and report.abuse_id == "1234:campaign:fbl"


def test_microsofts_recipient_header() -> None:
    raw = b"X-HmXmrOriginalRecipient: <victim@outlook.example>\n" + _read("rfc5965/b1-simple.eml")
    report = parse_report(raw)
    assert isinstance(report, FeedbackReport)
    assert report.original_recipient == "victim@outlook.example"


def test_not_every_feedback_type_is_a_complaint() -> None:
    for kind in ("auth-failure", "not-spam"):
        raw = _read("rfc5965/b2-complete.eml").replace(
            b"Feedback-Type: abuse", f"Feedback-Type: {kind}".encode()
        )
        report = parse_report(raw)
        assert isinstance(report, FeedbackReport) and report.feedback_type == kind
        assert not is_complaint(report.feedback_type)
    assert is_complaint(" Abuse ") and is_complaint("fraud") and is_complaint("virus")


# --- variations on real reports -----------------------------------------------------------


def _replace_part(raw: bytes, content_type: str, new: bytes) -> bytes:
    """The message with its ``content_type`` part (headers and body) replaced by ``new``."""
    start = raw.index(f"Content-Type: {content_type}".encode())
    end = raw.index(b"\n--", start)
    return raw[:start] + new + raw[end:]


def _status_text(raw: bytes) -> bytes:
    message = message_from_bytes(raw)
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            return b"".join(
                b.as_bytes() for b in part.get_payload() if isinstance(b, Message)
            ).replace(b"\r\n", b"\n")
    raise AssertionError("no delivery-status part")


def test_a_base64_encoded_delivery_status_is_read() -> None:
    raw = _read("postfix/remote-blocked.eml")
    encoded = base64.encodebytes(_status_text(raw))
    changed = _replace_part(
        raw,
        "message/delivery-status",
        b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n" + encoded,
    )
    report = parse_report(changed)
    assert isinstance(report, DeliveryReport) and not report.heuristic
    (recipient,) = report.recipients
    assert (recipient.recipient, recipient.status) == ("blocked@remote.test", "5.7.1")


def test_an_xtext_envelope_id_is_decoded() -> None:
    raw = _read("postfix/local-unknown-user.eml").replace(
        b"Reporting-MTA: dns; mx.postfix.test",
        b"Original-Envelope-Id: msg+2B1+3Dx\nReporting-MTA: dns; mx.postfix.test",
    )
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport) and report.original_envelope_id == "msg+1=x"


def test_a_success_report_has_no_failure() -> None:
    raw = (
        _read("postfix/local-unknown-user.eml")
        .replace(b"Action: failed", b"Action: delivered")
        .replace(b"Status: 5.1.1", b"Status: 2.0.0")
    )
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport)
    assert [r.action for r in report.recipients] == ["delivered"]


def test_a_read_receipt_is_no_failure() -> None:
    """simple_38 is Dovecot refusing mail with an MDN ("deleted"); a read receipt of the
    same form ("displayed") is not a bounce."""
    raw = _read("flufl/simple_38.txt").replace(
        b"MDN-sent-automatically; deleted", b"MDN-sent-automatically; displayed"
    )
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport)
    assert [r.action for r in report.recipients] == ["delivered"]


def test_a_bounce_of_a_bounce_is_read_as_the_outer_report() -> None:
    """The returned message is itself a DSN: only the outer report counts."""
    outer = _read("postfix/local-unknown-user.eml")
    inner = _read("postfix/remote-blocked.eml")
    raw = _replace_part(outer, "message/rfc822", b"Content-Type: message/rfc822\n\n" + inner)
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport)
    assert [r.recipient for r in report.recipients] == ["nosuchuser@local.test"]


# --- hostile input --------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)
    )
    return b"From: MAILER-DAEMON@x\nSubject: Undelivered Mail\n" + head + b"\n550 5.1.1 x\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 10_000,
        b"\xff\xfe" * 5_000,
        b"Subject: hi\n\nhello",
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary",
        b'Content-Type: multipart/report; boundary="x"\n\n--x\n--x--\n',
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: \x00\nAction: \xff\n",
        b"From: MAILER-DAEMON@x\nSubject: Undeliverable\n" + b"X-Long: " + b"a" * 200_000,
        _nested(2_000),
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=z\n\n"
        b"--z\nContent-Type: message/feedback-report\nContent-Transfer-Encoding: base64\n\n"
        b"!!!not base64!!!\n--z--\n",
    ],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    parse_report(raw)


def test_nul_bytes_inside_a_real_report() -> None:
    raw = _read("postfix/remote-user-unknown.eml").replace(b"Recipient address", b"Recip\x00ient")
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport)
    assert report.recipients[0].status == "5.1.1"


def test_many_recipients_are_bounded() -> None:
    block = b"Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n\n"
    raw = (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=q\n\n"
        b"--q\nContent-Type: text/plain\n\nx\n--q\nContent-Type: message/delivery-status\n\n"
        b"Reporting-MTA: dns; x\n\n"
        + b"".join(block.replace(b"a@", b"a%d@" % i) for i in range(3000))
        + b"--q--\n"
    )
    report = parse_report(raw)
    assert isinstance(report, DeliveryReport) and len(report.recipients) == 1000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    parse_report(raw)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mangled_real_reports_never_raise(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from([*sorted(EXPECTED), "rfc5965/b2-complete.eml"]))
    raw = bytearray(_read(name))
    for _ in range(data.draw(st.integers(1, 20))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    parse_report(bytes(raw[:cut]))


def test_message_type_is_the_stdlib_one() -> None:
    # The module works on email.message.Message trees (compat32), which flufl.bounce's
    # detectors expect too.
    assert isinstance(message_from_bytes(b"Subject: x\n\n"), Message)
