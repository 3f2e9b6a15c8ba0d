"""MTA-STS (RFC 8461): a recipient domain's published demand that mail reach it over TLS, to
the MX hosts it names, with certificates valid for them. The record and policy formats
and the MX host matching, as data; looking them up and fetching them is an adapter's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: about a year
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: a policy larger than this is not one
POLICY_STATUS = "4.7.5"  # RFC 3463: a security requirement could not be met; try later

_RECORD_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_MAX_AGE = re.compile(r"[0-9]{1,10}")  # ASCII digits only: "²".isdigit() is true
_MODES = ("enforce", "testing", "none")


class PolicyError(ValueError):
    """The text is not a valid MTA-STS policy: the domain is treated as having none."""


@dataclass(frozen=True)
class MtaStsPolicy:
    mode: str  # "enforce", "testing" or "none"
    mx: tuple[str, ...]  # host patterns, lowercase: "mail.example.com" or "*.example.net"
    max_age: int  # seconds the policy may be kept

    def allows(self, host: str) -> bool:
        """RFC 8461 4.1: the host matches a pattern exactly, or by a wildcard standing for
        exactly one leftmost label (``*.example.net`` matches ``mx1.example.net`` only)."""
        name = host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, dot, rest = name.partition(".")
                if dot and label and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def record_id(texts: list[str]) -> str | None:
    """The ``id`` of the one ``v=STSv1`` record among a ``_mta-sts`` name's TXT records, or
    None: no record, several, or a malformed one all mean "no policy" (RFC 8461 3.1)."""
    records = [text for text in texts if text.startswith("v=STSv1;") or text == "v=STSv1"]
    if len(records) != 1:
        return None
    fields: dict[str, str] = {}
    for part in records[0].split(";"):
        key, equals, value = part.strip().partition("=")
        if not part.strip():
            continue
        if not equals:
            return None
        fields.setdefault(key.strip(), value.strip())
    found = fields.get("id", "")
    return found if _RECORD_ID.fullmatch(found) else None


def parse_policy(text: str) -> MtaStsPolicy:
    """A policy file (RFC 8461 3.2): ``key: value`` lines; unknown keys are ignored."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyError("the policy is larger than 64 KiB")
    values: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"not a 'key: value' line: {line[:80]!r}")
        values.setdefault(key.strip(), []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        raise PolicyError("the policy's version is not STSv1")
    modes = values.get("mode", [])
    if len(modes) != 1 or modes[0] not in _MODES:
        raise PolicyError(f"mode must be one of {', '.join(_MODES)}")
    ages = values.get("max_age", [])
    if len(ages) != 1 or not _MAX_AGE.fullmatch(ages[0]) or int(ages[0]) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age must be a whole number of seconds up to {MAX_AGE_LIMIT}")
    patterns = tuple(value.lower().rstrip(".") for value in values.get("mx", []) if value)
    if modes[0] != "none" and not patterns:
        raise PolicyError(f"a policy in {modes[0]} mode names at least one mx")
    return MtaStsPolicy(mode=modes[0], mx=patterns, max_age=int(ages[0]))
