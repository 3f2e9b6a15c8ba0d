"""VERP return paths: round trips, the spellings MTAs make of them, and forgeries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.verp import PREFIX, message_id_from_verp, verp_address

KEY = b"k" * 32
MESSAGE = UUID("0f6d1a9e-3b7c-4f52-8a10-5c2e9b7d4e11")


def test_the_address_names_the_message_and_our_bounce_host() -> None:
    address = verp_address(MESSAGE, "bounces.example.com", KEY)
    local, _, host = address.partition("@")
    assert host == "bounces.example.com"
    assert re.fullmatch(r"b-[a-z2-7]{36}", local)
    assert message_id_from_verp(address, KEY) == MESSAGE


def test_the_token_is_the_id_and_a_truncated_hmac_in_base32() -> None:
    local = verp_address(MESSAGE, "b.example", KEY).partition("@")[0]
    raw = base64.b32decode(local[len(PREFIX) :].upper() + "====")
    assert raw[:16] == MESSAGE.bytes
    assert raw[16:] == hmac.new(KEY, MESSAGE.bytes, hashlib.sha256).digest()[:6]


def test_a_local_part_within_smtp_limits() -> None:
    local = verp_address(uuid4(), "b.example", KEY).partition("@")[0]
    assert len(local) == 38 <= 64


@pytest.mark.parametrize(
    "spelling",
    [
        lambda a: a.upper(),  # MTAs and mailbox providers change case
        lambda a: f"<{a}>",
        lambda a: f"  <{a.upper()}>  ",
        lambda a: a.partition("@")[0],  # the local part alone
        lambda a: a.partition("@")[0] + "@other-host.example",  # the host is not checked
    ],
)
def test_spellings_of_the_same_address_decode(spelling: object) -> None:
    address = verp_address(MESSAGE, "bounces.example.com", KEY)
    assert callable(spelling)
    assert message_id_from_verp(spelling(address), KEY) == MESSAGE


def test_the_host_is_normalised_and_checked() -> None:
    assert verp_address(MESSAGE, "Bounces.Example.COM.", KEY).endswith("@bounces.example.com")
    for bad in ("", "a@b", "<host>", "two words", "hôst.example"):
        with pytest.raises(ValueError):
            verp_address(MESSAGE, bad, KEY)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        verp_address(MESSAGE, "b.example", b"")
    assert message_id_from_verp(verp_address(MESSAGE, "b.example", KEY), b"") is None


def test_another_key_does_not_accept_it() -> None:
    address = verp_address(MESSAGE, "b.example", KEY)
    assert message_id_from_verp(address, b"another key") is None


def test_a_forged_token_for_another_message_is_refused() -> None:
    """Someone who knows a message id (and our format) still cannot name it."""
    victim = uuid4()
    forged_mac = hmac.new(b"guess", victim.bytes, hashlib.sha256).digest()[:6]
    token = base64.b32encode(victim.bytes + forged_mac).decode().rstrip("=").lower()
    assert message_id_from_verp(f"b-{token}@b.example", KEY) is None


def test_every_single_character_change_is_refused() -> None:
    address = verp_address(MESSAGE, "b.example", KEY)
    local = address.partition("@")[0]
    for i in range(len(PREFIX), len(local)):
        for replacement in "a7":
            if local[i] == replacement:
                continue
            changed = local[:i] + replacement + local[i + 1 :]
            assert message_id_from_verp(changed, KEY) is None, changed


@pytest.mark.parametrize(
    "address",
    [
        "",
        "postmaster@bounces.example.com",
        "b-@bounces.example.com",
        "b-" + "a" * 35 + "@x",  # one character short
        "b-" + "a" * 37 + "@x",  # one too many
        "b-" + "0" * 36 + "@x",  # not base32
        "b-" + "ä" * 36 + "@x",
        "x-" + "a" * 36 + "@x",
        "<<>>",
        "b-" + "a" * 10_000,
    ],
)
def test_what_is_not_ours_is_none(address: str) -> None:
    assert message_id_from_verp(address, KEY) is None


def test_only_the_canonical_spelling_of_the_last_character_is_accepted() -> None:
    """36 base32 characters carry 180 bits for 176: the last 4 bits must be zero."""
    local = verp_address(MESSAGE, "b.example", KEY).partition("@")[0]
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(local[-1])
    sibling = alphabet[last | 1] if last % 2 == 0 else alphabet[last & ~1]
    assert message_id_from_verp(local[:-1] + sibling, KEY) is None


@given(st.uuids(), st.binary(min_size=1, max_size=64))
def test_any_message_and_key_round_trip(message_id: UUID, key: bytes) -> None:
    address = verp_address(message_id, "bounces.example.com", key)
    assert message_id_from_verp(address.upper(), key) == message_id


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    assert message_id_from_verp(text, KEY) is None
