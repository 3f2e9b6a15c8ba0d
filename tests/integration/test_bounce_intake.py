"""The bounce intake over real SMTP: smtplib and swaks as clients, the real bounce corpus
as messages, and (marked slow) a live private Postfix bouncing mail to it."""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from adapters.dsn import DeliveryReport, FeedbackReport
from domain.bounces import BounceClass
from domain.verp import verp_address
from engine.feedback.bounce_intake import BounceIntake
from tests.adapters.test_dsn import EXPECTED
from tests.fixtures.bounces import make_postfix_samples as samples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
# The committed Postfix samples were sent to return paths signed with this key.
KEY = samples.VERP_KEY
HOST = samples.BOUNCE_HOST


@dataclass
class Recorder:
    bounces: list[tuple[UUID, BounceClass, DeliveryReport | None]] = field(default_factory=list)
    complaints: list[tuple[UUID, FeedbackReport]] = field(default_factory=list)
    failing: bool = False
    threads: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_bounce(
        self, message_id: UUID, bounce: BounceClass, report: DeliveryReport | None
    ) -> None:
        if self.failing:
            raise RuntimeError("the event store is down")
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.bounces.append((message_id, bounce, report))

    def on_complaint(self, message_id: UUID, report: FeedbackReport) -> None:
        with self.lock:
            self.complaints.append((message_id, report))


