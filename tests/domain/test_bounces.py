# ruff: noqa: E501  (the CASES table keeps one case per line)
"""Bounce classification (RFC 3463): the rule table, the text rules, and their order."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.bounces import (
    BLOCK,
    HARD,
    RULES,
    SOFT,
    TEXT_RULES,
    BounceClass,
    classify,
    enhanced_status_in,
)

# (enhanced status, SMTP code, diagnostic, action) → (kind, definitive, status used)
# One line per case, however long: the table reads as a table.
CASES = [
    # 5.1.x: the address is bad.
    ("5.1.1", 550, "smtp; 550 5.1.1 <a@b>: Recipient address rejected", "failed", HARD, True, "5.1.1"),
    ("5.1.2", None, "", "failed", HARD, True, "5.1.2"),
    ("5.1.10", 550, "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound", "failed", HARD, True, "5.1.10"),
    ("5.1.6", None, "mailbox moved", "failed", HARD, True, "5.1.6"),
    # ... except our own sender's address.
    ("5.1.7", 553, "bad sender address syntax", "failed", BLOCK, False, "5.1.7"),
    ("5.1.8", 553, "sender domain does not resolve", "failed", BLOCK, False, "5.1.8"),
    # 5.2.x
    ("5.2.0", 550, "mailbox unavailable", "failed", HARD, False, "5.2.0"),
    ("5.2.1", 550, "The email account that you tried to reach is disabled", "failed", HARD, True, "5.2.1"),
    ("5.2.2", 552, "Mailbox full", "failed", SOFT, False, "5.2.2"),
    ("5.2.3", 552, "message exceeds mailbox size", "failed", SOFT, False, "5.2.3"),
    # 5.3.x: the receiving system.
    ("5.3.1", 452, "mail system full", "failed", SOFT, False, "5.3.1"),
    ("5.3.4", 552, "message too big for system", "failed", SOFT, False, "5.3.4"),
    # 5.3.0 is "other": sendmail's "Addressee unknown" is decided by the words.
    ("5.3.0", 553, "553 5.3.0 <a@b>... Addressee unknown", "failed", HARD, True, "5.3.0"),
    ("5.3.0", 553, "553 5.3.0 system error", "failed", SOFT, False, "5.3.0"),
    # 5.4.x
    ("5.4.1", 550, "550 5.4.1 Recipient address rejected: Access denied", "failed", HARD, True, "5.4.1"),
    ("5.4.4", None, "Host or domain name not found", "failed", HARD, True, "5.4.4"),
    ("5.4.6", 554, "mail loop", "failed", SOFT, False, "5.4.6"),
    ("5.4.7", None, "delivery time expired", "failed", HARD, False, "5.4.7"),
    ("5.4.2", None, "bad connection", "failed", SOFT, False, "5.4.2"),
    # 5.5.x: a bad destination, except too many recipients.
    ("5.5.0", 550, "550 5.5.0 Requested action not taken: mailbox unavailable", "failed", HARD, True, "5.5.0"),
    ("5.5.3", 452, "too many recipients", "failed", SOFT, False, "5.5.3"),
    # 5.6.x: the content.
    ("5.6.0", 554, "554 5.6.0 message content rejected", "failed", SOFT, False, "5.6.0"),
    # 5.7.x: policy, except the RFC 7293 / 7372 account codes.
    ("5.7.1", 554, "554 5.7.1 Service unavailable; blocked using zen.spamhaus.org", "failed", BLOCK, False, "5.7.1"),
    ("5.7.26", 550, "550 5.7.26 unauthenticated mail is prohibited (DMARC)", "failed", BLOCK, False, "5.7.26"),
    ("5.7.13", 525, "user account disabled", "failed", HARD, True, "5.7.13"),
    ("5.7.17", 550, "mailbox owner has changed", "failed", HARD, True, "5.7.17"),
    # 4.x.x and delays are soft, whatever they say.
    ("4.2.2", 452, "mailbox full", "failed", SOFT, False, "4.2.2"),
    ("4.4.1", None, "connect to mx: Connection refused", "failed", SOFT, False, "4.4.1"),
    ("5.1.1", 550, "user unknown", "delayed", SOFT, False, "5.1.1"),
    ("", None, "", "delayed", SOFT, False, ""),
    # X.0.0 and no status: the diagnostic's own code, of the same class.
    ("5.0.0", 550, "smtp; 550 5.1.1 user unknown", "failed", HARD, True, "5.1.1"),
    ("5.0.0", 550, "smtp; 550-5.7.1 likely unsolicited mail", "failed", BLOCK, False, "5.7.1"),
    ("5.0.0", None, "quoting an earlier attempt: 451 4.3.0 try later", "failed", HARD, False, "5.0.0"),
    ("", 550, "550 5.2.2 mailbox full", "failed", SOFT, False, "5.2.2"),
    # Only the SMTP code: 5xx hard unless the words say otherwise; 4xx soft.
    ("", 550, "550 Requested action not taken", "failed", HARD, False, "5.0.0"),
    ("", 554, "554 rejected: listed at spamhaus", "failed", BLOCK, False, "5.0.0"),
    ("", 550, "550 Message rejected by policy", "failed", BLOCK, False, "5.0.0"),
    ("", 550, "550 sender blacklisted", "failed", BLOCK, False, "5.0.0"),
    ("", 550, "550 poor reputation", "failed", BLOCK, False, "5.0.0"),
    ("", 550, "550 unknown user", "failed", HARD, True, "5.0.0"),
    ("", 552, "552 Quota violation", "failed", SOFT, False, "5.0.0"),
    ("", 552, "552 Requested mail action aborted", "failed", SOFT, False, "5.0.0"),
    ("", 450, "450 greylisted", "failed", SOFT, False, "4.0.0"),
    # No code at all: the words, or a plain failure.
    ("", None, "This account has been disabled or discontinued", "failed", HARD, True, ""),
    ("", None, "The user's mailfolder is full", "failed", SOFT, False, ""),
    ("", None, "Delivery failed 20 attempts", "failed", HARD, False, ""),
    ("", None, "554 Too many hops 26 (25 max)", "failed", SOFT, False, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code", "diagnostic", "action", "kind", "definitive", "used"), CASES
)
def test_classify(
    status: str,
    code: int | None,
    diagnostic: str,
    action: str,
    kind: str,
    definitive: bool,
    used: str,
) -> None:
    assert classify(status, code, diagnostic, action) == BounceClass(
        kind, definitive, used, diagnostic
    )


def test_the_diagnostic_is_one_bounded_line() -> None:
    found = classify("5.1.1", 550, "smtp; 550 5.1.1\r\n  user\x00 unknown" + "x" * 5000)
    assert found.diagnostic.startswith("smtp; 550 5.1.1 user unknown")
    assert "\n" not in found.diagnostic and "\x00" not in found.diagnostic
    assert len(found.diagnostic) == 1000


def test_status_spellings_are_normalised() -> None:
    assert classify("5.01.001 (user unknown)", None, "").enhanced_status == "5.1.1"
    assert classify(" 4.4.7", None, "").kind == SOFT
    assert classify("not a status", 550, "user unknown").enhanced_status == "5.0.0"


def test_action_words_are_case_insensitive() -> None:
    assert classify("5.1.1", 550, "", " Delayed ").kind == SOFT


def test_enhanced_status_in_text() -> None:
    assert enhanced_status_in("550-5.7.1 [1.2.3.4] spam") == "5.7.1"
    assert enhanced_status_in("from 192.5.1.1 said 5.1.1") == "5.1.1"  # not in an IP
    assert enhanced_status_in("Postfix 2.5.1 then 4.2.2") == "4.2.2"  # not a version
    assert enhanced_status_in("Windows 5.0.2195.1600") == ""
    assert enhanced_status_in("5.1.1", classes="4") == ""


def test_the_rule_table_is_well_formed() -> None:
    codes = [rule.code for rule in RULES]
    assert len(codes) == len(set(codes))
    for rule in RULES:
        assert re.fullmatch(r"5\.\d{1,3}\.(\d{1,3}|\*)", rule.code), rule.code
        assert rule.kind in (HARD, SOFT, BLOCK)
        assert rule.why
        assert not (rule.kind != HARD and rule.definitive), rule.code
    for text_rule in TEXT_RULES:
        assert text_rule.kind in (HARD, SOFT, BLOCK)


@given(st.text(max_size=60), st.none() | st.integers(-1000, 1000), st.text(max_size=300))
def test_classify_never_raises(status: str, code: int | None, diagnostic: str) -> None:
    found = classify(status, code, diagnostic)
    assert found.kind in (HARD, SOFT, BLOCK)
