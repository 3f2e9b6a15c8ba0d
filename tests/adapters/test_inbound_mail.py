"""Inbound mail becomes the webhook's JSON: real-looking messages, broken ones, and fuzz."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.inbound_mail import parse_inbound

pytestmark = pytest.mark.unit

KEYS = {
    "Headers", "Subject", "From", "To", "Cc", "Date", "MessageId", "Text", "Html",
    "Attachments", "Defects",
}  # fmt: skip
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"


def crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


FULL = crlf(
    b"""Received: from mx.example.net by in.sendstream.test; Thu, 5 Nov 2026 09:30:01 +0000
From: =?utf-8?b?Sm9zw6kgR2FyY8OtYQ==?= <jose@example.net>
To: Support <support@customer.test>, "Sales, EU" <sales@customer.test>
Cc: =?iso-8859-1?q?caf=E9?= <cafe@example.org>
Subject: =?utf-8?q?Caf=C3=A9_order_=E2=9C=93?= and
 =?iso-8859-1?q?caf=E9?=
Date: Thu, 5 Nov 2026 09:30:00 +0000
Message-ID: <order-42@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-1"

This is a multi-part message in MIME format.
--mixed-1
Content-Type: multipart/related; boundary="related-1"

--related-1
Content-Type: multipart/alternative; boundary="alt-1"

--alt-1
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

Hello, caf=C3=A9 lovers.
--alt-1
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: base64

"""
    + b64('<p>Hello, café lovers.</p><img src="cid:logo@example.net">'.encode())
    + b"""
--alt-1--
--related-1
Content-Type: image/png
Content-ID: <logo@example.net>
Content-Disposition: inline
Content-Transfer-Encoding: base64

"""
    + b64(PNG)
    + b"""
--related-1--
--mixed-1
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

"""
    + b64(PDF)
    + b"""
--mixed-1--
"""
)


def check_shape(result: dict[str, Any]) -> None:
    assert set(result) == KEYS
    json.dumps(result)
    orjson.dumps(result)  # refuses lone surrogates, as a strict webhook sender would


def test_a_full_message_gives_its_bodies_attachments_and_decoded_headers() -> None:
    result = parse_inbound(FULL)

    check_shape(result)
    assert result["Subject"] == "Café order ✓ and café"
    assert result["From"] == "José García <jose@example.net>"
    assert result["To"] == ["Support <support@customer.test>", '"Sales, EU" <sales@customer.test>']
    assert result["Cc"] == ["café <cafe@example.org>"]
    assert result["Date"] == "Thu, 5 Nov 2026 09:30:00 +0000"
    assert result["MessageId"] == "<order-42@example.net>"
    assert result["Text"] == "Hello, café lovers."
    assert result["Html"].startswith("<p>Hello, café lovers.</p>")
    assert [name for name, _ in result["Headers"]] == [
        "Received", "From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
        "Content-Type",
    ]  # fmt: skip
    assert result["Headers"][4] == ["Subject", "Café order ✓ and café"]
    image, pdf = result["Attachments"]
    assert image == {
        "Filename": "",
        "ContentType": "image/png",
        "Size": len(PNG),
        "ContentBase64": base64.b64encode(PNG).decode(),
        "ContentId": "logo@example.net",
        "Inline": True,
    }
    assert pdf["Filename"] == "résumé.pdf"
    assert pdf["ContentType"] == "application/pdf"
    assert base64.b64decode(pdf["ContentBase64"]) == PDF
    assert pdf["Size"] == len(PDF)
    assert pdf["Inline"] is False
    assert pdf["ContentId"] == ""
    assert result["Defects"] == []


def test_an_image_with_a_content_id_and_no_disposition_is_inline() -> None:
    raw = crlf(
        b"""Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html; charset=utf-8

<img src="cid:a">
--r
Content-Type: image/gif
Content-ID: <a>
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--r--
"""
    )
    (image,) = parse_inbound(raw)["Attachments"]
    assert image["Inline"] is True
    assert image["ContentId"] == "a"


def test_an_rfc_2047_filename_is_decoded() -> None:
    raw = crlf(
        b"""Content-Type: multipart/mixed; boundary=m

--m
Content-Type: text/plain

body
--m
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="=?utf-8?b?0L7RgtGH0LXRgi5kb2N4?="

