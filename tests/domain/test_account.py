from __future__ import annotations

import pytest

from domain.account import aggregate_id_for_key, domain_accepts_sender, key_digest


@pytest.mark.parametrize(
    ("email", "accepted"),
    [
        ("news@example.com", True),
        ("news@Mail.Example.com", True),
        ("news@example.com.", True),
        ("news@badexample.com", False),
        ("news@example.com.evil.net", False),
        ("news@example.org", False),
    ],
)
def test_senders_must_be_on_the_domain_or_a_subdomain(email: str, accepted: bool) -> None:
    assert domain_accepts_sender("example.com", email) is accepted


def test_keys_are_found_by_digest_and_never_stored_in_clear() -> None:
    digest = key_digest("snd_secret")
    assert "snd_secret" not in digest and len(digest) == 64
    assert aggregate_id_for_key("sender", digest) == aggregate_id_for_key("sender", digest)
    assert aggregate_id_for_key("sender", digest) != aggregate_id_for_key("account", digest)
