"""The fast path for everyday addresses agrees with email-validator on every input."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from engine.params import is_valid_email


def reference(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return False
    return "\r" not in value and "\n" not in value and len(value) <= 254


@pytest.mark.parametrize(
    "address",
    [
        "jane@example.org", "first.last+tag@sub.example.co.uk", "a@b.cd", "x@localhost",
        "x@mail.test", "x@foo.local", "x..y@example.org", ".x@example.org", "x.@example.org",
        "x@-example.org", "x@example-.org", "x@example", "x@123.45", "\"quoted\"@example.org",
        "jöhn@exämple.org", "a" * 64 + "@example.org", "a" * 65 + "@example.org",
        "x@" + "a" * 63 + ".org", "x@" + "a" * 64 + ".org", "x@example.org\n", "x@@example.org",
        "0@00--0.org", "x@ab--c.org", "x@a--b.org", "x@xn--nxasmq6b.com", "x@xn--zz.org",
    ],
)  # fmt: skip
def test_known_cases_agree(address: str) -> None:
    assert is_valid_email(address) == reference(address)


LOCAL = st.text(alphabet="abcXYZ019.+-_!#'", min_size=0, max_size=12)
LABEL = st.text(alphabet="abc019-", min_size=0, max_size=8)


@given(
    LOCAL,
    st.lists(LABEL, min_size=1, max_size=4),
    st.sampled_from(["org", "test", "x", "c0m", "local"]),
)
def test_generated_addresses_agree(local: str, labels: list[str], top: str) -> None:
    address = f"{local}@{'.'.join([*labels, top])}"
    assert is_valid_email(address) == reference(address)
