"""The rendered bytes, parsed back the way a receiving mail client would."""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import email.utils
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, MIMEPart

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import mime
from adapters.mime import TAGS_HEADER, UnsafeHeaderError, build_message
from domain.content import Address, Attachment, EmailContent

DATE = datetime(2026, 11, 5, 9, 30, tzinfo=UTC)
SENDER = Address("news@example.com", "Example News")
ALICE = Address("alice@example.org", "Alice Liddell")
BOB = Address("bob@example.net")
CAROL = Address("carol@example.com", "Carol")
SECRET = Address("secret-bcc@hidden.example", "Hidden Reader")
PDF_BYTES = b"%PDF-1.4\n\x00\x01\x02\xff binary tail"

BASE_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version"]


@pytest.fixture(autouse=True)
def empty_render_cache() -> Iterator[None]:
    """Each test starts without rendered contents kept from another one."""
    mime._CACHE.clear()
    yield
    mime._CACHE.clear()


def make_content(**changes: object) -> EmailContent:
    content = EmailContent(
        subject="Your weekly digest",
        sender=SENDER,
        to=(ALICE,),
        plain="Hello Alice.\n",
    )
    return replace(content, **changes)  # type: ignore[arg-type]


def render(
    content: EmailContent,
    *,
    recipient: Address = ALICE,
    extra_headers: tuple[tuple[str, str], ...] = (),
    message_id: str = "01JD3Q8Z6W.42",
) -> bytes:
    return build_message(
        content,
        recipient=recipient,
        message_id=message_id,
        extra_headers=extra_headers,
        domain="mail.example.com",
        date=DATE,
    )


