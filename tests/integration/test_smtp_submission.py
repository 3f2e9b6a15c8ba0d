"""SMTP submission against the real server: smtplib and swaks as clients, real TLS, the
engine's event store and delivery behind it."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import smtplib
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from domain.account import SmtpCredential, smtp_credential_id
from domain.message import MessageStatus
from engine.accounts.passwords import hash_password
from engine.runtime.composition import Engine, Role
from engine.sending.smtp_submission import SubmissionServer
from tests.integration.conftest import wait_for

USERNAME = "smtp-user@example.com"
PASSWORD = "correct horse battery staple"
QUEUED = re.compile(r"queued as ([0-9a-f-]{36})")


@dataclass
class Submission:
    engine: Engine
    server: SubmissionServer
    credential_id: UUID
    account_id: UUID

    @property
    def port(self) -> int:
        return self.server.plain_ports[0]

    def client(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        client.ehlo()
        return client

    def logged_in(self) -> smtplib.SMTP:
        client = self.client()
        client.login(USERNAME, PASSWORD)
        return client

    def notifications(self) -> int:
        return self.engine.app.recorder.max_notification_id() or 0


@pytest.fixture
def submission(make_engine: Callable[..., Engine]) -> Iterator[Callable[..., Submission]]:
    """``submission(**settings)``: an engine on a fresh store, an account on example.com
    with an SMTP credential, and the submission server on free loopback ports."""
    servers: list[SubmissionServer] = []

    def start(
        roles: frozenset[Role] = frozenset({Role.API}), workers: bool = False, **env: Any
    ) -> Submission:
        env.setdefault("SMTP_SUBMISSION_HOST", "127.0.0.1")
        env.setdefault("SMTP_SUBMISSION_PORTS", "0")
        engine = make_engine(roles=roles, start=workers, **env)
        keys = engine.app.bootstrap("example.com")
        domain = engine.app.domain(UUID(keys["DomainID"]))
        credential = SmtpCredential(
            id=smtp_credential_id(USERNAME),
            account_id=domain.account_id,
            domain_id=domain.id,
            username=USERNAME,
            password_hash=hash_password(PASSWORD),
            issued_at=datetime.now(UTC),
        )
        domain.attach_smtp_credential(credential.id)
        engine.app.save(credential, domain)
        server = SubmissionServer(engine.app, engine.settings, engine.sending)
        server.start()
        servers.append(server)
        return Submission(engine, server, credential.id, domain.account_id)

    yield start
    for server in servers:
        server.stop()


def email(
    sender: str = "News <news@example.com>",
    to: str = "Jane <jane@example.org>",
    subject: str = "Hello",
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name] = value
    message.set_content("Hello, Jane.\n")
    return message


def queued_id(reply: bytes | str) -> UUID:
    text = reply.decode() if isinstance(reply, bytes) else reply
    found = QUEUED.search(text)
    assert found is not None, text
    return UUID(found.group(1))


def send_data(client: smtplib.SMTP, raw: bytes, recipient: str = "jane@example.org") -> Any:
    """MAIL, RCPT and DATA by hand (no SIZE declared, nothing rewritten); the DATA reply."""
    assert client.mail("news@example.com")[0] == 250
    assert client.rcpt(recipient)[0] == 250
    return client.data(raw)


# --- sending ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_multipart_message_is_accepted_and_delivered(
    submission: Callable[..., Submission], mechanism: str
) -> None:
    running = submission(roles=frozenset({Role.API, Role.DELIVERY, Role.RELAY}), workers=True)
    message = email(to="Jane <jane@example.org>", Cc="Copy <copy@example.org>")
    message["Reply-To"] = "Help <help@example.com>"
    message["X-Campaign"] = "spring"
    message.add_alternative("<p>Hello, Jane.</p>\n", subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    envelope = ["jane@example.org", "copy@example.org", "hidden@example.org"]

    with running.client() as client:
        client.user, client.password = USERNAME, PASSWORD
        assert client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))[0] == 235
        client.mail("news@example.com")
        for recipient in envelope:
            assert client.rcpt(recipient)[0] == 250
        code, reply = client.data(message.as_bytes(policy=SMTP))
    assert code == 250 and reply.startswith(b"2.0.0 Ok: queued as "), reply

    saved = running.engine.app.submission(queued_id(reply))
    assert saved.source == "smtp"
    assert saved.content["subject"] == "Hello"
    assert saved.content["html"] == "<p>Hello, Jane.</p>\n"
    assert saved.content["reply_to"] == [{"email": "help@example.com", "name": "Help"}]
    assert saved.content["headers"] == [["X-Campaign", "spring"]]
    assert [a["filename"] for a in saved.content["attachments"]] == ["a.pdf"]
    messages = [running.engine.app.message(i) for i in saved.message_ids]
    assert [(m.recipient, m.recipient_kind) for m in messages] == [
        ("jane@example.org", "to"),
        ("copy@example.org", "cc"),
        ("hidden@example.org", "bcc"),
    ]

    def delivered() -> bool:
        statuses = {running.engine.app.message(i).status for i in saved.message_ids}
        return statuses == {MessageStatus.DELIVERED}

    wait_for(delivered)


def test_swaks_sends_with_auth_login(submission: Callable[..., Submission]) -> None:
    running = submission()
    command = [
        "swaks", "--server", f"127.0.0.1:{running.port}", "--auth", "LOGIN",
        "--auth-user", USERNAME, "--auth-password", PASSWORD,
        "--from", "news@example.com", "--to", "jane@example.org",
        "--header", "Subject: from swaks", "--body", "Sent by swaks",
    ]  # fmt: skip
    sent = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    saved = running.engine.app.submission(queued_id(sent.stdout))
    assert saved.source == "smtp"
    assert saved.content["subject"] == "from swaks"
    assert saved.content["plain"].strip() == "Sent by swaks"

    refused = subprocess.run(
        [arg if arg != PASSWORD else "not the password" for arg in command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode != 0
    assert "535 5.7.8 Authentication credentials invalid" in refused.stdout


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_and_implicit_tls(
    submission: Callable[..., Submission], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    running = submission(
        SMTP_TLS_CERT=str(cert), SMTP_TLS_KEY=str(key), SMTP_SUBMISSION_TLS_PORTS="0"
    )
    trusted = ssl.create_default_context(cafile=str(cert))

    with running.client() as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # not offered in the clear
        plain = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()
        code, text = client.docmd("AUTH", f"PLAIN {plain}")
        assert (code, text) == (
            538,
            b"5.7.11 Encryption required for requested authentication mechanism",
        )
        assert client.mail("news@example.com")[0] == 530

        client.starttls(context=trusted)
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        client.login(USERNAME, PASSWORD)
        assert client.send_message(email()) == {}

    (tls_port,) = running.server.tls_ports
    with smtplib.SMTP_SSL("127.0.0.1", tls_port, context=trusted, timeout=10) as client:
        client.login(USERNAME, PASSWORD)
        client.mail("news@example.com")
        client.rcpt("jane@example.org")
        code, reply = client.data(email(subject="over implicit TLS").as_bytes(policy=SMTP))
    assert code == 250
    assert running.engine.app.submission(queued_id(reply)).content["subject"] == "over implicit TLS"


# --- refusals --------------------------------------------------------------------------------


def test_mail_before_auth_is_refused(submission: Callable[..., Submission]) -> None:
    running = submission()
    with running.client() as client:
        assert client.mail("news@example.com") == (530, b"5.7.0 Authentication required")
        assert client.rcpt("jane@example.org")[0] == 503


def test_wrong_passwords_are_refused_and_a_connection_gets_few_tries(
    submission: Callable[..., Submission],
) -> None:
    running = submission()
    with running.client() as client:
        # One mechanism per try (smtplib's login() would try each mechanism in turn).
        client.user, client.password = USERNAME, "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth("PLAIN", client.auth_plain)
        assert refused.value.args == (535, b"5.7.8 Authentication credentials invalid")
        client.user = "nobody@example.com"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth("LOGIN", client.auth_login)
        assert refused.value.smtp_code == 535
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth("PLAIN", client.auth_plain)
        assert refused.value.smtp_code == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_a_message_over_the_size_limit_is_refused(submission: Callable[..., Submission]) -> None:
    running = submission(SMTP_MAX_MESSAGE_BYTES="4000")
    big = email()
    big.set_content("\n".join(["x" * 70] * 100) + "\n")
    before = running.notifications()
    with running.logged_in() as client:
        assert "size" in client.esmtp_features
        # smtplib declares SIZE=, so MAIL FROM is refused before any data is sent ...
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            client.send_message(big)
        assert declared.value.smtp_code == 552
        assert b"5.3.4 MessageSizeExceededException" in declared.value.smtp_error
        # ... and data streamed without a declaration is refused at its end.
        code, text = send_data(client, big.as_bytes(policy=SMTP))
        assert code == 552 and b"5.3.4 MessageSizeExceededException" in text
        assert client.send_message(email()) == {}  # the session goes on
    assert running.notifications() > before


def test_a_sender_outside_the_credentials_domain_is_refused(
    submission: Callable[..., Submission],
) -> None:
    running = submission()
    with running.logged_in() as client:
        code, text = client.mail("news@example.net")
        assert code == 550 and text.startswith(b"5.7.1 "), text
        code, text = send_data(client, email(sender="News <news@example.net>").as_bytes())
        assert code == 550 and text.startswith(b"5.7.1 From parameter"), text
        # Subdomains are the domain's own.
        assert client.send_message(email(sender="news@mail.example.com")) == {}


def test_the_credentials_rate_limit(submission: Callable[..., Submission]) -> None:
    running = submission(SMTP_SUBMISSION_RATE_LIMIT="2/second")
    with running.logged_in() as client:
        assert client.send_message(email()) == {}
        assert client.send_message(email()) == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as limited:
            client.send_message(email())
    assert limited.value.smtp_code == 451
    assert re.match(rb"4\.7\.1 .*try again in \d+ seconds", limited.value.smtp_error)


def test_too_many_recipients(submission: Callable[..., Submission]) -> None:
    running = submission(MAX_RECIPIENTS="3")
    with running.logged_in() as client:
        client.mail("news@example.com")
        for n in range(3):
            assert client.rcpt(f"r{n}@example.org")[0] == 250
        code, text = client.rcpt("r3@example.org")
        assert code == 452 and text.startswith(b"4.5.3 "), text
        client.rset()
        client.mail("news@example.com")
        assert client.rcpt("jane@localhost")[0] == 553


def test_a_suppressed_recipient_refuses_the_message(submission: Callable[..., Submission]) -> None:
    running = submission()
    running.engine.sending.suppress(running.account_id, "jane@example.org", "bounced")
    with running.logged_in() as client:
        code, text = send_data(client, email().as_bytes())
    assert code == 550 and text.startswith(b"5.1.1 Email address is in the suppression list")


GARBAGE: dict[str, bytes] = {
    "binary": b"\r\n".join(bytes(range(256))[i : i + 64] for i in range(0, 256, 64)) * 8,
    "no headers at all": b"just some text\r\n",
    "NUL bytes": b"From: news@example.com\r\nTo: jane@example.org\r\n\r\nHi\x00there\r\n",
    "8-bit headers": "From: Jörg <news@example.com>\r\nSubject: Grüße\r\n\r\nHi\r\n".encode(),
    "malformed MIME": (
        b"From: news@example.com\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nbroken\r\n"
    ),
    "no body": b"From: news@example.com\r\nTo: jane@example.org\r\nSubject: empty\r\n\r\n",
    "enormous header section": (
        b"From: news@example.com\r\nX-Big: a\r\n" + b" folded line\r\n" * 25_000 + b"\r\nHi\r\n"
    ),
}


@pytest.mark.parametrize("kind", GARBAGE)
def test_garbage_gets_an_error_reply_and_nothing_is_saved(
    submission: Callable[..., Submission], kind: str
) -> None:
    running = submission()
    before = running.notifications()
    with running.logged_in() as client:
        code, text = send_data(client, GARBAGE[kind])
        assert code == 550 and text.startswith(b"5.6.0 "), text
        # A line over RFC 5321's 1,000 octets is refused by the protocol layer itself.
        code, text = send_data(
            client, b"From: news@example.com\r\nX-Long: " + b"a" * 5000 + b"\r\n"
        )
        assert code == 500, text
        assert client.noop()[0] == 250  # the session survives all of it
    assert running.notifications() == before


def test_a_deleted_credential_can_no_longer_authenticate(
    submission: Callable[..., Submission],
) -> None:
    running = submission()
    app = running.engine.app
    session = running.logged_in()
    credential = app.smtp_credential(USERNAME)
    assert credential is not None
    credential.delete(datetime.now(UTC))
    app.save(credential)

    with running.client() as client, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(USERNAME, PASSWORD)  # even though this password was verified moments ago
    assert refused.value.smtp_code == 535

    def refused_in_session() -> bool:
        code, _ = session.mail("news@example.com")
        session.rset()
        return code == 530

    wait_for(refused_in_session, timeout=10, interval=0.2)  # an open session notices too
    session.close()


def test_a_password_reset_takes_effect_at_once(submission: Callable[..., Submission]) -> None:
    running = submission()
    app = running.engine.app
    running.logged_in().quit()  # the old password is now in the verification cache
    credential = app.smtp_credential(USERNAME)
    assert credential is not None
    credential.reset_password(hash_password("new password"), datetime.now(UTC))
    app.save(credential)
    with running.client() as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(USERNAME, PASSWORD)
        client.login(USERNAME, "new password")


def smtp_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("smtp-")]


def test_stopping_leaves_no_thread_or_port(submission: Callable[..., Submission]) -> None:
    running = submission()
    port = running.port
    idle = running.logged_in()  # a connection still open when the server stops
    assert smtp_threads()
    running.server.stop()
    assert smtp_threads() == []
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=2)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        idle.noop()
    running.server.start()  # and it can start again
    with running.logged_in() as client:
        assert client.noop()[0] == 250


def test_a_port_in_use_fails_the_start_cleanly(
    submission: Callable[..., Submission], make_engine: Callable[..., Engine]
) -> None:
    running = submission()
    threads = smtp_threads()
    taken = f"0,{running.port}"  # a free port first: it must be released again
    engine = make_engine(start=False, SMTP_SUBMISSION_PORTS=taken)
    other = SubmissionServer(engine.app, engine.settings, engine.sending)
    with pytest.raises(OSError):
        other.start()
    assert smtp_threads() == threads
    with running.logged_in() as client:  # the first server is unharmed
        assert client.noop()[0] == 250


def test_the_engine_starts_and_stops_the_server_in_its_smtp_role(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API, Role.SMTP}), SMTP_SUBMISSION_PORTS="0,0")
    server = engine.submission_server
    assert server is not None and len(server.ports) == 2
    ports = list(server.ports)
    for port in ports:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.ehlo()[0] == 250
    engine.close()
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", ports[0], timeout=2)
