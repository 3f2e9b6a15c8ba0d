"""Checking a sender domain's DNS records against what DNS holds now."""

from __future__ import annotations

from adapters.dns import DnsLookup
from domain.dns_records import DnsRecord, record_is_published


def check_records(lookup: DnsLookup, records: list[DnsRecord]) -> list[tuple[DnsRecord, bool]]:
    """Each record with whether it is published, in the order given.

    Records at the same host and type (the SPF record lives at the domain's apex
    with whatever else the owner keeps there) share one query, so a check costs
    one round trip per distinct name, and every record at a name is judged on
    the same answer.
    """
    answers: dict[tuple[str, str], list[str]] = {}
    results: list[tuple[DnsRecord, bool]] = []
    for record in records:
        key = (record.host.lower(), record.type.upper())
        if key not in answers:
            answers[key] = lookup.values(*key)
        results.append((record, record_is_published(record, answers[key])))
    return results
