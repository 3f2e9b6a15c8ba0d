"""Traffic-shaping rules: the shipped file, matching MX hosts to providers, and errors that
name the line of a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.shaping import ShapingFileError, parse_shaping, reply_class

SHIPPED = Path(__file__).resolve().parents[2] / "engine" / "delivery" / "shaping.toml"


def test_the_shipped_rules_parse_and_claim_the_big_providers() -> None:
    rules = parse_shaping(SHIPPED.read_text())
    assert rules.for_host("gmail-smtp-in.l.google.com").name == "google"
    assert rules.for_host("alt4.gmail-smtp-in.l.google.com.").name == "google"
    assert rules.for_host("example-com.mail.protection.outlook.com").name == "microsoft"
    assert rules.for_host("mta7.am0.yahoodns.net").name == "yahoo"
    assert rules.for_host("mx.example.org").name == "default"
    assert rules.for_host("google.com.evil.example").name == "default"


def test_a_provider_inherits_what_it_leaves_out_from_default() -> None:
    rules = parse_shaping(
        "[default]\nmax_connections = 7\nmessages_per_hour = 1000\n"
        '[provider.a]\nmx = ["*.a.example"]\nmessages_per_second = 2.5\n'
    )
    provider = rules.for_host("mx.a.example")
    assert (provider.max_connections, provider.messages_per_hour) == (7, 1000)
    assert provider.messages_per_second == 2.5
    assert provider.messages_per_connection == 100  # nobody set it: the built-in default


def test_the_most_specific_pattern_wins() -> None:
    rules = parse_shaping(
        '[provider.wide]\nmx = ["*.example.net"]\n'
        '[provider.narrow]\nmx = ["*.mail.example.net"]\n'
        '[provider.exact]\nmx = ["mx1.mail.example.net"]\n'
    )
    assert rules.for_host("a.example.net").name == "wide"
    assert rules.for_host("b.mail.example.net").name == "narrow"
    assert rules.for_host("mx1.mail.example.net").name == "exact"
    assert rules.for_host("example.net").name == "default"  # *.x claims hosts under x only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default\nmax_connections = 1\n", "not valid TOML"),
        ("[default]\nmax_connections = 1\nspeed = 3\n", "line 1: unknown setting 'speed'"),
        ("[default]\nmax_connections = -1\n", "line 2: max_connections must be a whole number"),
        ("[default]\n\nmessages_per_hour = 1.5\n", "line 3: messages_per_hour must be"),
        ("[default]\nmessages_per_connection = 0\n", "line 2: messages_per_connection must be at"),
        ('[default]\n[provider.x]\nmx = "*.x.example"\n', "line 2: [provider.x] needs mx"),
        ('[provider.x]\nmx = ["not a host"]\n', "line 1: 'not a host' is not a host name"),
        ('[provider.x]\nmx = ["*.x.example"]\n[provider.y]\nmx = ["*.x.example"]\n',
         "line 3: '*.x.example' is claimed by provider 'x' too"),
        ("[defaults]\n", "unknown table or key 'defaults'"),
        ("[default]\nmax_connections = true\n", "line 2: max_connections must be"),
        ("[default]\nmessages_per_second = inf\n", "line 2: messages_per_second must be"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(ShapingFileError) as raised:
        parse_shaping(text)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("code", "status", "text", "kind"),
    [
        (421, "4.7.0", "Try again later, closing connection.", "slow"),
        (451, "4.7.28", "unusual rate of unsolicited mail", "slow"),
        (450, "", "Too many connections, slow down", "slow"),
        (451, "4.3.0", "Temporary system problem", ""),
        (550, "5.7.1", "Service unavailable; host [192.0.2.1] blocked using Spamhaus", "block"),
        (554, "5.7.1", "Message rejected due to poor sender reputation", "block"),
        (550, "5.1.1", "The email account that you tried to reach does not exist", ""),
        (550, "5.7.1", "Relaying denied", ""),  # a policy refusal, but not of us as a sender
        (451, "4.7.1", "Greylisted, please try again later", ""),  # the usual retry will do
        (554, "5.7.1", "Message blocked: it contains a banned attachment", ""),  # this message
        (421, "4.7.0", "Too many connections from your host", "slow"),
        (250, "2.0.0", "OK", ""),
    ],
)  # fmt: skip
def test_what_a_reply_says_about_the_pace(code: int, status: str, text: str, kind: str) -> None:
    assert reply_class(code, status, text) == kind