@dataclass
class Intake:
    server: BounceIntake
    recorder: Recorder

    @property
    def port(self) -> int:
        return self.server.ports[0]

    def client(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        client.ehlo("mx.example.net")
        return client

    def send(self, rcpt: str | list[str], data: bytes, sender: str = "") -> tuple[int, bytes]:
        """One transaction; the reply to DATA (or to the first refused RCPT)."""
        with self.client() as client:
            return transaction(client, rcpt, data, sender)


def transaction(
    client: smtplib.SMTP, rcpt: str | list[str], data: bytes, sender: str = ""
) -> tuple[int, bytes]:
    client.rset()
    code, reply = client.mail(sender)
    assert code == 250, reply
    accepted = 0
    for address in [rcpt] if isinstance(rcpt, str) else rcpt:
        code, reply = client.rcpt(address)
        if code == 250:
            accepted += 1
        elif isinstance(rcpt, str):
            return code, reply
    if not accepted:
        return code, reply
    return client.data(wire(data))


def wire(data: bytes) -> bytes:
    """Lines as SMTP sends them, ending in CRLF (the samples are stored with LF; smtplib
    sends bytes as they are)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


@pytest.fixture
def intake() -> Iterator[Intake]:
    recorder = Recorder()
    server = BounceIntake(
        "127.0.0.1",
        [0],
        KEY,
        recorder.on_bounce,
        recorder.on_complaint,
        max_message_bytes=300_000,
        hostname="bounces.test",
    )
    server.start()
    try:
        yield Intake(server, recorder)
    finally:
        server.stop()


def _sample(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _return_path(message_id: UUID | None = None) -> str:
    return verp_address(message_id or uuid4(), HOST, KEY)


# --- delivery reports ---------------------------------------------------------------------


@pytest.mark.parametrize("case", samples.CASES, ids=lambda c: c.name)
def test_a_postfix_dsn_becomes_a_bounce_of_the_message_its_return_path_names(
    intake: Intake, case: samples.Case
) -> None:
    raw = _sample(f"postfix/{case.name}.eml")
    assert case.return_path.encode() in raw  # where Postfix sent it
    code, reply = intake.send(case.return_path, raw)
    assert (code, reply) == (250, b"2.0.0 Ok: report recorded")
    expected = EXPECTED[f"postfix/{case.name}.eml"]
    assert expected is not None
    ((message_id, bounce, report),) = intake.recorder.bounces
    assert message_id == case.message_id
    assert (bounce.kind, bounce.enhanced_status) == expected[0][2:]
    assert isinstance(report, DeliveryReport)
    assert report.recipients[0].recipient == case.recipient
    # Off the server's loop: callbacks may block.
    assert intake.recorder.threads and "bounce-intake" not in intake.recorder.threads


def test_every_corpus_sample_through_one_connection(intake: Intake) -> None:
    """Each sample, to a return path of its own: one on_bounce per failed or delayed
    recipient (as the corpus table says), for that return path's message."""
    sent: dict[UUID, str] = {}
    with intake.client() as client:
        for name, expected in sorted(EXPECTED.items()):
            message_id = uuid4()
            sent[message_id] = name
            code, reply = transaction(client, _return_path(message_id), _sample(name))
            failures = [e for e in expected or [] if e[1] in ("failed", "delayed")]
            assert code == 250, (name, reply)
            assert reply.startswith(b"2.0.0" if failures else b"2.6.0"), (name, reply)
    got: dict[str, list[tuple[str, str]]] = {}
    for message_id, bounce, _ in intake.recorder.bounces:
        got.setdefault(sent[message_id], []).append((bounce.kind, bounce.enhanced_status))
    want = {
        name: [(kind, status) for _, action, kind, status in expected]
        for name, expected in EXPECTED.items()
        if expected and any(e[1] in ("failed", "delayed") for e in expected)
    }
    assert got == want


def test_one_report_to_several_return_paths_counts_for_each(intake: Intake) -> None:
    first, second = uuid4(), uuid4()
    code, _ = intake.send(
        [_return_path(first), _return_path(second)], _sample("postfix/local-unknown-user.eml")
    )
    assert code == 250
    assert sorted(m for m, _, _ in intake.recorder.bounces) == sorted([first, second])


def test_swaks_delivers_a_dsn(intake: Intake, tmp_path: Path) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.skip("swaks is not installed (scripts/install-test-deps.sh installs it)")
    message_id = uuid4()
    sample = tmp_path / "dsn.eml"
    sample.write_bytes(_sample("postfix/remote-blocked.eml"))
    result = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(intake.port), "--from", "",
         "--to", _return_path(message_id), "--data", str(sample), "--helo", "mx.example.net",
         "--timeout", "10"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: report recorded" in result.stdout
    ((got, bounce, _),) = intake.recorder.bounces
    assert (got, bounce.kind, bounce.enhanced_status) == (message_id, "block", "5.7.1")


# --- complaints ---------------------------------------------------------------------------


def test_an_arf_report_becomes_a_complaint(intake: Intake) -> None:
    message_id = uuid4()
    code, reply = intake.send(
        _return_path(message_id), _sample("rfc5965/b2-complete.eml"), sender="fbl@example.com"
    )
    assert (code, reply) == (250, b"2.0.0 Ok: report recorded")
    ((got, report),) = intake.recorder.complaints
    assert got == message_id
    assert (report.feedback_type, report.original_recipient) == ("abuse", "user@example.com")
    assert not intake.recorder.bounces


def test_a_feedback_report_that_is_no_complaint_is_dropped(intake: Intake) -> None:
    raw = _sample("rfc5965/b2-complete.eml").replace(
        b"Feedback-Type: abuse", b"Feedback-Type: auth-failure"
    )
    assert intake.send(_return_path(), raw) == (
        250,
        b"2.6.0 Ok: no failure or complaint in this report, discarded",
    )
    assert not intake.recorder.complaints


# --- what is refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rcpt",
    [
        verp_address(UUID(int=7), HOST, b"someone else's key"),  # forged
        "postmaster@" + HOST,
        "user@gmail.com",  # relaying: never
        "b-" + "a" * 36 + "@" + HOST,
        "<>",
    ],
)
def test_anything_but_our_return_paths_is_no_such_user(intake: Intake, rcpt: str) -> None:
    with intake.client() as client:
        client.mail("")
        assert client.rcpt(rcpt) == (550, b"5.1.1 no such user here")


def test_a_forged_recipient_beside_a_real_one_gets_nothing(intake: Intake) -> None:
    real = uuid4()
    forged = verp_address(uuid4(), HOST, b"forged")
    code, _ = intake.send([forged, _return_path(real)], _sample("postfix/remote-blocked.eml"))
    assert code == 250
    assert [m for m, _, _ in intake.recorder.bounces] == [real]


def test_no_auth_is_offered_or_accepted(intake: Intake) -> None:
    with intake.client() as client:
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN AGFkbWluAHNlY3JldA==")
        assert code >= 500


def test_too_many_recipients(intake: Intake) -> None:
    with intake.client() as client:
        client.mail("")
        codes = [client.rcpt(_return_path())[0] for _ in range(51)]
    assert codes[:50] == [250] * 50 and codes[50] == 452


