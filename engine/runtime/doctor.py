"""``sendstream doctor``: what direct delivery needs of this machine, checked where it can
be, and what to fix.

* Outbound port 25 is not tried: a connection to a stranger's mail server is not a test
  to make by surprise (and many networks, CI's among them, refuse it). It says how to try.
* Each sending address (``SENDING_ADDRESSES``) has a PTR record naming its EHLO name, and
  that name an A (or AAAA) record back to the address (forward-confirmed reverse DNS).
* Each sender domain's SPF record permits every sending address.
* The clock is synchronised (the kernel's own word, adjtimex): DKIM signatures, DMARC
  reports and the schedule read it.
* The data folder's disk has room.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.utils import get_topic

from adapters.dns import DnsLookup, reverse_name
from adapters.mail_auth import spf_result
from domain.account import SenderDomain
from engine.application import Sendstream
from engine.settings import Settings

OK, FIX, NOT_CHECKED = "ok", "fix", "not checked"
MIN_FREE_BYTES = 1 << 30
MIN_FREE_SHARE = 0.05
_TIME_ERROR = 5  # adjtimex: the clock is not synchronised


@dataclass(frozen=True)
class Finding:
    check: str
    state: str  # OK, FIX or NOT_CHECKED
    detail: str


def diagnose(settings: Settings, app: Sendstream) -> list[Finding]:
    findings = [
        Finding(
            "outbound port 25",
            NOT_CHECKED,
            "not tried from here; from this machine: nc -vz gmail-smtp-in.l.google.com 25 "
            "(a provider that blocks port 25 must lift it, or mail leaves via SMTP_RELAY_URL)",
        )
    ]
    lookup = DnsLookup(settings.dns_resolver)
    sources = settings.sources()
    if not sources:
        findings.append(Finding(
            "sending addresses", NOT_CHECKED,
            "SENDING_ADDRESSES is empty: mail leaves through SMTP_RELAY_URL (or the sandbox), "
            "whose addresses are the relay's to look after",
        ))  # fmt: skip
    for source in sources:
        findings.append(_reverse_dns(lookup, source.address, source.helo_name))
    for domain in _sender_domains(app):
        for source in sources:
            result = spf_result(source.address, domain, resolver=settings.dns_resolver)
            findings.append(
                Finding(f"SPF of {domain}", OK, f"permits {source.address}")
                if result == "pass"
                else Finding(
                    f"SPF of {domain}",
                    FIX,
                    f"{result} for {source.address}: add ip4:{source.address} (or include: "
                    "a record that names it) to the v=spf1 TXT record of the domain",
                )
            )
    findings.append(_clock())
    findings.append(_disk(Path(settings.data_dir)))
    return findings


def _reverse_dns(lookup: DnsLookup, address: str, helo_name: str) -> Finding:
    check = f"reverse DNS of {address}"
    names = lookup.values(reverse_name(address), "PTR")
    if not names:
        return Finding(check, FIX, f"no PTR record: ask whoever holds the address for "
                                   f"{address} → {helo_name}")  # fmt: skip
    if helo_name not in names:
        return Finding(check, FIX, f"its PTR names {', '.join(names)}, not its EHLO name "
                                   f"{helo_name}: make them one")  # fmt: skip
    kind = "AAAA" if ":" in address else "A"
    if address not in lookup.values(helo_name, kind):
        return Finding(check, FIX, f"{helo_name} has no {kind} record of {address}: add it "
                                   "(receivers check the name leads back)")  # fmt: skip
    return Finding(check, OK, f"{address} ↔ {helo_name}")


def _sender_domains(app: Sendstream) -> list[str]:
    added = app.recorder.select_notifications(
        start=1,
        limit=1_000_000,
        topics=[get_topic(SenderDomain.Added)],  # type: ignore[attr-defined]
    )
    names = []
    for notification in added:
        try:
            domain = app.domain(notification.originator_id)  # type: ignore[arg-type]
        except AggregateNotFoundError:
            continue
        if not domain.is_deleted:
            names.append(domain.name)
    return sorted(set(names))


def _clock() -> Finding:
    library = ctypes.util.find_library("c")
    if library is None:
        return Finding("clock", NOT_CHECKED, "no C library to ask the kernel")
    state = ctypes.CDLL(library, use_errno=True).adjtimex(ctypes.create_string_buffer(512))
    if state == _TIME_ERROR:
        return Finding("clock", FIX, "the kernel says it is not synchronised: run an NTP "
                                     "client (chrony, systemd-timesyncd)")  # fmt: skip
    if state < 0:
        return Finding("clock", NOT_CHECKED, "the kernel did not answer adjtimex")
    return Finding("clock", OK, "synchronised, as the kernel says")


def _disk(folder: Path) -> Finding:
    folder = folder if folder.exists() else folder.parent
    usage = shutil.disk_usage(folder)
    detail = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.1f} GiB"
    if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_SHARE:
        return Finding(f"disk under {folder}", FIX, f"{detail}: make room (the event store "
                                                     "refuses mail when it is full)")  # fmt: skip
    return Finding(f"disk under {folder}", OK, detail)
