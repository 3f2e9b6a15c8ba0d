"""``sendstream doctor`` against a real DNS server (dnsmasq): forward-confirmed reverse
DNS of each sending address and the SPF of each sender domain, the clock and the disk."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from engine.runtime.composition import Engine, Role
from engine.runtime.doctor import FIX, NOT_CHECKED, OK, diagnose
from tests.services import embedded_environment, start_dnsmasq

ROOT = Path(__file__).resolve().parents[2]
RECORDS = [
    ("mail.shop.example", "A", "127.0.0.2"),  # with its PTR (dnsmasq's host-record)
    ("shop.example", "TXT", "v=spf1 ip4:127.0.0.2 -all"),
    ("other.example", "TXT", "v=spf1 ip4:192.0.2.99 -all"),
]


def test_doctor_names_what_to_fix(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    dns = start_dnsmasq(RECORDS, tmp_path / "dns", zones=["shop.example", "other.example",
                                                          "127.in-addr.arpa"])  # fmt: skip
    try:
        engine = make_engine(roles=frozenset({Role.API}), DNS_RESOLVER=dns.resolver,
                             SENDING_ADDRESSES="127.0.0.2=mail.shop.example,"
                                               "127.0.0.3=mail.other.example")  # fmt: skip
        engine.app.bootstrap("shop.example")
        engine.app.bootstrap("other.example")
        findings = diagnose(engine.settings, engine.app)
        by_check = {f.check: f for f in findings}
        assert by_check["outbound port 25"].state == NOT_CHECKED
        assert by_check["reverse DNS of 127.0.0.2"].state == OK
        reverse = by_check["reverse DNS of 127.0.0.3"]
        assert (reverse.state, reverse.detail.startswith("no PTR record")) == (FIX, True)
        spf = [f for f in findings if f.check.startswith("SPF")]
        assert [(f.check, f.state, f.detail.split(":")[0]) for f in spf] == [
            ("SPF of other.example", FIX, "fail for 127.0.0.2"),
            ("SPF of other.example", FIX, "fail for 127.0.0.3"),
            ("SPF of shop.example", OK, "permits 127.0.0.2"),
            ("SPF of shop.example", FIX, "fail for 127.0.0.3"),
        ]
        assert any(check.startswith("disk under") for check in by_check)
    finally:
        dns.stop()


def test_the_command_exits_non_zero_when_there_is_something_to_fix(tmp_path: Path) -> None:
    env = embedded_environment(tmp_path / "var", SENDING_ADDRESSES="127.0.0.4=mail.x.example",
                               DNS_RESOLVER="127.0.0.1:9")  # nothing answers there  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "cli", "doctor"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "reverse DNS of 127.0.0.4" in done.stdout
    assert "outbound port 25" in done.stdout and "not checked" in done.stdout
