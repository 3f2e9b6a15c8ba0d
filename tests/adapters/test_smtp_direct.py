"""Direct delivery against real DNS (dnsmasq) and real mail servers on loopback addresses:
routing (RFC 5321 5.1, RFC 7505), host fallback, hostile servers, opportunistic TLS and
the session pool. The domains and servers are those of ``tests/fake_mx.py``."""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.dns import MailRoutes
from adapters.mta_sts import MtaStsPolicies
from adapters.ports import SmtpOutcome
from adapters.smtp_out.direct import DirectTransport
from domain.mta_sts import MtaStsPolicy
from domain.routing import MxRecord, parse_sources
from domain.shaping import ShapingRules, parse_shaping
from tests.fake_mx import DEAD_ADDRESS, STS_MX_ADDRESS, TLS_ADDRESS, FakeMx
from tests.services import received_messages

SENDER = "bounces+m1@mail.example.com"
MESSAGE = b"From: a@mail.example.com\r\nTo: b@alpha.example\r\nSubject: hi\r\n\r\nHello.\r\n"

MakeTransport = Callable[..., DirectTransport]


@pytest.fixture
async def transport(fake_mx: FakeMx) -> AsyncIterator[MakeTransport]:
    made: list[DirectTransport] = []

    def make(**options: object) -> DirectTransport:
        settings: dict[str, object] = {
            "helo_name": "sendstream.test",
            "allow_private_addresses": True,
            "timeout": 1.0,
        }
        settings.update(options)
        routes = MailRoutes(fake_mx.resolver, timeout=2.0)
        made.append(DirectTransport(routes, **settings))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for direct in made:
        await direct.close()


async def send(direct: DirectTransport, recipient: str) -> SmtpOutcome:
    return await direct.send(SENDER, recipient, MESSAGE)


def rules(
    provider: dict[str, object] | None = None,
    hosts: tuple[str, ...] = ("mx.pool.example",),
    **default: object,
) -> ShapingRules:
    """Shaping rules from a [default] table and, optionally, a [provider.pool] table that
    claims ``hosts``."""
    lines = ["[default]", *(f"{key} = {value}" for key, value in default.items())]
    if provider is not None:
        lines += ["[provider.pool]", f"mx = [{', '.join(repr(h) for h in hosts)}]"]
        lines += [f"{key} = {value}" for key, value in provider.items()]
    return parse_shaping("\n".join(lines) + "\n")


# --- routing -------------------------------------------------------------------------------


