"""Traffic shaping: how hard direct delivery may push each destination provider.

Receivers judge a sender by how it connects: too many sessions at once, too many messages
on one session, or too many a second, and they answer 421 or block. The rules come from a
TOML file that operators edit (``engine/delivery/shaping.toml`` ships the defaults): a
``[default]`` table for any mail server, and ``[provider.NAME]`` tables whose ``mx``
patterns claim MX hosts by name. Reading the text here, with errors that name the line,
lets a bad file stop start-up rather than shape nothing.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from domain.warmup import DEFAULT_WARMUP, WarmUpSchedule, WarmUpStep

_LIMITS = {
    "max_connections": "sessions open at once to the provider (0: no limit)",
    "messages_per_connection": "messages one session carries before it is closed",
    "messages_per_second": "messages a second to the provider (0: no limit)",
    "messages_per_hour": "messages an hour to the provider (0: no limit)",
    "backoff_seconds": "the first pause after a 'slow down' reply; it doubles while they go on",
    "max_backoff_seconds": "the longest pause after 'slow down' replies",
    "suspend_seconds": "how long a block reply stops all mail to the provider",
}
_DEFAULTS = {
    "max_connections": 10,
    "messages_per_connection": 100,
    "messages_per_second": 0,
    "messages_per_hour": 0,
    "backoff_seconds": 30,
    "max_backoff_seconds": 900,
    "suspend_seconds": 3600,
}
_HOST_PATTERN = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"
)


class ShapingFileError(ValueError):
    """The shaping file is not usable; the text names the line and the reason."""


@dataclass(frozen=True)
class ShapingRule:
    name: str  # "default", or the provider's name
    mx: tuple[str, ...]  # "mx.example.net", or "*.example.net" for any host under it
    max_connections: int
    messages_per_connection: int
    messages_per_second: float
    messages_per_hour: int
    backoff_seconds: int = 30
    max_backoff_seconds: int = 900
    suspend_seconds: int = 3600

    def claims(self, host: str) -> int:
        """How specifically this rule matches ``host``: the length of the matching pattern,
        or 0 when none matches."""
        best = 0
        for pattern in self.mx:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    best = max(best, len(pattern))
            elif host == pattern:
                best = max(best, len(pattern) + 1)  # an exact name beats any wildcard
        return best


@dataclass(frozen=True)
class ShapingRules:
    default: ShapingRule
    providers: tuple[ShapingRule, ...]
    warmup: WarmUpSchedule = DEFAULT_WARMUP  # for sending addresses registered to warm up

    def for_host(self, host: str) -> ShapingRule:
        """The rule of the provider whose pattern matches ``host`` most specifically."""
        name = host.lower().rstrip(".")
        best, rule = 0, self.default
        for provider in self.providers:
            score = provider.claims(name)
            if score > best:
                best, rule = score, provider
        return rule


def parse_shaping(text: str) -> ShapingRules:
    """The rules in ``text``; ShapingFileError with the line and the reason if it is not valid."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ShapingFileError(f"not valid TOML: {error}") from None
    unknown = set(data) - {"default", "provider", "warmup"}
    if unknown:
        key = sorted(unknown)[0]
        raise ShapingFileError(_at(text, key, f"unknown table or key {key!r}"))
    default_table = data.get("default", {})
    if not isinstance(default_table, dict):
        raise ShapingFileError(_at(text, "default", "[default] must be a table"))
    base = {**_DEFAULTS, **_limits(text, "default", default_table, allow_mx=False)}
    default = ShapingRule(name="default", mx=(), **base)
    providers_table = data.get("provider", {})
    if not isinstance(providers_table, dict):
        raise ShapingFileError(_at(text, "provider", "[provider.NAME] tables are expected"))
    providers = []
    claimed: dict[str, str] = {}
    for name, table in providers_table.items():
        where = f"provider.{name}"
        if not isinstance(table, dict):
            raise ShapingFileError(_at(text, where, f"[{where}] must be a table"))
        patterns = table.get("mx")
        if (
            not isinstance(patterns, list)
            or not patterns
            or not all(isinstance(p, str) for p in patterns)
        ):
            raise ShapingFileError(_at(text, where, f'[{where}] needs mx = ["*.example.com", …]'))
        normalised = tuple(pattern.strip().lower().rstrip(".") for pattern in patterns)
        for pattern in normalised:
            if not _HOST_PATTERN.fullmatch(pattern):
                raise ShapingFileError(
                    _at(text, where, f"{pattern!r} is not a host name or *.domain pattern")
                )
            if pattern in claimed:
                raise ShapingFileError(
                    _at(text, where, f"{pattern!r} is claimed by provider {claimed[pattern]!r} too")
                )
            claimed[pattern] = name
        limits = {**base, **_limits(text, where, table, allow_mx=True)}
        providers.append(ShapingRule(name=name, mx=normalised, **limits))
    warmup = _warmup(text, data["warmup"]) if "warmup" in data else DEFAULT_WARMUP
    return ShapingRules(default=default, providers=tuple(providers), warmup=warmup)


