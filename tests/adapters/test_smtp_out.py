"""SmtpRelayTransport against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from adapters.mime import build_message
from adapters.ports import MailTransport, SmtpOutcome
from adapters.smtp_out import RelaySettings, SmtpRelayTransport
from domain.content import Address, EmailContent

HELO = "?helo=sendstream.test"
SENDER = "bounces+m1@mail.example.com"
RECIPIENT = "alice@example.org"


@dataclass
class Received:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    connection: int
    tls: bool
    auth_data: Any


@dataclass
class Relay:
    """A scripted SMTP server: records what arrives, answers what the test says.

    Handler hooks run on the server's own thread and loop; the client sees a
    reply only after the hook returned, so a test that awaited ``send`` can
    read what was recorded without waiting.
    """

    port: int = 0
    received: list[Received] = field(default_factory=list)
    connections: int = 0  # sessions that got as far as EHLO/HELO
    quits: int = 0
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    # What to do with the second MAIL of a session: None, "drop" or "421".
    second_mail: str | None = None
    drop_every_mail: bool = False
    close_after_data: bool = False
    stall_data: bool = False
    data_started: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, scheme: str = "smtp", userinfo: str = "", query: str = HELO) -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{query}"

    def new_connection(self) -> int:
        with self.lock:
            self.connections += 1
            return self.connections

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, ScriptedSMTP)
        self.data_started.set()
        if self.stall_data:
            await asyncio.sleep(60)  # cancelled by Controller.stop
        if self.data_reply is not None:
            return self.data_reply
        assert envelope.mail_from is not None and envelope.original_content is not None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content,
                mail_options=list(envelope.mail_options),
                connection=server.number,
                tls=session.ssl is not None,
                auth_data=session.auth_data,
            )
        )
        if self.close_after_data:
            server.close_after_reply = True
        return "250 2.0.0 Ok: queued as ABC123"


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP with hooks for counting sessions and misbehaving on cue."""

    def __init__(self, relay: Relay, **kwargs: Any) -> None:
        super().__init__(relay, **kwargs)
        self.relay = relay
        self.number = 0
        self.mails = 0
        self.close_after_reply = False

    async def smtp_EHLO(self, hostname: str) -> None:
        if not self.number:  # a second EHLO after STARTTLS is the same session
            self.number = self.relay.new_connection()
        await super().smtp_EHLO(hostname)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.mails += 1
        if self.relay.drop_every_mail or (self.mails > 1 and self.relay.second_mail == "drop"):
            assert self.transport is not None
            self.transport.close()
            return
        if self.mails > 1 and self.relay.second_mail == "421":
            await self.push("421 4.4.2 idle for too long, closing")
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:
        await super().smtp_DATA(arg)
        if self.close_after_reply and self.transport is not None:
            self.transport.close()

    async def smtp_QUIT(self, arg: str) -> None:
        with self.relay.lock:
            self.relay.quits += 1
        await super().smtp_QUIT(arg)