data
--m--
"""
    )
    (attachment,) = parse_inbound(raw)["Attachments"]
    assert attachment["Filename"] == "отчет.docx"
    assert base64.b64decode(attachment["ContentBase64"]) == b"data"


def test_raw_utf8_header_and_body_without_a_transfer_encoding() -> None:
    raw = (
        "From: Zoë <zoe@example.net>\r\nSubject: Grüße aus Köln\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSchöne Grüße ✓\r\n"
    ).encode()
    result = parse_inbound(raw)
    check_shape(result)
    assert result["Subject"] == "Grüße aus Köln"
    assert result["From"] == "Zoë <zoe@example.net>"
    assert result["Text"] == "Schöne Grüße ✓\r\n"


def test_8bit_text_without_content_type_is_read_as_utf8() -> None:
    result = parse_inbound("Subject: x\n\nnaïve\n".encode())
    assert result["Text"] == "naïve\n"


def test_invalid_utf8_in_a_header_is_replaced_not_raised() -> None:
    result = parse_inbound(b"Subject: bad \xff\xfe bytes\n\nbody\n")
    check_shape(result)
    assert result["Subject"] == "bad \ufffd\ufffd bytes"


def test_latin1_body_declared_as_such() -> None:
    raw = b"Content-Type: text/plain; charset=ISO-8859-1\n\nd\xe9j\xe0 vu, \xa3100\n"
    assert parse_inbound(raw)["Text"] == "déjà vu, £100\n"


@pytest.mark.parametrize("charset", ["x-unknown", "base64", "zlib", "utf\x00-8", ""])
def test_an_unusable_charset_falls_back_to_utf8(charset: str) -> None:
    raw = f'Content-Type: text/plain; charset="{charset}"\n\ncafé \xff\n'.encode(
        "utf-8", errors="surrogateescape"
    )
    result = parse_inbound(raw)
    check_shape(result)
    assert result["Text"].startswith("café ")
    if charset not in ("", "utf\x00-8"):
        assert "UnknownCharset" in result["Defects"]


def test_unknown_charset_in_an_encoded_word_does_not_raise() -> None:
    result = parse_inbound(b"Subject: =?x-unknown?q?caf=E9?= and =?utf-8?b?!!!?=\n\nbody\n")
    check_shape(result)
    assert "caf" in result["Subject"]


def test_broken_base64_keeps_what_decodes_and_records_the_defect() -> None:
    raw = crlf(
        b"""Content-Type: multipart/mixed; boundary=m

--m
Content-Type: text/plain

see attached
--m
Content-Type: application/pdf
Content-Disposition: attachment; filename=a.pdf
Content-Transfer-Encoding: base64

JVBER!!i0xLjQ*
--m--
"""
    )
    result = parse_inbound(raw)
    check_shape(result)
    (attachment,) = result["Attachments"]
    assert base64.b64decode(attachment["ContentBase64"]).startswith(b"%PDF")
    assert "InvalidBase64CharactersDefect" in result["Defects"]


def test_a_multipart_without_its_closing_boundary_keeps_its_parts() -> None:
    raw = crlf(
        b"""Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/plain

plain
--alt
Content-Type: text/html

<b>html</b>
"""
    )
    result = parse_inbound(raw)
    check_shape(result)
    assert result["Text"] == "plain"
    assert result["Html"].startswith("<b>html</b>")
    assert "CloseBoundaryNotFoundDefect" in result["Defects"]


def test_a_multipart_whose_boundary_never_appears() -> None:
    raw = crlf(
        b"""Subject: lost
Content-Type: multipart/mixed; boundary=nowhere

--elsewhere
Content-Type: text/plain