_WARMUP_KEYS = ("from_day", "per_hour", "per_day")


def _warmup(text: str, table: Any) -> WarmUpSchedule:
    """``[[warmup]]`` tables: ``from_day``, ``per_hour``, ``per_day`` (0: no cap), the
    first from day 1, days rising."""
    if not isinstance(table, list) or not table or not all(isinstance(t, dict) for t in table):
        raise ShapingFileError(_at(text, "warmup", "warm-up steps are [[warmup]] tables"))
    steps: list[WarmUpStep] = []
    for step in table:
        unknown = sorted(set(step) - set(_WARMUP_KEYS))
        if unknown:
            raise ShapingFileError(
                _at(text, "warmup", f"unknown setting {unknown[0]!r} in [[warmup]]; "
                    f"known: {', '.join(_WARMUP_KEYS)}", unknown[0])
            )  # fmt: skip
        values = [step.get(key) for key in _WARMUP_KEYS]
        for key, value in zip(_WARMUP_KEYS, values, strict=True):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ShapingFileError(
                    _at(text, "warmup", f"{key} must be a whole number >= 0 in every [[warmup]]")
                )
        from_day, per_hour, per_day = values
        if not steps and from_day != 1:
            raise ShapingFileError(_at(text, "warmup", "the first [[warmup]] is from_day = 1"))
        if steps and from_day <= steps[-1].from_day:
            raise ShapingFileError(
                _at(text, "warmup", f"from_day {from_day} after {steps[-1].from_day}: days rise")
            )
        steps.append(WarmUpStep(from_day, per_hour, per_day))
    return WarmUpSchedule(tuple(steps))


def _limits(text: str, where: str, table: dict[str, Any], *, allow_mx: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in table.items():
        if key == "mx" and allow_mx:
            continue
        if key not in _LIMITS:
            raise ShapingFileError(
                _at(text, where, f"unknown setting {key!r} in [{where}]; "
                    f"known: {', '.join(['mx', *_LIMITS] if allow_mx else _LIMITS)}")
            )  # fmt: skip
        number_ok = (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        if not number_ok or value < 0 or (key != "messages_per_second" and value != int(value)):
            raise ShapingFileError(
                _at(text, where, f"{key} must be a whole number >= 0 ({_LIMITS[key]})", key)
            )
        if key == "messages_per_connection" and value < 1:
            raise ShapingFileError(
                _at(text, where, "messages_per_connection must be at least 1", key)
            )
        found[key] = float(value) if key == "messages_per_second" else int(value)
    return found


def _at(text: str, table: str, reason: str, key: str | None = None) -> str:
    """``reason`` with the line of ``key`` in ``table`` (or of the table) in ``text``."""
    lines = text.splitlines()
    header = re.compile(r"\s*\[\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
    start = next((n for n, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        bare = re.compile(r"\s*" + re.escape(table) + r"\s*[=.\[]")
        start = next((n for n, line in enumerate(lines) if bare.match(line)), None)
    if start is None:
        return reason
    line = start
    if key is not None:
        setting = re.compile(r"\s*" + re.escape(key) + r"\s*=")
        for n in range(start + 1, len(lines)):
            if lines[n].lstrip().startswith("["):
                break
            if setting.match(lines[n]):
                line = n
                break
    return f"line {line + 1}: {reason}"


# A reply that asks the sender to slow down: 421, the statuses the big receivers use for it
# (Gmail's 4.7.28, Microsoft's 4.7.650 …), or words that say so.
_SLOW_DOWN_STATUSES = frozenset({"4.7.28", "4.7.650", "4.7.651", "4.7.652", "4.7.500"})
_SLOW_DOWN_WORDS = re.compile(
    r"rate.?limit|unusual rate|too many|throttl|slow down|temporarily deferred", re.I
)
_GREYLISTING = re.compile(r"grey.?list|gray.?list", re.I)
# A refusal that names a blocklist or the sender's reputation: more mail now only hurts.
_BLOCK_WORDS = re.compile(
    r"block ?list|black ?list|spamhaus|spamcop|barracuda|\b[RD]NSBL\b|\bRBL\b|reputation"
    r"|listed (on|at|in|by)|blocked using",
    re.I,
)


def reply_class(code: int, enhanced_status: str, text: str) -> str:
    """What a server's reply says about the pace of mail to it: ``"slow"`` (back off),
    ``"block"`` (stop for a while), or ``""`` (nothing)."""
    if 400 <= code < 500 and _GREYLISTING.search(text):
        return ""  # the retry that greylisting asks for is the usual one
    if code == 421 or enhanced_status in _SLOW_DOWN_STATUSES:
        return "slow"
    if 400 <= code < 500 and _SLOW_DOWN_WORDS.search(text):
        return "slow"
    if 500 <= code < 600 and enhanced_status.startswith("5.7.") and _BLOCK_WORDS.search(text):
        return "block"
    return ""