class ScriptedController(Controller):
    def __init__(self, relay: Relay, **kwargs: Any) -> None:
        super().__init__(relay, hostname="127.0.0.1", port=relay.port, **kwargs)
        self.relay = relay

    def factory(self) -> SMTP:
        return ScriptedSMTP(self.relay, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start_relay() -> Iterator[Callable[..., Relay]]:
    controllers: list[ScriptedController] = []

    def start(**smtp_kwargs: Any) -> Relay:
        relay = Relay(port=free_port())
        controller = ScriptedController(relay, **smtp_kwargs)
        controller.start()
        controllers.append(controller)
        return relay

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def relay(start_relay: Callable[..., Relay]) -> Relay:
    return start_relay()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@functools.cache  # MIME boundaries are random: build each message once
def sample_message(n: int = 0) -> bytes:
    content = EmailContent(
        subject=f"Délivrance n°{n}",
        sender=Address("news@mail.example.com", "Example News"),
        to=(Address(RECIPIENT, "Alice"),),
        # Lines that begin with a dot must survive SMTP dot-stuffing.
        plain=f"Hello {n}.\n.\n..two dots\n" + "long line " * 200 + "\n",
        html=f"<p>Hello {n}</p>",
    )
    return build_message(
        content, recipient=Address(RECIPIENT), message_id=f"m{n}", domain="mail.example.com"
    )


# --- delivery --------------------------------------------------------------------------------


async def test_delivers_the_exact_bytes_with_the_right_envelope(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url())
    message = sample_message()
    try:
        outcome = await transport.send(SENDER, RECIPIENT, message)
    finally:
        await transport.close()

    assert outcome == SmtpOutcome(250, "2.0.0", "2.0.0 Ok: queued as ABC123")
    assert outcome.is_success
    (got,) = relay.received
    assert got.mail_from == SENDER
    assert got.rcpt_tos == [RECIPIENT]
    assert got.content == message
    assert not got.tls


async def test_is_a_mail_transport(relay: Relay) -> None:
    transport: MailTransport = SmtpRelayTransport(relay.url())
    await transport.close()


async def test_the_null_sender_of_bounces_is_allowed(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url())
    try:
        assert (await transport.send("", RECIPIENT, sample_message())).code == 250
    finally:
        await transport.close()
    # MAIL FROM:<> went on the wire; aiosmtpd records the null path as "<>".
    assert relay.received[0].mail_from == "<>"


async def test_default_helo_name_works(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url(query=""))
    try:
        assert (await transport.send(SENDER, RECIPIENT, sample_message())).code == 250
    finally:
        await transport.close()


async def test_non_ascii_mailbox_uses_smtputf8_and_a_labels(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, "jörg@bücher.example", sample_message())
    finally:
        await transport.close()
    assert outcome.code == 250
    assert relay.received[0].rcpt_tos == ["jörg@xn--bcher-kva.example"]
    assert "SMTPUTF8" in relay.received[0].mail_options


async def test_utf8_headers_need_smtputf8_even_for_an_ascii_recipient(relay: Relay) -> None:
    content = EmailContent(
        subject="Hi",
        sender=Address("news@mail.example.com"),
        to=(Address("jörg@example.de"), Address(RECIPIENT)),
        plain="Hello\n",
    )
    message = build_message(
        content, recipient=Address(RECIPIENT), message_id="u1", domain="mail.example.com"
    )
    transport = SmtpRelayTransport(relay.url())
    try:
        assert (await transport.send(SENDER, RECIPIENT, message)).code == 250
    finally:
        await transport.close()
    assert "SMTPUTF8" in relay.received[0].mail_options
    assert relay.received[0].content == message


async def test_non_ascii_mailbox_without_smtputf8_is_a_permanent_failure(
    start_relay: Callable[..., Relay],
) -> None:
    relay = start_relay(enable_SMTPUTF8=False)
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, "jörg@example.de", sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (553, "5.6.7")
    assert outcome.is_permanent
    assert relay.received == []


async def test_an_8bit_message_is_announced_as_8bitmime(relay: Relay) -> None:
    message = "Subject: x\r\n\r\nGrüße\r\n".encode()
    transport = SmtpRelayTransport(relay.url())
    try:
        assert (await transport.send(SENDER, RECIPIENT, message)).code == 250
    finally:
        await transport.close()
    assert relay.received[0].content == message
    assert "BODY=8BITMIME" in relay.received[0].mail_options


@pytest.mark.parametrize(
    ("mail_from", "recipient", "status"),
    [
        (SENDER, "alice@example.org>\r\nRCPT TO:<evil@example.net", "5.1.3"),
        ("a@example.com\r\nRSET", RECIPIENT, "5.1.7"),
        (SENDER, "alice@example.org NOTIFY=NEVER", "5.1.3"),
        (SENDER, "Alice <alice@example.org>", "5.1.3"),
        (SENDER, "alice@example.org, bob@example.org", "5.1.3"),
        (SENDER, " alice@example.org", "5.1.3"),
        (SENDER, "alice@bad..domain.ü", "5.1.3"),
    ],
)
async def test_addresses_that_could_inject_smtp_commands_are_never_sent(
    relay: Relay, mail_from: str, recipient: str, status: str
) -> None:
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(mail_from, recipient, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (553, status)
    assert outcome.is_permanent
    assert relay.connections == 0


# --- connection reuse ------------------------------------------------------------------------


async def test_sequential_sends_share_one_session(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url())
    try:
        for n in range(20):
            assert (await transport.send(SENDER, RECIPIENT, sample_message(n))).code == 250
    finally:
        await transport.close()
    assert relay.connections == 1
    assert [r.content for r in relay.received] == [sample_message(n) for n in range(20)]


async def test_concurrent_sends_are_bounded_by_the_pool(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url(), pool_size=3)
    messages = {f"user{n}@example.org": sample_message(n) for n in range(40)}
    try:
        outcomes = await asyncio.gather(
            *(transport.send(SENDER, rcpt, body) for rcpt, body in messages.items())
        )
    finally:
        await transport.close()
    assert all(o.code == 250 for o in outcomes)
    assert relay.connections == 3
    assert {r.rcpt_tos[0]: r.content for r in relay.received} == messages
    assert {r.connection for r in relay.received} == {1, 2, 3}


async def test_a_session_is_replaced_after_its_message_limit(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url(), max_messages_per_connection=3)
    try:
        for n in range(10):
            assert (await transport.send(SENDER, RECIPIENT, sample_message(n))).code == 250
        assert relay.connections == 4
        assert relay.quits == 3  # each retired session said goodbye
        assert [r.connection for r in relay.received] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    finally:
        await transport.close()
    assert relay.quits == 4


async def test_close_quits_every_session_and_refuses_later_sends(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url(), pool_size=4)
    await asyncio.gather(*(transport.send(SENDER, RECIPIENT, sample_message(n)) for n in range(8)))
    await transport.close()
    assert relay.quits == relay.connections == 4
    with pytest.raises(RuntimeError):
        await transport.send(SENDER, RECIPIENT, sample_message())
    await transport.close()  # idempotent


async def test_a_cancelled_send_does_not_poison_the_pool(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url(), pool_size=1)
    relay.stall_data = True
    task = asyncio.create_task(transport.send(SENDER, RECIPIENT, sample_message()))
    assert await asyncio.to_thread(relay.data_started.wait, 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    relay.stall_data = False
    try:
        assert (await transport.send(SENDER, RECIPIENT, sample_message(1))).code == 250
    finally:
        await transport.close()
    assert relay.connections == 2  # the half-finished session was not reused


# --- authentication and TLS --------------------------------------------------------------------

PASSWORD = "p@ss:w/rd %ü"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        b"mailer",
        PASSWORD.encode(),
    )
    # handled=False: with aiosmtpd's default (True) a failed AUTH gets no
    # reply at all and the client waits for its timeout.
    return AuthResult(success=ok, handled=False, auth_data=mechanism if ok else None)


def credentials(password: str = PASSWORD) -> str:
    return f"mailer:{quote(password, safe='')}@"


NO_TLS_AUTH_WARNING = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)


@NO_TLS_AUTH_WARNING
async def test_auth_plain_with_credentials_from_the_url(start_relay: Callable[..., Relay]) -> None:
    relay = start_relay(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    transport = SmtpRelayTransport(relay.url(userinfo=credentials()))
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert outcome.code == 250
    assert relay.received[0].auth_data == "PLAIN"


@NO_TLS_AUTH_WARNING
async def test_wrong_credentials_defer_instead_of_bouncing(
    start_relay: Callable[..., Relay],
) -> None:
    relay = start_relay(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    transport = SmtpRelayTransport(relay.url(userinfo=credentials("wrong")))
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (0, "4.7.0")
    assert "AUTH" in outcome.text and "535" in outcome.text
    assert not outcome.is_permanent


async def test_opportunistic_starttls_with_a_self_signed_certificate(
    start_relay: Callable[..., Relay], server_tls: ssl.SSLContext
) -> None:
    relay = start_relay(tls_context=server_tls, require_starttls=True)
    transport = SmtpRelayTransport(relay.url(query=HELO + "&verify=false"))
    message = sample_message()
    try:
        for _ in range(3):
            assert (await transport.send(SENDER, RECIPIENT, message)).code == 250
    finally:
        await transport.close()
    assert [r.tls for r in relay.received] == [True, True, True]
    assert relay.received[0].content == message
    assert relay.connections == 1


async def test_auth_over_required_starttls(
    start_relay: Callable[..., Relay], server_tls: ssl.SSLContext
) -> None:
    relay = start_relay(tls_context=server_tls, authenticator=authenticator, auth_required=True)
    url = relay.url(userinfo=credentials(), query=HELO + "&starttls=required&verify=false")
    transport = SmtpRelayTransport(url)
    try:
        assert (await transport.send(SENDER, RECIPIENT, sample_message())).code == 250
    finally:
        await transport.close()
    assert relay.received[0].tls
    assert relay.received[0].auth_data == "PLAIN"


async def test_certificates_are_verified_by_default(
    start_relay: Callable[..., Relay], server_tls: ssl.SSLContext
) -> None:
    relay = start_relay(tls_context=server_tls)
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (0, "4.7.0")
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.text
    assert relay.received == []


async def test_required_starttls_against_a_server_without_it(relay: Relay) -> None:
    transport = SmtpRelayTransport(relay.url(query=HELO + "&starttls=required"))
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (0, "4.7.0")
    assert "STARTTLS" in outcome.text
    assert relay.received == []


async def test_implicit_tls_with_smtps(
    start_relay: Callable[..., Relay], server_tls: ssl.SSLContext
) -> None:
    relay = start_relay(ssl_context=server_tls)
    transport = SmtpRelayTransport(relay.url(scheme="smtps", query=HELO + "&verify=false"))
    try:
        assert (await transport.send(SENDER, RECIPIENT, sample_message())).code == 250
    finally:
        await transport.close()
    assert relay.connections == 1


# --- refusals ----------------------------------------------------------------------------------


async def test_a_4xx_at_rcpt_is_reported_and_the_session_kept(relay: Relay) -> None:
    relay.rcpt_replies["busy@example.org"] = "450 4.2.1 Mailbox busy, try later"
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, "busy@example.org", sample_message())
        after = await transport.send(SENDER, RECIPIENT, sample_message(1))
    finally:
        await transport.close()
    assert outcome == SmtpOutcome(450, "4.2.1", "4.2.1 Mailbox busy, try later")
    assert not outcome.is_success and not outcome.is_permanent
    assert after.code == 250
    assert relay.connections == 1  # RSET, not a new session
    assert [r.rcpt_tos for r in relay.received] == [[RECIPIENT]]


async def test_a_5xx_at_rcpt_is_permanent_with_its_enhanced_status(relay: Relay) -> None:
    relay.rcpt_replies["nobody@example.org"] = "550 5.1.1 <nobody@example.org>: user unknown"
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, "nobody@example.org", sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (550, "5.1.1")
    assert outcome.is_permanent
    assert "user unknown" in outcome.text


async def test_a_reply_without_enhanced_status(relay: Relay) -> None:
    relay.rcpt_replies["old@example.org"] = "550 No such user here"
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, "old@example.org", sample_message())
    finally:
        await transport.close()
    assert outcome == SmtpOutcome(550, "", "No such user here")


async def test_a_5xx_at_data(relay: Relay) -> None:
    relay.data_reply = "554 5.7.1 Message rejected as spam"
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert outcome == SmtpOutcome(554, "5.7.1", "5.7.1 Message rejected as spam")


async def test_a_4xx_at_data(relay: Relay) -> None:
    relay.data_reply = "451 4.3.0 Temporary local problem"
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (451, "4.3.0")


# --- network trouble ---------------------------------------------------------------------------


async def test_nobody_listening_is_a_deferral() -> None:
    transport = SmtpRelayTransport(f"smtp://127.0.0.1:{free_port()}{HELO}")
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (0, "4.4.1")
    assert "connect" in outcome.text.lower()
    assert not outcome.is_success and not outcome.is_permanent


async def test_a_server_that_never_greets_times_out_as_a_deferral() -> None:
    with socket.socket() as silent:  # accepts TCP (backlog) but never says 220
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        transport = SmtpRelayTransport(f"smtp://127.0.0.1:{port}{HELO}", timeout=0.2)
        try:
            outcome = await transport.send(SENDER, RECIPIENT, sample_message())
        finally:
            await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (0, "4.4.1")
    assert "Timeout" in outcome.text or "timed out" in outcome.text


async def test_a_session_dropped_before_mail_is_reopened_transparently(relay: Relay) -> None:
    relay.second_mail = "drop"
    transport = SmtpRelayTransport(relay.url())
    try:
        first = await transport.send(SENDER, RECIPIENT, sample_message(1))
        second = await transport.send(SENDER, RECIPIENT, sample_message(2))
    finally:
        await transport.close()
    assert (first.code, second.code) == (250, 250)
    assert relay.connections == 2
    assert [r.content for r in relay.received] == [sample_message(1), sample_message(2)]


async def test_a_session_closed_after_each_message_is_reopened(relay: Relay) -> None:
    relay.close_after_data = True
    transport = SmtpRelayTransport(relay.url())
    try:
        outcomes = [await transport.send(SENDER, RECIPIENT, sample_message(n)) for n in range(3)]
    finally:
        await transport.close()
    assert [o.code for o in outcomes] == [250, 250, 250]
    assert relay.connections == 3


async def test_a_late_421_on_a_reused_session_is_retried(relay: Relay) -> None:
    relay.second_mail = "421"
    transport = SmtpRelayTransport(relay.url())
    try:
        first = await transport.send(SENDER, RECIPIENT, sample_message(1))
        second = await transport.send(SENDER, RECIPIENT, sample_message(2))
    finally:
        await transport.close()
    assert (first.code, second.code) == (250, 250)
    assert relay.connections == 2


async def test_a_server_that_keeps_dropping_is_reported_after_one_retry(relay: Relay) -> None:
    relay.drop_every_mail = True
    transport = SmtpRelayTransport(relay.url())
    try:
        outcome = await transport.send(SENDER, RECIPIENT, sample_message())
    finally:
        await transport.close()
    assert (outcome.code, outcome.enhanced_status) == (0, "4.4.1")
    assert "Disconnected" in outcome.text
    assert relay.connections == 2


# --- settings ----------------------------------------------------------------------------------


def test_settings_from_a_plain_url() -> None:
    settings = RelaySettings.from_url("smtp://relay.example.com")
    assert settings == RelaySettings(hostname="relay.example.com", port=25)


def test_settings_from_a_full_url() -> None:
    settings = RelaySettings.from_url(
        "smtp://us%40er:p%40ss%3Aw@relay.example.com:587?starttls=required&verify=false&helo=a.b"
    )
    assert settings == RelaySettings(
        hostname="relay.example.com",
        port=587,
        username="us@er",
        password="p@ss:w",
        starttls="required",
        verify_certificates=False,
        helo_name="a.b",
    )
    assert "p@ss" not in repr(settings)
    assert "p@ss" not in repr(SmtpRelayTransport("smtp://u:p%40ss@relay.example.com"))


def test_settings_for_implicit_tls() -> None:
    settings = RelaySettings.from_url("smtps://relay.example.com")
    assert (settings.port, settings.implicit_tls, settings.starttls) == (465, True, "never")


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example.com",
        "smtp://",
        "smtp://relay.example.com?starttls=sometimes",
        "smtp://relay.example.com?verfy=false",
        "smtp://relay.example.com?verify=maybe",
        "smtps://relay.example.com?starttls=required",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        RelaySettings.from_url(url)


def test_pool_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        SmtpRelayTransport("smtp://relay.example.com", pool_size=0)
    with pytest.raises(ValueError):
        SmtpRelayTransport("smtp://relay.example.com", max_messages_per_connection=0)