text
--elsewhere--
"""
    )
    result = parse_inbound(raw)
    check_shape(result)
    assert result["Subject"] == "lost"
    assert "StartBoundaryNotFoundDefect" in result["Defects"]


def test_a_multipart_without_a_boundary_parameter() -> None:
    result = parse_inbound(b"Content-Type: multipart/mixed\n\n--x\n\nhi\n--x--\n")
    check_shape(result)
    assert "NoBoundaryInMultipartDefect" in result["Defects"]


def test_header_lines_without_a_colon() -> None:
    result = parse_inbound(b"Subject: ok\nthis line has no colon\nX-After: 1\n\nbody\n")
    check_shape(result)
    assert result["Subject"] == "ok"
    assert result["Defects"]


def test_a_forwarded_message_is_an_attachment() -> None:
    inner = b"From: a@example.org\nSubject: inner\n\ninner body\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\n"
        b"see below\n--m\nContent-Type: message/rfc822\n\n" + inner + b"--m--\n"
    )
    result = parse_inbound(raw)
    check_shape(result)
    assert result["Text"] == "see below"
    (forwarded,) = result["Attachments"]
    assert forwarded["ContentType"] == "message/rfc822"
    content = base64.b64decode(forwarded["ContentBase64"])
    assert b"Subject: inner" in content
    assert b"inner body" in content


def nested_multiparts(levels: int) -> bytes:
    head = [f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(levels)]
    tail = [f"\n--b{i}--\n" for i in reversed(range(levels))]
    return ("".join(head) + "Content-Type: text/plain\n\ndeep\n" + "".join(tail)).encode()


def sibling_parts(count: int) -> bytes:
    parts = "".join(f"--b\nContent-Type: text/csv\n\nrow {i}\n" for i in range(count))
    return f"Content-Type: multipart/mixed; boundary=b\n\n{parts}--b--\n".encode()


def bounded(raw: bytes, **limits: int) -> dict[str, Any]:
    """The parse of input built to make an unbounded parser run for minutes or recurse
    past Python's limit: that it returns, with the defect of the bound it met, is the
    test (speed itself is bench's to measure, never a test's)."""
    return parse_inbound(raw, **limits)


def test_ten_thousand_nested_multiparts_stop_at_the_bounds() -> None:
    result = bounded(nested_multiparts(10_000))
    check_shape(result)
    assert {"TooManyParts", "TooDeep"} <= set(result["Defects"])
    assert result["Text"] == ""


def test_ten_thousand_nested_message_parts_stop_at_the_bounds() -> None:
    result = bounded(b"Content-Type: message/rfc822\n\n" * 10_000 + b"\nbody\n")
    check_shape(result)
    assert "TooManyParts" in result["Defects"]


def test_five_thousand_parts_give_the_first_ones() -> None:
    result = bounded(sibling_parts(5_000))
    check_shape(result)
    assert "TooManyParts" in result["Defects"]
    # The root is a part too: 99 leaves fit in the default 100.
    assert len(result["Attachments"]) == 99
    assert base64.b64decode(result["Attachments"][0]["ContentBase64"]) == b"row 0"


def test_nesting_below_max_depth_is_not_read() -> None:
    result = parse_inbound(nested_multiparts(5), max_depth=3)
    assert "TooDeep" in result["Defects"]
    assert result["Text"] == ""
    assert parse_inbound(nested_multiparts(5), max_depth=5)["Text"].strip() == "deep"


def test_long_headers_are_kept_but_not_decoded() -> None:
    subject = b"=?utf-8?q?a?= " * 10_000
    result = bounded(b"Subject: " + subject + b"\nTo: " + b"x@y, " * 20_000 + b"\n\nb\n")
    check_shape(result)
    assert result["Subject"] == subject.decode().strip()
    assert len(result["To"]) == 20_000
    assert "HeaderTooLong" in result["Defects"]


def test_a_huge_parameter_list_does_not_stall_the_parser() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b" + b";" * 50_000 + b"\n\n"
        b"--b\nContent-Disposition: attachment" + b"; a=b" * 20_000 + b"\n\nhi\n--b--\n"
    )
    result = bounded(raw)
    check_shape(result)


@pytest.mark.parametrize("raw", [b"", b"\n", b"\r\n\r\n", b"\x00\xff", b"From:", b":\n\n"])
def test_degenerate_input(raw: bytes) -> None:
    check_shape(parse_inbound(raw))


# --- Fuzz -----------------------------------------------------------------------------


def check_fuzzed(raw: bytes) -> None:
    result = bounded(raw)
    check_shape(result)
    assert isinstance(result["Defects"], list)
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in result["Headers"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    check_fuzzed(raw)


# Bytes that matter to MIME: line ends, boundary dashes, header syntax, encoded-words.
INTERESTING = st.sampled_from(
    [b"\r\n", b"\n", b"--", b"--mixed-1", b"--alt-1--", b":", b";", b"=?", b"?=", b"\"",
     b"=", b"\x00", b"\xff", b"\xc3", b" ", b"(", b"boundary=", b"Content-Type: multipart/"]
)  # fmt: skip
MUTATION = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, len(FULL)), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, len(FULL)), INTERESTING),
    st.tuples(st.just("delete"), st.integers(0, len(FULL)), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.integers(0, len(FULL)), st.just(0)),
)


def mutate(raw: bytes, mutations: list[tuple[str, int, Any]]) -> bytes:
    for kind, position, argument in mutations:
        at = min(position, len(raw))
        if kind == "insert":
            raw = raw[:at] + argument + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + argument :]
        else:
            raw = raw[:at]
    return raw


@settings(max_examples=300, deadline=None)
@given(st.lists(MUTATION, min_size=1, max_size=12))
def test_fuzz_mutations_of_a_valid_multipart(mutations: list[tuple[str, int, Any]]) -> None:
    check_fuzzed(mutate(FULL, mutations))