def text_of(part: MIMEPart) -> str:
    """A text part's content with the wire's CRLF turned back into Python newlines."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def header_names(raw: bytes) -> list[str]:
    """Field names as a line-oriented reader sees them: each non-continuation line."""
    return [
        line.split(b":", 1)[0].decode()
        for line in header_block(raw).split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    ]


def assert_line_limits(raw: bytes) -> None:
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


# --- headers -------------------------------------------------------------------------------


def test_envelope_headers_are_written_and_parse_back() -> None:
    content = make_content(
        to=(ALICE, BOB),
        cc=(CAROL,),
        bcc=(SECRET,),
        reply_to=(Address("support@example.com", "Support"), Address("sales@example.com")),
    )
    raw = render(content)
    msg = parse(raw)

    assert header_names(raw) == [
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ]
    sender = msg["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Example News", "news@example.com")
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Alice Liddell", "alice@example.org"),
        ("", "bob@example.net"),
    ]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["carol@example.com"]
    assert [(a.display_name, a.addr_spec) for a in msg["Reply-To"].addresses] == [
        ("Support", "support@example.com"),
        ("", "sales@example.com"),
    ]
    assert msg["Subject"] == "Your weekly digest"
    assert msg["Date"].datetime == DATE
    assert msg["Message-ID"] == "<01JD3Q8Z6W.42@mail.example.com>"
    assert msg["MIME-Version"] == "1.0"


def test_bcc_recipients_appear_nowhere_even_in_their_own_copy() -> None:
    content = make_content(bcc=(SECRET,))
    raw = render(content, recipient=SECRET)
    assert b"secret-bcc" not in raw.lower()
    assert b"hidden" not in raw.lower()
    assert "Bcc" not in parse(raw)


def test_bcc_only_message_gets_an_empty_group_as_to() -> None:
    raw = render(make_content(to=(), bcc=(SECRET,)), recipient=SECRET)
    msg = parse(raw)
    assert msg["To"] == "undisclosed-recipients:;"
    assert msg["To"].addresses == ()
    assert b"secret-bcc" not in raw


def test_reply_to_is_absent_unless_given() -> None:
    assert "Reply-To" not in parse(render(make_content()))


def test_non_ascii_display_name_and_subject_are_rfc2047_encoded() -> None:
    content = make_content(
        subject="Grüße aus Köln — 東京",
        sender=Address("news@example.com", "Zoë Ñandú"),
        to=(Address("alice@example.org", "Ålice"),),
    )
    raw = render(content)
    head = header_block(raw)
    assert head.isascii()
    assert b"=?utf-8?" in head
    msg = parse(raw)
    assert msg["Subject"] == "Grüße aus Köln — 東京"
    assert msg["From"].addresses[0].display_name == "Zoë Ñandú"
    assert msg["To"].addresses[0].display_name == "Ålice"


def test_display_names_with_specials_are_quoted() -> None:
    tricky = 'Doe, John "JD" <boss> (CEO) \\ x'
    raw = render(make_content(sender=Address("news@example.com", tricky)))
    msg = parse(raw)
    assert len(msg["From"].addresses) == 1
    assert msg["From"].addresses[0].display_name == tricky
    assert msg["From"].addresses[0].addr_spec == "news@example.com"


def test_internationalised_domains_are_written_as_a_labels() -> None:
    raw = render(make_content(to=(Address("anna@bücher.example", "Anna"),)))
    assert parse(raw)["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"
    assert header_block(raw).isascii()


def test_non_ascii_local_part_switches_to_utf8_headers() -> None:
    raw = render(make_content(to=(Address("jörg@example.de", "Jörg"),)))
    # RFC 6532: the address goes raw in UTF-8 (the envelope needs SMTPUTF8 too).
    assert "<jörg@example.de>".encode() in header_block(raw)
    # The stdlib parser keeps raw 8-bit header bytes as surrogates in the
    # parsed address objects; the header's string form decodes them.
    assert str(parse(raw)["To"]) == "Jörg <jörg@example.de>"
    assert_line_limits(raw)


def test_long_subject_is_folded_and_round_trips() -> None:
    subject = " ".join(f"word{i}" for i in range(200))
    raw = render(make_content(subject=subject))
    assert_line_limits(raw)
    assert max(len(line) for line in header_block(raw).split(b"\r\n")) <= 78
    assert parse(raw)["Subject"] == subject


def test_many_recipients_fold_within_line_limits() -> None:
    to = tuple(Address(f"user{i}@example.org", f"User Number {i}") for i in range(300))
    raw = render(make_content(to=to))
    assert_line_limits(raw)
    assert [a.addr_spec for a in parse(raw)["To"].addresses] == [a.email for a in to]


# --- customer, engine and tag headers -----------------------------------------------------


def test_customer_headers_are_added() -> None:
    headers = (("X-Campaign", "spring-sale"), ("List-Id", "<news.example.com>"))
    msg = parse(render(make_content(headers=headers)))
    assert msg["X-Campaign"] == "spring-sale"
    assert msg["List-Id"] == "<news.example.com>"


@pytest.mark.parametrize(
    "name",
    [
        "From",
        "to",
        "CC",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "content-transfer-encoding",
        "Content-Disposition",
        "Return-Path",
        "Received",
        "DKIM-Signature",
        "X-Sendstream-Tags",
        "X-Sendstream-Message-Id",
    ],
)
def test_customer_cannot_override_owned_headers(name: str) -> None:
    raw = render(make_content(headers=((name, "forged-value <forged@evil.example>"),)))
    assert b"forged" not in raw
    assert header_names(raw).count(name) <= 1


def test_customer_reply_to_is_used_only_when_the_field_is_empty() -> None:
    header = (("Reply-To", "desk@example.com"),)
    msg = parse(render(make_content(headers=header)))
    assert msg["Reply-To"] == "desk@example.com"

    raw = render(make_content(headers=header, reply_to=(CAROL,)))
    assert header_names(raw).count("Reply-To") == 1
    assert parse(raw)["Reply-To"].addresses[0].addr_spec == "carol@example.com"


def test_tags_go_in_one_header() -> None:
    raw = render(make_content(tags=("welcome", "onboarding", "été")))
    assert header_names(raw).count(TAGS_HEADER) == 1
    assert parse(raw)[TAGS_HEADER] == "welcome, onboarding, été"
    assert TAGS_HEADER not in parse(render(make_content()))


def test_extra_headers_are_written_verbatim_even_when_long() -> None:
    url = "<https://t.example.com/u/" + "a1b2c3d4" * 60 + ">, <mailto:u@example.com?subject=x>"
    extra = (
        ("List-Unsubscribe", url),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("X-Sendstream-Message", "m_123"),
    )
    raw = render(make_content(), extra_headers=extra)
    lines = header_block(raw).split(b"\r\n")
    assert f"List-Unsubscribe: {url}".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert b"X-Sendstream-Message: m_123" in lines
    assert_line_limits(raw)


def test_non_ascii_and_overlong_custom_header_values_are_encoded_and_folded() -> None:
    value = "prix réduit " + "x" * 1200
    raw = render(make_content(headers=(("X-Note", value),)))
    assert header_block(raw).isascii()
    assert_line_limits(raw)
    assert parse(raw)["X-Note"] == value


# --- bodies and attachments -----------------------------------------------------------------


def test_plain_only_body() -> None:
    msg = parse(render(make_content(plain="Hello there.\n", html=None)))
    assert msg.get_content_type() == "text/plain"
    assert text_of(msg) == "Hello there.\n"


def test_html_only_body() -> None:
    msg = parse(render(make_content(plain=None, html="<p>Hello</p>\n")))
    assert msg.get_content_type() == "text/html"
    assert text_of(msg) == "<p>Hello</p>\n"


def test_no_body_at_all_is_an_empty_text_part() -> None:
    msg = parse(render(make_content(plain=None, html=None)))
    assert msg.get_content_type() == "text/plain"
    assert text_of(msg) in ("", "\n")


def test_plain_and_html_make_an_alternative_with_plain_first() -> None:
    msg = parse(render(make_content(plain="Hi\n", html="<p>Hi</p>\n")))
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [text_of(p) for p in parts] == ["Hi\n", "<p>Hi</p>\n"]
    assert all("MIME-Version" not in p for p in parts)


def test_attachments_wrap_the_alternative_in_mixed() -> None:
    attachments = (
        Attachment("report.pdf", "application/pdf", base64.b64encode(PDF_BYTES).decode()),
        Attachment("notes.txt", "text/plain", base64.b64encode(b"line one\n").decode()),
    )
    raw = render(make_content(plain="Hi\n", html="<p>Hi</p>\n", attachments=attachments))
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/mixed"
    body, pdf, txt = msg.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "report.pdf"
    assert pdf.get_content_disposition() == "attachment"
    assert pdf.get_payload(decode=True) == PDF_BYTES
    assert txt.get_content_type() == "text/plain"
    assert txt.get_filename() == "notes.txt"
    assert txt.get_payload(decode=True) == b"line one\n"
    assert list(msg.iter_attachments()) == [pdf, txt]


def test_attachment_with_only_plain_body() -> None:
    attachment = Attachment("a.bin", "application/octet-stream", "AAEC")
    msg = parse(render(make_content(attachments=(attachment,))))
    first, second = msg.iter_parts()
    assert first.get_content_type() == "text/plain"
    assert second.get_payload(decode=True) == b"\x00\x01\x02"


def test_attachment_filename_may_be_non_ascii() -> None:
    attachment = Attachment("Résumé 履歴書.pdf", "application/pdf", "JVBERg==")
    raw = render(make_content(attachments=(attachment,)))
    assert header_block(raw).isascii()
    (part,) = parse(raw).iter_attachments()
    assert part.get_filename() == "Résumé 履歴書.pdf"


def test_wrapped_base64_is_accepted_and_garbage_refused() -> None:
    wrapped = base64.encodebytes(PDF_BYTES * 20).decode()  # 76-column lines
    msg = parse(
        render(make_content(attachments=(Attachment("a.pdf", "application/pdf", wrapped),)))
    )
    (part,) = msg.iter_attachments()
    assert part.get_payload(decode=True) == PDF_BYTES * 20

    with pytest.raises(ValueError):
        render(make_content(attachments=(Attachment("a.pdf", "application/pdf", "not base64!"),)))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("IMAGE/PNG", "image/png"),
        ("text/csv; charset=utf-8", "text/csv"),
        ("nonsense", "application/octet-stream"),
        ("multipart/mixed", "application/octet-stream"),
        ("message/rfc822", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_attachment_content_types(given: str, expected: str) -> None:
    attachment = Attachment("file", given, "AAEC")
    (part,) = parse(render(make_content(attachments=(attachment,)))).iter_attachments()
    assert part.get_content_type() == expected


def test_long_and_non_ascii_bodies_use_a_7bit_safe_encoding() -> None:
    plain = "ligne très longue " * 400 + "\n" + "x" * 5000 + "\n"
    html = "<p>" + "<b>café</b> " * 1000 + "</p>"
    msg_raw = render(make_content(plain=plain, html=html))
    assert msg_raw.isascii()
    assert_line_limits(msg_raw)
    parts = list(parse(msg_raw).iter_parts())
    assert all(p["Content-Transfer-Encoding"] in ("quoted-printable", "base64") for p in parts)
    assert [text_of(p) for p in parts] == [plain, html + "\n"]


def test_short_ascii_body_stays_readable() -> None:
    msg = parse(render(make_content(plain="Short and plain.\n")))
    assert msg["Content-Transfer-Encoding"] == "7bit"


def test_a_body_line_starting_with_a_dot_or_from_survives() -> None:
    plain = ".\n..leading dots\nFrom the team\n"
    assert text_of(parse(render(make_content(plain=plain)))) == plain


# --- refusals ----------------------------------------------------------------------------

INJECTIONS = ["x\r\nBcc: victim@example.com", "x\nX-Evil: 1", "x\rX-Evil: 1", "x\x00y", "x\u2028y"]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize(
    "field",
    [
        "subject",
        "sender name",
        "to name",
        "cc name",
        "reply-to name",
        "sender email",
        "header value",
        "owned header value",
        "tag",
        "filename",
    ],
)
def test_line_breaks_and_nul_in_header_text_are_refused(field: str, payload: str) -> None:
    content = {
        "subject": lambda: make_content(subject=payload),
        "sender name": lambda: make_content(sender=Address("a@example.com", payload)),
        "to name": lambda: make_content(to=(Address("a@example.com", payload),)),
        "cc name": lambda: make_content(cc=(Address("a@example.com", payload),)),
        "reply-to name": lambda: make_content(reply_to=(Address("a@example.com", payload),)),
        "sender email": lambda: make_content(sender=Address(f"a{payload}@example.com")),
        "header value": lambda: make_content(headers=(("X-Custom", payload),)),
        "owned header value": lambda: make_content(headers=(("Subject", payload),)),
        "tag": lambda: make_content(tags=(payload,)),
        "filename": lambda: make_content(attachments=(Attachment(payload, "text/plain", ""),)),
    }[field]()
    with pytest.raises(UnsafeHeaderError):
        render(content)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_line_breaks_in_engine_headers_and_recipient_are_refused(payload: str) -> None:
    with pytest.raises(UnsafeHeaderError):
        render(make_content(), extra_headers=(("X-Track", payload),))
    with pytest.raises(UnsafeHeaderError):
        render(make_content(), recipient=Address(f"a{payload}@example.com"))


@pytest.mark.parametrize(
    "name", ["X-Foo\r\nBcc", "X Foo", "X-Foo:", "", "Ünïcode", "X-Foo\x00", "Bcc\n"]
)
def test_invalid_header_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeHeaderError):
        render(make_content(headers=((name, "value"),)))
    with pytest.raises(UnsafeHeaderError):
        render(make_content(), extra_headers=((name, "value"),))


@pytest.mark.parametrize("message_id", ["", "a b", "a@b", "<x>", "a\r\nb", "a..b"])
def test_message_id_must_be_dot_atom_text(message_id: str) -> None:
    with pytest.raises(ValueError):
        render(make_content(), message_id=message_id)


@pytest.mark.parametrize("address", ["no-at-sign", "@example.com", "a@", "a b@example.com"])
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        render(make_content(to=(Address(address),)))


# --- properties ------------------------------------------------------------------------------

# Text the module accepts: anything printable, TAB included. Surrogates cannot be encoded.
SAFE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029")
    | st.just("\t"),
    max_size=300,
)
UNSAFE_CHAR = st.sampled_from(["\r", "\n", "\x00", "\x0b", "\x1b", "\x85", "\u2028", "\ud800"])


def rfc2047_display_name(raw: bytes) -> str:
    """The From display name decoded by the legacy API.

    The modern parser inserts a blank between adjacent encoded-words of a
    display name (RFC 2047 6.2 says to drop it), so it cannot judge exactness.
    """
    legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
    [(name, _)] = email.utils.getaddresses([str(legacy["From"])])
    return str(email.header.make_header(email.header.decode_header(name)))


def canonical_name(name: str) -> str:
    return " ".join(name.split())


@settings(max_examples=300, deadline=None)
@given(subject=SAFE_TEXT, name=SAFE_TEXT)
def test_any_printable_subject_and_name_round_trip_without_new_lines(
    subject: str, name: str
) -> None:
    content = make_content(subject=subject, sender=Address("news@example.com", name), cc=(BOB,))
    raw = render(content)
    assert header_names(raw) == [
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ]
    assert header_block(raw).isascii()
    assert_line_limits(raw)
    msg = parse(raw)
    assert msg["Subject"] == subject.strip(" \t")
    (sender,) = msg["From"].addresses
    assert sender.addr_spec == "news@example.com"
    assert rfc2047_display_name(raw) == canonical_name(name)


@settings(max_examples=200, deadline=None)
@given(prefix=SAFE_TEXT, bad=UNSAFE_CHAR, suffix=SAFE_TEXT)
def test_any_unsafe_character_is_refused_everywhere(prefix: str, bad: str, suffix: str) -> None:
    text = prefix + bad + suffix
    for content in (
        make_content(subject=text),
        make_content(sender=Address("news@example.com", text)),
        make_content(headers=(("X-Custom", text),)),
    ):
        with pytest.raises(UnsafeHeaderError):
            render(content)


@settings(max_examples=100, deadline=None)
@given(value=SAFE_TEXT.filter(lambda v: v.strip(" \t") != ""))
def test_any_printable_custom_header_value_round_trips(value: str) -> None:
    raw = render(make_content(headers=(("X-Custom", value),)))
    assert header_names(raw).count("X-Custom") == 1
    assert_line_limits(raw)
    assert parse(raw)["X-Custom"] == value.strip(" \t")


@settings(max_examples=100, deadline=None)
@given(plain=st.text(max_size=3000), html=st.text(max_size=3000))
def test_any_body_is_7bit_safe_and_round_trips(plain: str, html: str) -> None:
    # Lone surrogates cannot be sent as UTF-8; the API refuses them upstream.
    plain = plain.encode("utf-8", "replace").decode("utf-8")
    html = html.encode("utf-8", "replace").decode("utf-8")
    raw = render(make_content(plain=plain or None, html=html or None))
    assert_line_limits(raw)
    assert raw.isascii()
    assert parse(raw).get_body() is not None


# Words joined by blanks: where a folder has to break a long encoded value,
# which is where Python 3.11's own folder loses blanks.
WORDS = st.lists(
    st.text(
        st.characters(
            blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
        ),
        min_size=1,
        max_size=15,
    ),
    min_size=1,
    max_size=40,
).map(" ".join)


def test_a_long_cyrillic_subject_keeps_every_blank() -> None:
    # Python 3.11's EmailPolicy folder renders this as "...былотправлен...".
    subject = "Ваш заказ номер 12345 был отправлен сегодня курьерской службой доставки"
    raw = render(make_content(subject=subject))
    assert parse(raw)["Subject"] == subject
    assert max(len(line) for line in header_block(raw).split(b"\r\n")) <= 78


@settings(max_examples=300, deadline=None)
@given(subject=WORDS, name=WORDS)
def test_long_encoded_values_keep_every_blank(subject: str, name: str) -> None:
    raw = render(make_content(subject=subject, sender=Address("news@example.com", name)))
    assert_line_limits(raw)
    msg = parse(raw)
    assert msg["Subject"] == subject.strip(" \t")
    assert rfc2047_display_name(raw) == canonical_name(name)


@settings(max_examples=100, deadline=None)
@given(names=st.lists(SAFE_TEXT, min_size=1, max_size=8))
def test_address_lists_keep_every_mailbox(names: list[str]) -> None:
    to = tuple(Address(f"user{i}@example.org", name) for i, name in enumerate(names))
    raw = render(make_content(to=to))
    assert_line_limits(raw)
    assert [a.addr_spec for a in parse(raw)["To"].addresses] == [a.email for a in to]
    legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
    decoded = [
        str(email.header.make_header(email.header.decode_header(name)))
        for name, _ in email.utils.getaddresses([str(legacy["To"])])
    ]
    assert decoded == [canonical_name(name) for name in names]


@settings(max_examples=100, deadline=None)
@given(filename=SAFE_TEXT)
def test_any_printable_attachment_filename_round_trips(filename: str) -> None:
    attachment = Attachment(filename, "application/pdf", "JVBERg==")
    raw = render(make_content(attachments=(attachment,)))
    assert_line_limits(raw)
    (part,) = parse(raw).iter_attachments()
    assert part.get_filename() == (filename.strip() or "attachment")


# --- wire format ------------------------------------------------------------------------------


@pytest.fixture
def fixed_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """MIME boundaries "=_000…", "=_111…", … instead of random ones."""
    digits = itertools.cycle("0123456789")
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(digits) * (2 * n))


@pytest.mark.usefixtures("fixed_boundaries")
def test_simple_message_bytes() -> None:
    content = EmailContent(
        subject="Burst 1",
        sender=Address("news@example.com", "News"),
        to=(Address("user1@example.org", "User"),),
        html="<p>Hello</p>",
        plain="Hello",
    )
    raw = build_message(
        content,
        recipient=Address("user1@example.org"),
        message_id="abc",
        domain="example.com",
        date=DATE,
    )
    boundary = "=_" + "0" * 24
    assert (
        raw
        == (
            "From: News <news@example.com>\r\n"
            "To: User <user1@example.org>\r\n"
            "Subject: Burst 1\r\n"
            "Date: Thu, 05 Nov 2026 09:30:00 +0000\r\n"
            "Message-ID: <abc@example.com>\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
            "\r\n"
            f"--{boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: 7bit\r\n"
            "\r\n"
            "Hello\r\n"
            "\r\n"
            f"--{boundary}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: 7bit\r\n"
            "\r\n"
            "<p>Hello</p>\r\n"
            "\r\n"
            f"--{boundary}--\r\n"
        ).encode()
    )


@pytest.mark.usefixtures("fixed_boundaries")
def test_a_boundary_found_in_a_body_is_not_used() -> None:
    plain = f"quoting --=_{'0' * 24} from another message\n"
    raw = render(make_content(plain=plain, html="<p>x</p>"))
    assert b'boundary="=_' + b"1" * 24 + b'"' in raw
    assert [text_of(p) for p in parse(raw).iter_parts()] == [plain, "<p>x</p>\n"]


def test_engine_headers_come_after_mime_version_and_before_the_customers() -> None:
    raw = render(
        make_content(headers=(("X-Campaign", "spring"),), tags=("t",)),
        extra_headers=(("X-Track", "1"), ("Sender", "bounces@example.com")),
    )
    assert header_names(raw) == [
        *BASE_HEADERS,
        "X-Track",
        "Sender",
        "X-Campaign",
        TAGS_HEADER,
        "Content-Type",
        "Content-Transfer-Encoding",
    ]


def test_a_customer_header_allowed_once_yields_to_the_engines() -> None:
    raw = render(
        make_content(headers=(("Sender", "customer@example.com"), ("sender", "again@example.com"))),
        extra_headers=(("Sender", "engine@example.com"),),
    )
    assert header_names(raw).count("Sender") + header_names(raw).count("sender") == 1
    assert parse(raw)["Sender"] == "engine@example.com"
    # Without the engine's, the customer's first one is kept.
    assert parse(render(make_content(headers=(("Sender", "c@example.com"),))))["Sender"] == (
        "c@example.com"
    )


@pytest.mark.parametrize("name", ["Subject", "MIME-Version", "To", "message-id"])
def test_an_engine_header_repeating_a_unique_field_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="at most 1"):
        render(make_content(), extra_headers=((name, "x"),))


def test_engine_content_headers_are_dropped() -> None:
    raw = render(make_content(), extra_headers=(("Content-Type", "text/evil"),))
    assert b"evil" not in raw
    assert header_names(raw).count("Content-Type") == 1


def test_an_overlong_message_id_is_refused() -> None:
    with pytest.raises(ValueError):
        render(make_content(), message_id="x" * 990)


def test_an_overlong_media_type_becomes_octet_stream() -> None:
    attachment = Attachment("f", "application/" + "x" * 1200, "AAEC")
    raw = render(make_content(attachments=(attachment,)))
    assert_line_limits(raw)
    (part,) = parse(raw).iter_attachments()
    assert part.get_content_type() == "application/octet-stream"


@pytest.mark.parametrize(
    "filename",
    ["=?utf-8?q?x?=", 'a"b\\c', "a\tb  c", "x" * 300, "é" * 120, "日本 " * 40, "a'b%41;"],
)
def test_awkward_filenames_round_trip_within_78_columns(filename: str) -> None:
    raw = render(make_content(attachments=(Attachment(filename, "text/plain", "AAEC"),)))
    part_headers = raw.split(b"Content-Disposition", 1)[1].split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in part_headers.split(b"\r\n")) <= 78
    (part,) = parse(raw).iter_attachments()
    assert part.get_filename() == filename.strip()


@pytest.mark.parametrize(
    ("given", "data"),
    [
        ("AB==", b"\x00"),  # stray bits in the last group
        ("AAEC==", b"\x00\x01\x02"),  # padding after a full group
        (" AA\u00a0EC\n", b"\x00\x01\x02"),  # any whitespace, as str.split() sees it
        (base64.encodebytes(bytes(range(256)) * 3).decode(), bytes(range(256)) * 3),
        ("", b""),
    ],
)
def test_attachment_base64_is_written_canonical_in_76_columns(given: str, data: bytes) -> None:
    raw = render(make_content(attachments=(Attachment("a.bin", "application/pdf", given),)))
    body = raw.split(b"Content-Disposition", 1)[1].split(b"\r\n\r\n", 1)[1]
    lines = body.split(b"\r\n--", 1)[0].split(b"\r\n")
    assert b"".join(lines) == base64.b64encode(data)
    assert all(len(line) == 76 for line in lines[:-2])
    (part,) = parse(raw).iter_attachments()
    assert part.get_payload(decode=True) == data


@pytest.mark.parametrize("bad", ["AA=A", "A", "AAE", "====", "AAEC!", "ÀAEC"])
def test_malformed_attachment_base64_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        render(make_content(attachments=(Attachment("a.bin", "application/pdf", bad),)))


@pytest.mark.parametrize(
    ("text", "cte"),
    [
        ("Short ASCII lines.\n", "7bit"),
        ("x" * 79 + "\n", "quoted-printable"),
        ("Grüße aus Köln, wir hoffen, es geht euch gut.\n", "quoted-printable"),
        ("nul \x00 byte\n", "quoted-printable"),
        ("東京の天気は晴れです。" * 20 + "\n", "base64"),
    ],
)
def test_body_transfer_encoding(text: str, cte: str) -> None:
    msg = parse(render(make_content(plain=text)))
    assert msg["Content-Transfer-Encoding"] == cte
    assert text_of(msg) == text


# --- render cache ------------------------------------------------------------------------------


def without_per_copy_headers(raw: bytes) -> bytes:
    return b"\r\n".join(
        line for line in raw.split(b"\r\n") if not line.startswith((b"Date:", b"Message-ID:"))
    )


def test_copies_of_one_content_differ_only_in_date_and_message_id() -> None:
    attachment = Attachment("a.pdf", "application/pdf", base64.b64encode(PDF_BYTES).decode())
    content = make_content(html="<p>Hi</p>", attachments=(attachment,), cc=(CAROL,))
    first = render(content, recipient=ALICE, message_id="one")
    second = build_message(
        # An equal but distinct content object, as when reloaded from the store.
        EmailContent.from_dict(content.to_dict()),
        recipient=CAROL,
        message_id="two",
        domain="other.example",
        date=DATE + timedelta(hours=1),
    )
    assert without_per_copy_headers(first) == without_per_copy_headers(second)
    assert parse(second)["Message-ID"] == "<two@other.example>"
    assert parse(second)["Date"].datetime == DATE + timedelta(hours=1)


def test_a_changed_content_is_rendered_afresh() -> None:
    content = make_content(plain="first\n")
    assert text_of(parse(render(content))) == "first\n"
    changed = replace(content, plain="second\n")
    assert text_of(parse(render(changed))) == "second\n"
    assert text_of(parse(render(content))) == "first\n"


def test_per_copy_checks_still_run_for_a_cached_content() -> None:
    content = make_content()
    render(content)
    with pytest.raises(UnsafeHeaderError):
        render(content, recipient=Address("a\r\nb@example.com"))
    with pytest.raises(UnsafeHeaderError):
        render(content, extra_headers=(("X-Track", "a\nb"),))
    with pytest.raises(ValueError):
        render(content, message_id="a b")


def test_a_refused_content_is_refused_every_time() -> None:
    content = make_content(subject="bad\nsubject")
    for _ in range(2):
        with pytest.raises(UnsafeHeaderError):
            render(content)


def test_unhashable_content_is_rendered_without_the_cache() -> None:
    content = make_content(headers=[("X-Campaign", "spring")])  # a list, not a tuple
    assert parse(render(content))["X-Campaign"] == "spring"


def test_the_render_cache_is_bounded_least_recently_used_first() -> None:
    cache = mime._RenderCache(max_entries=3, max_bytes=1000, max_entry_bytes=600)

    def entry(size: int) -> mime._Rendered:
        return mime._Rendered(
            head=b"", present=frozenset(), custom=(), custom_block=b"", tail=(), size=size
        )

    contents = [make_content(subject=f"s{i}") for i in range(5)]
    for content in contents[:3]:
        cache.put(content, entry(100))
    assert cache.get(contents[0]) is not None  # now the most recently used
    cache.put(contents[3], entry(100))  # over the count: contents[1] goes
    assert cache.get(contents[1]) is None
    assert all(cache.get(c) is not None for c in (contents[0], contents[2], contents[3]))
    cache.put(contents[4], entry(600))  # over the bytes: the oldest go
    assert cache.get(contents[4]) is not None
    assert cache.get(contents[0]) is None
    assert sum(cache.get(c) is not None for c in contents) <= 3

    big = make_content(subject="big")
    cache.put(big, entry(601))  # larger than one entry may be: not kept
    assert cache.get(big) is None


# --- whole messages, parsed back ---------------------------------------------------------------

LOCAL_PART = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_+", min_size=1, max_size=20).filter(
    lambda local: not local.startswith(".") and not local.endswith(".") and ".." not in local
)
ADDRESSES = st.builds(
    lambda local, host, name: Address(f"{local}@{host}", name),
    LOCAL_PART,
    st.sampled_from(["example.com", "mail.example.org", "bücher.example", "例え.jp"]),
    SAFE_TEXT,
)
# Anything but lone surrogates, which cannot be sent as UTF-8 (the API refuses them).
ANY_CHARACTER = st.characters(blacklist_categories=["Cs"])
BODY_TEXT = st.none() | st.text(ANY_CHARACTER, max_size=2000)
MEDIA_TYPES = {
    "application/pdf": "application/pdf",
    "IMAGE/PNG": "image/png",
    "text/csv; charset=utf-8": "text/csv",
    "text/plain": "text/plain",
    "message/rfc822": "application/octet-stream",
    "": "application/octet-stream",
}
ATTACHMENTS = st.builds(
    lambda name, media_type, data, wrapped: (
        Attachment(
            name,
            media_type,
            (base64.encodebytes if wrapped else base64.b64encode)(data).decode(),
        ),
        data,
    ),
    SAFE_TEXT,
    st.sampled_from(sorted(MEDIA_TYPES)),
    st.binary(max_size=3000),
    st.booleans(),
)
CUSTOM_HEADERS = st.lists(SAFE_TEXT, max_size=3).map(
    lambda values: tuple((f"X-Custom-{i}", value) for i, value in enumerate(values))
)
TAGS = st.lists(SAFE_TEXT.filter(lambda tag: tag.strip(" \t") != ""), max_size=3).map(tuple)


def decoded_mailboxes(raw: bytes, field: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of an address field, names decoded exactly.

    The legacy API decodes adjacent encoded-words without the blank the modern
    parser inserts between them (see ``rfc2047_display_name``).
    """
    legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [
        (str(email.header.make_header(email.header.decode_header(name))), addr)
        for name, addr in email.utils.getaddresses([str(legacy[field])])
    ]


