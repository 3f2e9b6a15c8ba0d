"""MTA-STS rules (RFC 8461): the TXT record, the policy file, MX host matching."""

from __future__ import annotations

import pytest

from domain.mta_sts import MtaStsPolicy, PolicyError, parse_policy, record_id


@pytest.mark.parametrize(
    ("texts", "found"),
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=x1;"], "x1"),  # other records are passed over
        (["v=STSv1; id=a;", "v=STSv1; id=b;"], None),  # two: no policy (3.1)
        (["v=STSv1; id=;"], None),
        (["v=STSv1; id=" + "a" * 33], None),  # 1 to 32 characters
        (["v=STSv1; id=not-alnum"], None),
        (["id=abc; v=STSv1;"], None),  # v= must come first
        (["v=STSv1; junk; id=abc"], None),
        ([], None),
    ],
)
def test_the_txt_record(texts: list[str], found: str | None) -> None:
    assert record_id(texts) == found


def test_a_policy_is_read_with_either_line_ending() -> None:
    text = (
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\n"
        "mx: *.Example.NET.\nmax_age: 86400\n"
    )
    assert parse_policy(text) == MtaStsPolicy(
        mode="enforce", mx=("mail.example.com", "*.example.net"), max_age=86400
    )


def test_unknown_keys_are_ignored_and_none_mode_needs_no_mx() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 0\nextension: yes\n")
    assert policy == MtaStsPolicy(mode="none", mx=(), max_age=0)


@pytest.mark.parametrize(
    "text",
    [
        "mode: enforce\nmx: a.example\nmax_age: 10\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 10\n",
        "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 10\n",
        "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 10\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: \u00b2\n",  # a digit, not ASCII
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",  # 11 digits
        "version: STSv1\nmode: enforce\nmax_age: 10\n",  # enforce without mx
        "version: STSv1\nmode enforce\nmx: a.example\nmax_age: 10\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 10\n" + "x: y\n" * 20000,
    ],
)
def test_a_broken_policy_is_no_policy(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("mail.example.com", True),
        ("MAIL.example.com.", True),
        ("mx1.example.net", True),
        ("example.net", False),  # the wildcard stands for one label, not none
        ("a.b.example.net", False),  # nor two
        ("other.example.com", False),
    ],
)
def test_mx_host_matching(host: str, allowed: bool) -> None:
    policy = MtaStsPolicy(mode="enforce", mx=("mail.example.com", "*.example.net"), max_age=60)
    assert policy.allows(host) is allowed
