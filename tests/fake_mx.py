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

from tests.hostile_smtp import Concurrency, HostileSmtpServer
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
    "127.0.0.19": "accept-b",
    "127.0.0.22": "rate-limit",
    "127.0.0.23": "blocked",
}
TLS_ADDRESS = "127.0.0.17"  # aiosmtpd with STARTTLS and a self-signed certificate
DEAD_ADDRESS = "127.0.0.4"  # nothing listens there
POLICY_ADDRESS = "127.0.0.20"  # HTTPS: the MTA-STS policies, under the test CA
STS_MX_ADDRESS = "127.0.0.21"  # aiosmtpd with STARTTLS and a certificate of the test CA

# MTA-STS domains: each publishes the policy here, at https://mta-sts.<domain>/.
POLICIES = {
    "sts.example": "version: STSv1\nmode: enforce\nmx: mx.sts.example\nmax_age: 86400\n",
    "sts2.example": "version: STSv1\r\nmode: enforce\r\nmx: *.sts.example\r\nmax_age: 600\r\n",
    "stsbadcert.example": "version: STSv1\nmode: enforce\nmx: mx.tls.example\nmax_age: 86400\n",
    "stsoutside.example": "version: STSv1\nmode: enforce\nmx: *.sts.example\nmax_age: 86400\n",
    "ststesting.example": "version: STSv1\nmode: testing\nmx: mx.sts.example\nmax_age: 86400\n",
    "stswrongname.example": "version: STSv1\nmode: enforce\nmx: *.sts.example\nmax_age: 600\n",
}
STS_MX = {
    "sts.example": "mx.sts.example",
    "sts2.example": "mx.sts.example",
    "stsbadcert.example": "mx.tls.example",
    "stsoutside.example": "mx1.alpha.example",
    "ststesting.example": "mx1.alpha.example",
    "stsnopolicy.example": "mx1.alpha.example",  # a record, but no policy host
    # the test CA's certificate for mx.sts.example, at a host of another name
    "stswrongname.example": "other.sts.example",
}

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
    ("mx.sts.example", "A", STS_MX_ADDRESS),
    ("other.sts.example", "A", STS_MX_ADDRESS),
    *((f"{domain}", "MX", f"10 {mx}") for domain, mx in STS_MX.items()),
    *((f"_mta-sts.{domain}", "TXT", "v=STSv1; id=20261203a;") for domain in STS_MX),
    *((f"mta-sts.{domain}", "A", POLICY_ADDRESS) for domain in POLICIES),
    ("pool3.example", "MX", "10 mx.pool.example"),
    ("pool3.example", "MX", "10 mxb.pool.example"),
    ("mxb.pool.example", "A", "127.0.0.19"),
    ("pool1.example", "MX", "10 mx.pool.example"),
    ("pool2.example", "MX", "10 mx.pool.example"),
    ("mx.pool.example", "A", "127.0.0.18"),
    *(
        entry
        for address, mode in HOSTILE.items()
        if mode not in ("greet-421", "accept", "accept-b")
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
    ca_file: Path  # the test CA that the policy host's and mx.sts.example's certificates chain to
    others: list[object]

    @property
    def resolver(self) -> str:
        return self.dns.resolver

    def stop(self) -> None:
        for server in self.hostile.values():
            server.stop()
        for server in [self.tls_server, *self.others]:
            stop = getattr(server, "stop", None) or getattr(server, "shutdown", None)
            if stop is not None:
                stop()
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


def make_ca(folder: Path, names: dict[str, list[str]]) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A throwaway CA, and for each key of ``names`` a certificate for those DNS names."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sendstream test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    issued: dict[str, tuple[Path, Path]] = {}
    for label, dns_names in names.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        cert_file, key_file = folder / f"{label}.pem", folder / f"{label}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(pem_key(key))
        issued[label] = (cert_file, key_file)
    return ca_file, issued


def start_policy_server(cert: tuple[Path, Path]) -> object:
    """HTTPS on POLICY_ADDRESS:443: each domain's policy, by the Host it is asked for."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Policies(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0].removeprefix("mta-sts.")
            policy = POLICIES.get(host)
            if self.path != "/.well-known/mta-sts.txt" or policy is None:
                self.send_error(404)
                return
            body = policy.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    server = ThreadingHTTPServer((POLICY_ADDRESS, 443), Policies)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="mta-sts-policies", daemon=True).start()
    return server


def start_fake_mx(workdir: Path) -> FakeMx:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    dns = start_dnsmasq(RECORDS, workdir / "dns", zones=["example"])
    sinks: dict[str, RunningService] = {}
    hostile: dict[str, HostileSmtpServer] = {}
    tls_server: Controller | None = None
    others: list[object] = []
    ca_file, issued = make_ca(
        workdir,
        {
            "policies": [f"mta-sts.{domain}" for domain in POLICIES],
            "mx-sts": ["mx.sts.example"],
        },
    )
    try:
        for address, name in SINKS.items():
            sinks[name] = start_smtp_sink(workdir / name, host=address, port=25)
        pool = Concurrency()  # both "accept" servers: the MX hosts of one provider
        for address, mode in HOSTILE.items():
            shared = pool if mode.startswith("accept") else Concurrency()
            hostile[mode] = HostileSmtpServer(address, 25, mode, concurrency=shared).start()
        certificate = make_certificate(workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        tls_server = Controller(
            Sink(), hostname=TLS_ADDRESS, port=25, tls_context=context, require_starttls=False
        )
        tls_server.start()
        others.append(start_policy_server(issued["policies"]))
        sts_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        sts_context.load_cert_chain(*issued["mx-sts"])
        sts_mx = Controller(
            Sink(), hostname=STS_MX_ADDRESS, port=25, tls_context=sts_context,
            require_starttls=False,
        )  # fmt: skip
        sts_mx.start()
        others.append(sts_mx)
    except BaseException:
        FakeMx(dns, sinks, hostile, tls_server, (Path(), Path()), ca_file, others).stop()
        raise
    return FakeMx(dns, sinks, hostile, tls_server, certificate, ca_file, others)