def expected_mailboxes(addresses: tuple[Address, ...]) -> list[tuple[str, str]]:
    result = []
    for address in addresses:
        local, _, host = address.email.rpartition("@")
        host = host.encode("idna").decode() if not host.isascii() else host
        result.append((canonical_name(address.name), f"{local}@{host}"))
    return result


def expected_text(text: str) -> str:
    """What a reader gets back: any line break as LF, always a final one."""
    return "\n".join(line.decode() for line in text.encode().splitlines()) + "\n"


@settings(max_examples=200, deadline=None)
@given(
    subject=SAFE_TEXT,
    sender=ADDRESSES,
    to=st.lists(ADDRESSES, max_size=3).map(tuple),
    cc=st.lists(ADDRESSES, max_size=2).map(tuple),
    reply_to=st.lists(ADDRESSES, max_size=2).map(tuple),
    plain=BODY_TEXT,
    html=BODY_TEXT,
    attachments=st.lists(ATTACHMENTS, max_size=3),
    headers=CUSTOM_HEADERS,
    tags=TAGS,
)
def test_any_content_parses_back_to_what_was_given(
    subject: str,
    sender: Address,
    to: tuple[Address, ...],
    cc: tuple[Address, ...],
    reply_to: tuple[Address, ...],
    plain: str | None,
    html: str | None,
    attachments: list[tuple[Attachment, bytes]],
    headers: tuple[tuple[str, str], ...],
    tags: tuple[str, ...],
) -> None:
    content = EmailContent(
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        bcc=(SECRET,),
        reply_to=reply_to,
        plain=plain,
        html=html,
        attachments=tuple(attachment for attachment, _ in attachments),
        headers=headers,
        tags=tags,
    )
    raw = render(content, recipient=SECRET)
    assert_line_limits(raw)
    assert raw.isascii()
    assert b"secret-bcc" not in raw
    msg = parse(raw)
    assert not msg.defects

    # Headers: all there, once each, in order, with the values given.
    names = header_names(raw)
    expected_names = ["From"]
    expected_names += ["To"] if to or not cc else []
    expected_names += ["Cc"] if cc else []
    expected_names += ["Reply-To"] if reply_to else []
    expected_names += ["Subject", "Date", "Message-ID", "MIME-Version"]
    expected_names += [name for name, _ in headers]
    expected_names += [TAGS_HEADER] if tags else []
    assert names[: len(expected_names)] == expected_names
    assert names[len(expected_names) :] in (
        ["Content-Type"],
        ["Content-Type", "Content-Transfer-Encoding"],
    )
    assert msg["Subject"] == subject.strip(" \t")
    assert decoded_mailboxes(raw, "From") == expected_mailboxes((sender,))
    if to:
        assert decoded_mailboxes(raw, "To") == expected_mailboxes(to)
    elif not cc:
        assert msg["To"] == "undisclosed-recipients:;"
    if cc:
        assert decoded_mailboxes(raw, "Cc") == expected_mailboxes(cc)
    if reply_to:
        assert decoded_mailboxes(raw, "Reply-To") == expected_mailboxes(reply_to)
    for name, value in headers:
        assert msg[name] == value.strip(" \t")
    if tags:
        assert msg[TAGS_HEADER] == ", ".join(tag.strip(" \t") for tag in tags)
    assert msg["Date"].datetime == DATE

    # Structure and bodies.
    texts = [(subtype, text) for subtype, text in (("plain", plain), ("html", html)) if text]
    if len(texts) == 2:
        body_type = "multipart/alternative"
    else:
        body_type = f"text/{texts[0][0] if texts else 'plain'}"
    if attachments:
        assert msg.get_content_type() == "multipart/mixed"
        body, *attachment_parts = msg.iter_parts()
    else:
        body, attachment_parts = msg, []
    assert body.get_content_type() == body_type
    text_parts = list(body.iter_parts()) if len(texts) == 2 else [body]
    assert [p.get_content_type() for p in text_parts] == [
        f"text/{subtype}" for subtype, _ in texts
    ] or (not texts and text_parts[0].get_content_type() == "text/plain")
    for part, (_, text) in zip(text_parts, texts, strict=False):
        assert part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")
        assert part.get_content_charset() == "utf-8"
        assert text_of(part) == expected_text(text)
    if not texts:
        assert text_of(body) == "\n"

    # Attachments: name, type and exact bytes.
    assert len(attachment_parts) == len(attachments)
    for part, (attachment, data) in zip(attachment_parts, attachments, strict=True):
        assert part.get_content_disposition() == "attachment"
        assert part["Content-Transfer-Encoding"] == "base64"
        assert part.get_filename() == (attachment.filename.strip() or "attachment")
        assert part.get_content_type() == MEDIA_TYPES[attachment.content_type]
        assert part.get_payload(decode=True) == data
    for part in msg.walk():
        if part is not msg:
            assert "MIME-Version" not in part
