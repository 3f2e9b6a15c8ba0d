from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.account import Account, aggregate_id_for_key, domain_accepts_sender, key_digest


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


def test_a_logout_ends_the_sessions_issued_before_it_and_never_moves_back() -> None:
    account = Account(uuid4(), "acme", key_digest("acc_x"), datetime(2026, 1, 1, tzinfo=UTC))
    assert account.sessions_ended_before == 0
    account.end_sessions(1_800_000_000)
    account.end_sessions(1_700_000_000)  # a late, older logout does not revive sessions
    assert account.sessions_ended_before == 1_800_000_000
    replayed = None
    for event in account.collect_events():
        replayed = event.mutate(replayed)
    assert replayed is not None and replayed.sessions_ended_before == 1_800_000_000
