"""Reading request parameters, which arrive as JSON values or as form and query text: the
``/api.php`` commands', and the email addresses and times that every way in reads alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from adapters.mime import UNSAFE_HEADER_TEXT
from domain import errors as E
from domain.campaign_schedule import canonical_zone
from domain.errors import Extensions, RequestRejected
from projections.events import EVENT_TYPE_NAMES

# Characters no header may hold (adapters.mime refuses them when it renders): control
# characters but TAB, Unicode line and paragraph separators, lone surrogates. What is
# accepted is checked for them, so that nothing accepted fails to render later.
UNSAFE_TEXT = UNSAFE_HEADER_TEXT

# How deep a range may be paged (TooManyRecordsException): a deeper offset means a narrower range.
MAX_PAGED_RECORDS = 20_000


def text_param(value: Any) -> str | None:
    """A parameter as text: strings stripped, numbers as written; anything else is absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip() and "\x00" not in value:
        return value.strip()
    return None


def uuid_param(value: Any) -> UUID | None:
    """An id parameter; anything that is not one is absent (and so "not found")."""
    text = text_param(value)
    if text is None or len(text) > 64:
        return None
    try:
        return UUID(text)
    except ValueError:
        return None


def iso_time(moment: datetime | None) -> str | None:
    """Times in answers: UTC, to the second, ``Z``-suffixed."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def count_param(value: Any, default: int, name: str) -> int:
    """A count or an offset (``RecordsFrom``, ``RecordsPerRequest``): a 32-bit natural
    number, as the REST conventions (003) have it."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RequestRejected(E.Lists.INVALID_OPTION.format(name=name)) from None
    if not 0 <= number < 2**31:
        raise RequestRejected(E.Lists.INVALID_OPTION.format(name=name))
    return number


def time_zone(name: str) -> ZoneInfo:
    """The zone of an IANA name; UTC when the name is unknown (checked when it was set)."""
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


def time_zone_param(value: Any) -> str | None:
    """An IANA time zone name (``Europe/Paris``, any case), or None when it is not one."""
    text = text_param(value)
    return None if text is None or len(text) > 64 else canonical_zone(text)


def date_param(value: Any, *, end_of_day: bool, zone: str = "UTC") -> datetime | None:
    """StartDate or EndDate: a Unix timestamp (an instant), or a date or date and time
    read in the account's time ``zone``. A bare date as the end of a range means the whole
    of that day (inclusive end, to the millisecond)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | int | float) or str(value).strip().isdigit():
        parsed = parse_timestamp(value)
        if parsed is None:
            raise RequestRejected(Extensions.INVALID_DATE)
        return parsed
    text = str(value).strip() if isinstance(value, str) else ""
    if not text or len(text) > 40:
        raise RequestRejected(Extensions.INVALID_DATE)
    try:
        local = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if local.tzinfo is not None:
            return local.astimezone(UTC)
        if end_of_day and len(text) == 10:
            local = local.replace(hour=23, minute=59, second=59, microsecond=999_000)
        return local.replace(tzinfo=time_zone(zone)).astimezone(UTC)
    except (ValueError, OverflowError):  # unreadable, or beyond year 1 to 9999 in UTC
        raise RequestRejected(Extensions.INVALID_DATE) from None


EVENT_SYNONYMS = {
    "delivery": "delivered",
    "bounce": "bounced",
    "send": "sent",
    "defer": "deferred",
}


def event_param(value: Any) -> str | None:
    if value is None or value == "":
        return None
    name = str(value).strip().lower()
    name = EVENT_SYNONYMS.get(name, name)
    if name not in EVENT_TYPE_NAMES:
        raise RequestRejected(Extensions.INVALID_PARAMETER.format(name="Event"))
    return name


# The everyday address (ASCII dot-atom at an LDH host name) is decided by this pattern alone;
# anything else goes to email-validator. Same verdicts, at a twentieth of the cost.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63}))"
)


def is_valid_email(value: str) -> bool:
    if UNSAFE_TEXT.search(value) or len(value) > 254:
        return False
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain is not None and len(value.partition("@")[0]) <= 64:
        domain, top_level = plain.group(1).lower(), plain.group(2).lower()
        # "--" can make a label an IDNA A-label ("xn--") or a reserved one ("ab--c", RFC 5891
        # 4.2.3.1): such domains are for email-validator to judge.
        if (
            "--" not in domain
            and top_level not in SPECIAL_USE_DOMAIN_NAMES
            and not any(
                domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES
            )
        ):
            return True
    try:
        validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return False
    return True


def parse_timestamp(value: Any) -> datetime | None:
    """A Unix timestamp, ``YYYY-MM-DD HH:MM:SS`` (UTC), or ISO-8601; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not 0 <= value < 2**31:  # the documents bound numbers to signed 32-bit
            return None
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        return None
    text = value.strip()
    if text.isdigit():
        return parse_timestamp(int(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # unreadable, or beyond year 1 to 9999 in UTC
        return None


def flag_param(params: dict[str, Any], name: str, current: bool) -> bool:
    """``1``/``0`` in the documents; true/false, yes/no and on/off are accepted too."""
    if name not in params or params[name] in (None, ""):
        return current
    value = params[name]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise RequestRejected(E.Command.INVALID_OPTION.format(name=name))