# --- junk ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        _sample("flufl/qmail_08.txt"),  # an auto-reply
        _sample("flufl/groupwise_03.txt"),  # a person's answer
        b"Subject: hello\r\n\r\njust text\r\n",
        b"\x00" * 100 + b"\r\n" + (b"\x00" * 998 + b"\r\n") * 5,
        b"Subject: nul\r\n\r\n" + b"a\x00b\r\n" * 100,
        (bytes(range(256)) * 3 + b"\r\n") * 20,
    ],
    ids=["auto-reply", "reply", "text", "nul-bytes", "nul-in-body", "binary"],
)
def test_what_is_no_report_is_accepted_and_dropped(intake: Intake, raw: bytes) -> None:
    assert intake.send(_return_path(), raw) == (
        250,
        b"2.6.0 Ok: not a delivery or feedback report, discarded",
    )
    assert not intake.recorder.bounces and not intake.recorder.complaints


def test_a_line_over_the_smtp_limit_is_refused(intake: Intake) -> None:
    code, reply = intake.send(_return_path(), b"Subject: x\r\n\r\n" + b"x" * 5000 + b"\r\n")
    assert code == 500 and b"Line too long" in reply
    assert intake.send(_return_path(), _sample("postfix/local-unknown-user.eml"))[0] == 250


def test_a_message_over_the_limit_is_refused(intake: Intake) -> None:
    huge = _sample("postfix/local-unknown-user.eml") + b"x" * 78 + b"\r\n"
    huge += (b"y" * 998 + b"\r\n") * 400
    code, reply = intake.send(_return_path(), huge)
    assert (code, reply) == (552, b"5.3.4 Message too big for this system")
    with intake.client() as client:  # declared up front with SIZE=
        client.mail("", ["SIZE=10000000"])
    assert not intake.recorder.bounces
    # The connection is still usable after a refusal.
    assert intake.send(_return_path(), _sample("postfix/local-unknown-user.eml"))[0] == 250


def test_a_failing_callback_makes_the_sender_retry(intake: Intake) -> None:
    rcpt, raw = _return_path(), _sample("postfix/local-unknown-user.eml")
    intake.recorder.failing = True
    assert intake.send(rcpt, raw) == (451, b"4.3.0 Temporary failure, try again later")
    intake.recorder.failing = False
    assert intake.send(rcpt, raw)[0] == 250
    assert len(intake.recorder.bounces) == 1


def test_several_ports_and_a_clean_stop() -> None:
    recorder = Recorder()
    server = BounceIntake("127.0.0.1", [0, 0], KEY, recorder.on_bounce, recorder.on_complaint)
    server.start()
    ports = list(server.ports)
    assert len(ports) == 2 and 0 not in ports and ports[0] != ports[1]
    for port in ports:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            assert client.noop()[0] == 250
    server.stop()
    server.stop()  # twice is fine
    for port in ports:
        with pytest.raises(OSError):
            smtplib.SMTP("127.0.0.1", port, timeout=2)


# --- a live Postfix -----------------------------------------------------------------------


@pytest.mark.slow
def test_live_postfix_round_trip(intake: Intake) -> None:
    """Mail sent through a private Postfix with our return paths: the DSNs it sends back
    reach the intake and become bounces of the right messages, classified as the
    committed samples are."""
    why_not = samples.postfix_available()
    if why_not:
        pytest.skip(why_not)
    remote = samples.remote_mx()
    remote.start()
    try:
        with samples.PrivatePostfix(intake.port, remote.port) as postfix:
            for case in samples.CASES:
                postfix.send(case)
            deadline = time.monotonic() + 60
            while len(intake.recorder.bounces) < len(samples.CASES):
                if time.monotonic() > deadline:
                    pytest.fail(f"DSNs missing after 60 s:\n{postfix.log_tail()}")
                time.sleep(0.1)
    finally:
        remote.stop()
    got = {m: (b.kind, b.enhanced_status) for m, b, _ in intake.recorder.bounces}
    want = {}
    for case in samples.CASES:
        expected = EXPECTED[f"postfix/{case.name}.eml"]
        assert expected is not None
        want[case.message_id] = expected[0][2:]
    assert got == want