async def test_mail_goes_to_the_most_preferred_mx_host(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    sink = fake_mx.sinks["mx1.alpha.example"]
    before = len(received_messages(sink))
    outcome = await send(transport(), "alice@alpha.example")
    assert outcome.is_success, outcome
    assert outcome.remote == "mx1.alpha.example[127.0.0.2]"
    assert len(received_messages(sink)) == before + 1


async def test_an_unreachable_host_passes_to_the_next_one(transport: MakeTransport) -> None:
    outcome = await send(transport(), "bob@fallback.example")
    assert outcome.is_success, outcome
    assert outcome.remote == "mx2.alpha.example[127.0.0.3]"


async def test_a_421_greeting_passes_to_the_next_host(transport: MakeTransport) -> None:
    outcome = await send(transport(), "carol@greet421.example")
    assert outcome.is_success, outcome
    assert outcome.remote == "mx2.alpha.example[127.0.0.3]"


async def test_a_domain_without_mx_is_its_own_mail_server(transport: MakeTransport) -> None:
    outcome = await send(transport(), "dave@implicit.example")
    assert outcome.is_success, outcome
    assert outcome.remote == "implicit.example[127.0.0.2]"


async def test_a_null_mx_bounces_without_a_connection(transport: MakeTransport) -> None:
    outcome = await send(transport(), "erin@null.example")
    assert (outcome.code, outcome.enhanced_status) == (556, "5.1.10")
    assert outcome.is_permanent and outcome.remote == ""
    assert "null MX" in outcome.text


async def test_a_domain_that_does_not_exist_bounces(transport: MakeTransport) -> None:
    outcome = await send(transport(), "frank@nosuchdomain.example")
    assert (outcome.code, outcome.enhanced_status) == (550, "5.1.2")
    assert "NXDOMAIN" in outcome.text


async def test_mx_hosts_without_addresses_bounce(transport: MakeTransport) -> None:
    outcome = await send(transport(), "gina@ghost.example")
    assert (outcome.code, outcome.enhanced_status) == (550, "5.4.4")
    assert "nowhere.ghost.example" in outcome.text


async def test_dns_that_does_not_answer_defers(transport: MakeTransport) -> None:
    # dnsmasq refuses names outside .example, as a broken or unreachable server would fail
    outcome = await send(transport(), "hank@elsewhere.org")
    assert (outcome.code, outcome.enhanced_status) == (451, "4.4.3")
    assert not outcome.is_permanent and "MX lookup of elsewhere.org" in outcome.text


async def test_private_mx_addresses_are_refused_unless_allowed(
    transport: MakeTransport,
) -> None:
    outcome = await send(transport(allow_private_addresses=False), "ivy@alpha.example")
    assert (outcome.code, outcome.enhanced_status) == (0, "4.4.4")
    assert "mx1.alpha.example[127.0.0.2] not tried: 127.0.0.2 is a loopback address" in outcome.text
    assert "mx2.alpha.example[127.0.0.3] not tried" in outcome.text


async def test_answers_are_kept_for_their_time_to_live(fake_mx: FakeMx) -> None:
    routes = MailRoutes(fake_mx.resolver, min_ttl=60)
    first = await routes.route("alpha.example")
    assert set(first.records) == {
        MxRecord(10, "mx1.alpha.example"),
        MxRecord(20, "mx2.alpha.example"),
    }
    assert first.addresses == {
        "mx1.alpha.example": ("127.0.0.2",),
        "mx2.alpha.example": ("127.0.0.3",),
    }
    log = fake_mx.dns.log_path.read_text()
    again = await asyncio.gather(*(routes.route("alpha.example") for _ in range(10)))
    assert all(route is first for route in again)
    assert fake_mx.dns.log_path.read_text() == log  # no query reached the server


async def test_concurrent_lookups_of_one_domain_share_one_query(fake_mx: FakeMx) -> None:
    routes = MailRoutes(fake_mx.resolver)
    found = await asyncio.gather(*(routes.route("beta.example") for _ in range(20)))
    assert len({id(route) for route in found}) == 1


def test_equal_preferences_are_tried_in_varying_order() -> None:
    from domain.routing import hosts_in_order

    records = [MxRecord(10, "a"), MxRecord(10, "b"), MxRecord(10, "c"), MxRecord(5, "first")]
    orders = {tuple(hosts_in_order(records, random.Random(seed))) for seed in range(40)}
    assert all(order[0] == "first" for order in orders)
    assert len(orders) == 6  # every order of a, b and c


# --- hostile servers: every wait bounded, every one a deferral naming the server ------------


@pytest.mark.parametrize(
    ("mode", "step"),
    [
        ("silent", "connect failed"),
        ("endless", "EHLO failed"),
        ("huge-line", "EHLO failed"),
    ],
)
async def test_a_server_that_never_gets_to_mail_defers(
    transport: MakeTransport, mode: str, step: str
) -> None:
    started = time.monotonic()
    outcome = await send(transport(), f"joe@{mode}.example")
    assert time.monotonic() - started < 10
    assert (outcome.code, outcome.enhanced_status) == (0, "4.4.1")
    assert outcome.text.startswith(f"mx.{mode}.example[")
    assert step in outcome.text


@pytest.mark.parametrize("mode", ["stall-after-data", "drop-in-data"])
async def test_a_server_that_fails_during_the_message_defers(
    fake_mx: FakeMx, transport: MakeTransport, mode: str
) -> None:
    outcome = await send(transport(), f"kim@{mode}.example")
    assert (outcome.code, outcome.enhanced_status) == (0, "4.4.1")
    assert outcome.remote.startswith(f"mx.{mode}.example[")
    assert not fake_mx.hostile[mode].accepted


# --- TLS -----------------------------------------------------------------------------------


async def test_starttls_is_used_when_offered_and_its_version_reported(
    transport: MakeTransport,
) -> None:
    outcome = await send(transport(), "lee@tls.example")
    assert outcome.is_success, outcome
    assert outcome.remote == f"mx.tls.example[{TLS_ADDRESS}]"
    assert outcome.tls in ("TLSv1.2", "TLSv1.3")


def test_starttls_bound_sources_and_fallback_work_on_uvloop(fake_mx: FakeMx) -> None:
    """The delivery worker runs on uvloop (``Engine._run_delivery``)."""
    import uvloop

    async def main() -> list[SmtpOutcome]:
        direct = DirectTransport(
            MailRoutes(fake_mx.resolver, timeout=2.0), helo_name="sendstream.test",
            allow_private_addresses=True, timeout=1.0,
            sources=parse_sources("127.0.0.34=mta34.example"),
        )  # fmt: skip
        try:
            return [
                await send(direct, "uv1@tls.example"),
                await send(direct, "uv2@bad-tls.example"),
                await send(direct, "uv3@alpha.example"),
            ]
        finally:
            await direct.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        tls, fallback, plain = runner.run(main())
    assert tls.is_success and tls.tls in ("TLSv1.2", "TLSv1.3"), tls
    assert fallback.is_success and fallback.tls == "", fallback
    assert plain.is_success and plain.source == "127.0.0.34", plain


async def test_a_broken_tls_handshake_falls_back_to_the_clear(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["bad-tls"]
    before = len(server.accepted)
    outcome = await send(transport(), "max@bad-tls.example")
    assert outcome.is_success, outcome
    assert outcome.tls == ""
    assert len(server.accepted) == before + 1


# --- the session pool --------------------------------------------------------------------


async def test_domains_on_the_same_servers_share_sessions(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["accept"]
    direct = transport()
    before = server.connections
    for n in range(6):
        outcome = await send(direct, f"n{n}@pool{1 + n % 2}.example")
        assert outcome.is_success, outcome
    assert server.connections == before + 1


async def test_a_session_carries_a_limited_number_of_messages(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["accept"]
    direct = transport(shaping=rules(messages_per_connection=2))
    before = server.connections
    for n in range(6):
        assert (await send(direct, f"o{n}@pool1.example")).is_success
    assert server.connections == before + 3


async def test_connections_to_one_host_are_capped(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["accept"]
    direct = transport(shaping=rules(max_connections=3))
    before = server.connections
    outcomes = await asyncio.gather(*(send(direct, f"p{n}@pool2.example") for n in range(30)))
    assert all(outcome.is_success for outcome in outcomes)
    assert server.connections - before <= 3


async def test_an_idle_session_is_closed(fake_mx: FakeMx, transport: MakeTransport) -> None:
    server = fake_mx.hostile["accept"]
    direct = transport(idle_seconds=0.2)
    before = server.connections
    assert (await send(direct, "q1@pool1.example")).is_success
    await asyncio.sleep(1.6)  # the idle check runs once a second
    assert (await send(direct, "q2@pool1.example")).is_success
    assert server.connections == before + 2


async def test_a_provider_rule_caps_the_sessions_of_all_its_hosts(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    concurrency = fake_mx.hostile["accept"].concurrency  # shared with "accept-b"
    await asyncio.sleep(0.3)  # the servers have seen earlier tests' sessions close
    baseline = concurrency.peak = concurrency.now
    hosts = ("mx.pool.example", "mxb.pool.example")  # two MX hosts of pool3.example
    direct = transport(shaping=rules({"max_connections": 2}, hosts, max_connections=50))
    outcomes = await asyncio.gather(*(send(direct, f"r{n}@pool3.example") for n in range(40)))
    assert all(outcome.is_success for outcome in outcomes)
    assert {outcome.remote.partition("[")[0] for outcome in outcomes} == set(hosts)
    assert concurrency.peak - baseline <= 2  # never more than 2 open at once, both hosts together


async def test_a_provider_rule_paces_its_messages(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    direct = transport(shaping=rules({"messages_per_second": 20}))
    started = time.monotonic()
    outcomes = await asyncio.gather(*(send(direct, f"s{n}@pool1.example") for n in range(30)))
    assert all(outcome.is_success for outcome in outcomes)
    # a bucket of 20 (one second's worth), then 20 a second: the last 10 need half a second
    assert time.monotonic() - started >= 0.45


async def test_a_slow_down_reply_pauses_mail_to_that_receiver(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["rate-limit"]
    direct = transport(shaping=rules(backoff_seconds=60))
    first = await send(direct, "t1@rate-limit.example")
    assert (first.code, first.enhanced_status) == (421, "4.7.28")
    before = server.connections
    second = await send(direct, "t2@rate-limit.example")
    assert (second.code, second.enhanced_status) == (0, "4.7.0")
    assert "paced by the receiver: slowed down for" in second.text
    assert "421 4.7.28" in second.text  # the reply that asked for it
    assert server.connections == before  # no connection while paused


async def test_pauses_and_their_end_come_back_as_route_changes(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    # one provider over the rate-limiting server and a server that takes mail
    hosts = ("mx.rate-limit.example", "mx.pool.example")
    direct = transport(shaping=rules({"backoff_seconds": 1}, hosts))
    throttled = await send(direct, "r1@rate-limit.example")
    assert throttled.code == 421
    [change] = throttled.route_changes
    assert (change.kind, change.route, change.source) == ("throttled", "pool", "")
    assert 0.5 <= change.seconds <= 1.5 and "4.7.28" in change.reason
    await asyncio.sleep(1.6)  # the pause is over
    resumed = await send(direct, "r2@pool1.example")
    assert resumed.is_success
    assert [(c.kind, c.route) for c in resumed.route_changes] == [("resumed", "pool")]
    again = await send(direct, "r3@pool1.example")
    assert again.is_success and again.route_changes == ()


async def test_a_block_is_one_suspension_however_many_replies_say_it(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    direct = transport(sources=parse_sources("127.0.0.32=mta32.example"))
    first = await send(direct, "b1@blocked.example")
    [change] = first.route_changes
    assert (change.kind, change.route, change.source) == (
        "suspended", "mx.blocked.example", "127.0.0.32",
    )  # fmt: skip
    assert change.seconds == 3600 and "Spamhaus" in change.reason
    second = await send(direct, "b2@blocked.example")
    assert second.enhanced_status == "4.7.0" and second.route_changes == ()


async def test_each_message_may_name_the_addresses_it_leaves_from(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    sink = fake_mx.sinks["mx1.alpha.example"]
    before = len(received_messages(sink))
    direct = transport(sources=parse_sources("127.0.0.30=mta30.example"))
    pool = parse_sources("127.0.0.33=mta33.example")
    chosen = await direct.send(SENDER, "p1@alpha.example", MESSAGE, pool)
    default = await direct.send(SENDER, "p2@alpha.example", MESSAGE)
    assert (chosen.source, default.source) == ("127.0.0.33", "127.0.0.30")
    dumps = received_messages(sink)[before:]
    assert {(header(d, b"X-Client-Addr"), header(d, b"X-Helo-Args")) for d in dumps} == {
        ("127.0.0.33", "mta33.example"), ("127.0.0.30", "mta30.example"),
    }  # fmt: skip


async def test_a_block_reply_suspends_mail_to_that_receiver(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["blocked"]
    direct = transport()
    first = await send(direct, "u1@blocked.example")
    assert first.is_permanent and first.enhanced_status == "5.7.1"
    before = server.connections
    second = await send(direct, "u2@blocked.example")
    assert (second.code, second.enhanced_status) == (0, "4.7.0")
    assert "paced by the receiver: suspended for" in second.text and "Spamhaus" in second.text
    assert server.connections == before
    # other receivers are not held up by it
    assert (await send(direct, "u3@pool1.example")).is_success


async def test_a_block_suspends_every_host_of_the_provider(transport: MakeTransport) -> None:
    hosts = ("mx.blocked.example", "mx.pool.example")
    direct = transport(shaping=rules({"max_connections": 5}, hosts))
    assert (await send(direct, "v1@blocked.example")).enhanced_status == "5.7.1"
    other = await send(direct, "v2@pool1.example")  # another host of the same provider
    assert (other.code, other.enhanced_status) == (0, "4.7.0")
    assert "suspended for" in other.text


async def test_a_421_greeting_pauses_that_host_but_not_its_backup(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    server = fake_mx.hostile["greet-421"]
    direct = transport()
    assert (await send(direct, "w1@greet421.example")).is_success  # through the backup MX
    before = server.connections
    second = await send(direct, "w2@greet421.example")
    assert second.is_success and second.remote == "mx2.alpha.example[127.0.0.3]"
    assert server.connections == before  # the host that turned us away is left alone


async def test_mail_leaves_from_the_sending_addresses_with_their_names(
    fake_mx: FakeMx, transport: MakeTransport
) -> None:
    sink = fake_mx.sinks["mx1.alpha.example"]
    before = len(received_messages(sink))
    sources = parse_sources("127.0.0.30=mta30.example, 127.0.0.31=mta31.example*3")
    direct = transport(sources=sources, rng=random.Random(7))
    outcomes = [await send(direct, f"x{n}@alpha.example") for n in range(40)]
    assert all(outcome.is_success for outcome in outcomes)
    dumps = received_messages(sink)[before:]
    seen = Counter((header(dump, b"X-Client-Addr"), header(dump, b"X-Helo-Args")) for dump in dumps)
    assert set(seen) == {("127.0.0.30", "mta30.example"), ("127.0.0.31", "mta31.example")}
    assert seen["127.0.0.31", "mta31.example"] > seen["127.0.0.30", "mta30.example"]  # 3 to 1
    assert Counter(outcome.source for outcome in outcomes) == Counter(
        address for address, _ in seen.elements()
    )


def header(dump: bytes, name: bytes) -> str:
    for line in dump.split(b"\n"):
        if line.startswith(name + b": "):
            return line.split(b": ", 1)[1].decode()
    return ""


def test_nothing_listens_at_the_dead_address() -> None:
    import socket

    with pytest.raises(OSError), socket.create_connection((DEAD_ADDRESS, 25), timeout=1):
        pass


# --- MTA-STS (RFC 8461) -------------------------------------------------------------------


@pytest.fixture
async def sts_transport(fake_mx: FakeMx) -> AsyncIterator[DirectTransport]:
    """A transport that applies MTA-STS, trusting the test CA (as TLS_CA_FILE would)."""
    routes = MailRoutes(fake_mx.resolver, timeout=2.0)
    verify = ssl.create_default_context(cafile=str(fake_mx.ca_file))
    direct = DirectTransport(
        routes,
        helo_name="sendstream.test",
        allow_private_addresses=True,
        timeout=2.0,
        policies=MtaStsPolicies(routes, verify, timeout=2.0, allow_private_addresses=True),
        verify_context=verify,
    )
    yield direct
    await direct.close()


@pytest.mark.parametrize("domain", ["sts.example", "sts2.example"])  # exact, and *.sts.example
async def test_an_enforced_policy_delivers_over_verified_tls(
    sts_transport: DirectTransport, domain: str
) -> None:
    outcome = await send(sts_transport, f"amy@{domain}")
    assert outcome.is_success, outcome
    assert outcome.remote == f"mx.sts.example[{STS_MX_ADDRESS}]"
    assert re.fullmatch(r"TLSv1\.[23] \(MTA-STS enforce\)", outcome.tls)


async def test_an_enforced_policy_refuses_a_certificate_it_cannot_check(
    sts_transport: DirectTransport,
) -> None:
    outcome = await send(sts_transport, "ben@stsbadcert.example")
    assert (outcome.code, outcome.enhanced_status) == (0, "4.7.5")
    assert "MTA-STS policy of stsbadcert.example (enforce)" in outcome.text
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.text


async def test_an_enforced_policy_refuses_a_good_certificate_for_another_name(
    sts_transport: DirectTransport,
) -> None:
    outcome = await send(sts_transport, "bill@stswrongname.example")
    assert (outcome.code, outcome.enhanced_status) == (0, "4.7.5")
    assert "other.sts.example" in outcome.text and "CERTIFICATE_VERIFY_FAILED" in outcome.text


async def test_an_enforced_policy_tries_no_mx_host_it_does_not_name(
    fake_mx: FakeMx, sts_transport: DirectTransport
) -> None:
    sink = fake_mx.sinks["mx1.alpha.example"]
    before = len(received_messages(sink))
    outcome = await send(sts_transport, "cat@stsoutside.example")
    assert (outcome.code, outcome.enhanced_status) == (0, "4.7.5")
    assert "mx1.alpha.example not tried: not an MX host of the MTA-STS policy" in outcome.text
    assert len(received_messages(sink)) == before


async def test_a_testing_policy_delivers_and_reports_what_it_would_refuse(
    sts_transport: DirectTransport,
) -> None:
    outcome = await send(sts_transport, "dan@ststesting.example")
    assert outcome.is_success, outcome
    assert outcome.tls == (
        "no TLS (MTA-STS testing: mx1.alpha.example is not an MX host of the policy; no TLS)"
    )


async def test_a_record_without_a_policy_to_fetch_is_no_policy(
    sts_transport: DirectTransport,
) -> None:
    outcome = await send(sts_transport, "eve@stsnopolicy.example")
    assert outcome.is_success, outcome
    assert outcome.tls == ""


async def test_a_policy_is_kept_and_fetched_once(fake_mx: FakeMx) -> None:
    routes = MailRoutes(fake_mx.resolver)
    verify = ssl.create_default_context(cafile=str(fake_mx.ca_file))
    policies = MtaStsPolicies(routes, verify, allow_private_addresses=True)
    try:
        found = await asyncio.gather(*(policies.policy("sts.example") for _ in range(5)))
        again = await policies.policy("sts.example")
    finally:
        await policies.close()
    assert found[0] is not None
    assert found[0] == MtaStsPolicy(mode="enforce", mx=("mx.sts.example",), max_age=86400)
    assert all(policy is found[0] for policy in [*found, again])
