"""Recipient domains and their mail servers on this machine, for direct delivery.

dnsmasq serves the ``.example`` zone (RFC 2606; ``.test`` addresses are refused by the API as
special-use): MX, A and null MX records for domains whose mail servers listen on port 25 of
their own loopback addresses (127.0.0.2 …), Postfix's smtp-sink where a server should take
mail and ``HostileSmtpServer`` where it should misbehave. Names outside ``.example`` are
refused by dnsmasq, which a resolver reports as a failure to answer.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.hostile_smtp import HostileSmtpServer
from tests.services import DnsEntry, DnsmasqService, RunningService, start_dnsmasq, start_smtp_sink

SINKS = {"127.0.0.2": "mx1.alpha.example", "127.0.0.3": "mx2.alpha.example"}
HOSTILE = {
    "127.0.0.10": "greet-421",
    "127.0.0.11": "silent",
    "127.0.0.12": "endless",
    "127.0.0.13": "huge-line",
    "127.0.0.14": "stall-after-data",
    "127.0.0.15": "drop-in-data",
    "127.0.0.16": "bad-tls",
    "127.0.0.18": "accept",
}
TLS_ADDRESS = "127.0.0.17"  # aiosmtpd with STARTTLS and a self-signed certificate
DEAD_ADDRESS = "127.0.0.4"  # nothing listens there

RECORDS: list[DnsEntry] = [
    ("alpha.example", "MX", "10 mx1.alpha.example"),
    ("alpha.example", "MX", "20 mx2.alpha.example"),
    ("mx1.alpha.example", "A", "127.0.0.2"),
    ("mx2.alpha.example", "A", "127.0.0.3"),
    # googlemail.com to gmail.com: another domain on the same servers
    ("beta.example", "MX", "10 mx1.alpha.example"),
    ("fallback.example", "MX", "10 dead.fallback.example"),
    ("fallback.example", "MX", "20 mx2.alpha.example"),
    ("dead.fallback.example", "A", DEAD_ADDRESS),
    ("null.example", "MX", "0 ."),
    ("implicit.example", "A", "127.0.0.2"),
    ("ghost.example", "MX", "10 nowhere.ghost.example"),
    ("greet421.example", "MX", "10 mx.greet421.example"),
    ("greet421.example", "MX", "20 mx2.alpha.example"),
    ("mx.greet421.example", "A", "127.0.0.10"),
    ("tls.example", "MX", "10 mx.tls.example"),
    ("mx.tls.example", "A", TLS_ADDRESS),
    # the crash test's receiver listens on 127.0.0.1, on a port of its own
    ("crash.example", "MX", "10 mx.crash.example"),
    ("mx.crash.example", "A", "127.0.0.1"),
    ("pool1.example", "MX", "10 mx.pool.example"),
    ("pool2.example", "MX", "10 mx.pool.example"),
    ("mx.pool.example", "A", "127.0.0.18"),
    *(
        entry
        for address, mode in HOSTILE.items()
        if mode not in ("greet-421", "accept")
        for entry in (
            (f"{mode}.example", "MX", f"10 mx.{mode}.example"),
            (f"mx.{mode}.example", "A", address),
        )
    ),
]


@dataclass
class FakeMx:
    dns: DnsmasqService
    sinks: dict[str, RunningService]  # by MX host name
    hostile: dict[str, HostileSmtpServer]  # by mode
    tls_server: object
    certificate: tuple[Path, Path]

    @property
    def resolver(self) -> str:
        return self.dns.resolver

    def stop(self) -> None:
        for server in self.hostile.values():
            server.stop()
        stop_tls = getattr(self.tls_server, "stop", None)
        if stop_tls is not None:
            stop_tls()
        for sink in self.sinks.values():
            sink.stop()
        self.dns.stop()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "mx-cert.pem", folder / "mx-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=mx.tls.example", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def start_fake_mx(workdir: Path) -> FakeMx:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    dns = start_dnsmasq(RECORDS, workdir / "dns", zones=["example"])
    sinks: dict[str, RunningService] = {}
    hostile: dict[str, HostileSmtpServer] = {}
    tls_server: Controller | None = None
    try:
        for address, name in SINKS.items():
            sinks[name] = start_smtp_sink(workdir / name, host=address, port=25)
        for address, mode in HOSTILE.items():
            hostile[mode] = HostileSmtpServer(address, 25, mode).start()
        certificate = make_certificate(workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        tls_server = Controller(
            Sink(), hostname=TLS_ADDRESS, port=25, tls_context=context, require_starttls=False
        )
        tls_server.start()
    except BaseException:
        FakeMx(dns, sinks, hostile, tls_server, (Path(), Path())).stop()
        raise
    return FakeMx(dns, sinks, hostile, tls_server, certificate)
