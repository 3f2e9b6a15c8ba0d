"""When a campaign sends: the schedule of ``Campaign.Update`` and its due times.

The schedule is stored in events as plain values (``Schedule.to_dict``) and the
due times are recomputed from it, so this module is pure: no clock, no I/O, only
``datetime`` and ``zoneinfo``. Every instant it returns is UTC-aware.

Choices the API document leaves open, and why:

* Weekday *numbers* in ``ScheduleRecDaysOfWeek`` count like PHP's ``date('w')``:
  0 = Sunday, 1 = Monday ... 6 = Saturday, and 7 is accepted as Sunday too (as
  in cron), because that is what a JangoMail/PHP caller sends. Names and
  abbreviations (``Mon``, ``monday``, ``Tues``, ``Thurs`` ...) are accepted as
  well. Internally, and in ``to_dict``, ``days_of_week`` uses Python's
  ``date.weekday()`` numbering (0 = Monday ... 6 = Sunday), so stored events
  never depend on how the caller spelled the days.
* Days of the week and days of the month combine like cron: when both are
  given a date matches if *either* matches ("every Monday and on the 15th").
* Daylight saving time, for a one-off ``Future`` send: a wall time that does not
  exist (the spring-forward gap) sends at the first instant that does, i.e. at
  the moment the clocks jump; a wall time that happens twice (fall-back) sends
  at its first occurrence.
* Daylight saving time, for ``Recursive`` sends: a matching wall time that does
  not exist that day is skipped (cron would fire late or twice depending on the
  implementation; skipping keeps "at 02:30" meaning 02:30), and one that
  happens twice fires once, at its first occurrence.
* Lists accept comma-separated strings (also ``[1, 2]`` written as text), JSON
  arrays, single numbers, inclusive ranges (``9-17``, ``Mon-Fri``, ``Fri-Sun``)
  and ``*`` for "all", because form posts and JSON bodies both reach this code.
"""

from __future__ import annotations

import calendar
import functools
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from domain.errors import ErrorText

IMMEDIATE = "Immediate"
FUTURE = "Future"
RECURSIVE = "Recursive"
KINDS = (IMMEDIATE, FUTURE, RECURSIVE)

INVALID_SCHEDULE_TYPE = 5
SEND_DATE_REQUIRED = 6
SEND_TIME_REQUIRED = 7
DAYS_REQUIRED = 8
MONTHS_REQUIRED = 9
HOURS_REQUIRED = 10
MINUTES_REQUIRED = 11
MAX_INSTANCES_REQUIRED = 12
TIMEZONE_REQUIRED = 13

# Letter for letter from "Update Campaign Details" (Campaign.Update) in seed 001.
SCHEDULE_ERRORS: dict[int, str] = {
    INVALID_SCHEDULE_TYPE: "Invalid schedule type",
    SEND_DATE_REQUIRED: "Send date is required for future scheduled campaigns",
    SEND_TIME_REQUIRED: "Send time is required for future scheduled campaigns",
    DAYS_REQUIRED: (
        "Either days of the week or days of the month must be specified for recursive campaigns"
    ),
    MONTHS_REQUIRED: "Months are required for recursive campaigns",
    HOURS_REQUIRED: "Hours are required for recursive campaigns",
    MINUTES_REQUIRED: "Minutes are required for recursive campaigns",
    MAX_INSTANCES_REQUIRED: "Maximum instances are required for recursive campaigns",
    TIMEZONE_REQUIRED: "Timezone is required for scheduled campaigns",
}

# Years a schedule may name. The upper bound leaves room for UTC conversion and
# the recurrence search without reaching ``datetime.max``; the lower bound keeps
# out zones' pre-1970 local mean times with offsets in odd seconds.
_MIN_YEAR = 1970
_MAX_YEAR = 9998
_MAX_INSTANCES = 2**31 - 1
# The Gregorian calendar repeats every 400 years (146097 days, a whole number of
# weeks), so a rule with no match in 400 years never matches.
_SEARCH_MONTHS = 400 * 12 + 1


class ScheduleError(ValueError):
    """A schedule broke one of the documented rules 5-13.

    ``message`` is always the documented text of ``code``. A value that is
    present but malformed (``SendDate=2024-02-30``, ``ScheduleRecHours=25``)
    carries the code of the field it belongs to, not code 5: the documented
    texts say "required", and a value that cannot be used is as good as none,
    while "Invalid schedule type" would send the caller to the wrong field.
    Code 5 is kept for the schedule type itself and for stored dictionaries
    whose shape is broken (``Schedule.from_dict``). ``detail`` says what exactly
    was wrong, for logs and humans; it is not part of the documented text.
    """

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.message = SCHEDULE_ERRORS[code]
        self.detail = detail
        super().__init__(f"{code}: {self.message}" + (f" ({detail})" if detail else ""))

    @property
    def error(self) -> ErrorText:
        """The documented error, ready for ``RequestRejected``."""
        return ErrorText(self.code, self.message)


@dataclass(frozen=True)
class Schedule:
    """A validated schedule; constructing an invalid one raises ``ScheduleError``.

    Validation lives here and not only in ``parse_schedule`` so that a schedule
    rebuilt from an event can be trusted by ``first_due``/``next_due`` too.
    """

    kind: str  # "Immediate" | "Future" | "Recursive"
    timezone: str = "UTC"  # IANA name
    send_at_local: str = ""  # Future: "YYYY-MM-DDTHH:MM" local wall time
    days_of_week: tuple[int, ...] = ()  # 0=Monday..6=Sunday (date.weekday())
    days_of_month: tuple[int, ...] = ()  # 1..31
    months: tuple[int, ...] = ()  # 1..12
    hours: tuple[int, ...] = ()  # 0..23
    minutes: tuple[int, ...] = ()  # 0..59
    max_instances: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScheduleError(INVALID_SCHEDULE_TYPE, f"kind {self.kind!r}")
        # Normalise so that equal schedules compare and serialise equal.
        for name in ("days_of_week", "days_of_month", "months", "hours", "minutes"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list) or not all(_is_int(v) for v in value):
                raise ScheduleError(_FIELD_CODES[name], f"{name} must be integers")
            object.__setattr__(self, name, tuple(sorted(set(value))))
        if self.kind == FUTURE:
            _check_send_at_local(self.send_at_local)
        elif self.kind == RECURSIVE:
            self._check_recursive()
        if not isinstance(self.timezone, str) or canonical_zone(self.timezone) != self.timezone:
            raise ScheduleError(TIMEZONE_REQUIRED, f"unknown time zone {self.timezone!r}")

    def _check_recursive(self) -> None:
        if not (self.days_of_week or self.days_of_month):
            raise ScheduleError(DAYS_REQUIRED)
        _check_range(self.days_of_week, 0, 6, DAYS_REQUIRED, "days of the week")
        _check_range(self.days_of_month, 1, 31, DAYS_REQUIRED, "days of the month")
        if not self.months:
            raise ScheduleError(MONTHS_REQUIRED)
        _check_range(self.months, 1, 12, MONTHS_REQUIRED, "months")
        _check_days_possible(self.days_of_week, self.days_of_month, self.months)
        if not self.hours:
            raise ScheduleError(HOURS_REQUIRED)
        _check_range(self.hours, 0, 23, HOURS_REQUIRED, "hours")
        if not self.minutes:
            raise ScheduleError(MINUTES_REQUIRED)
        _check_range(self.minutes, 0, 59, MINUTES_REQUIRED, "minutes")
        if not _is_int(self.max_instances) or not 1 <= self.max_instances <= _MAX_INSTANCES:
            raise ScheduleError(MAX_INSTANCES_REQUIRED, f"max_instances {self.max_instances!r}")

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "timezone": self.timezone,
            "send_at_local": self.send_at_local,
            "days_of_week": list(self.days_of_week),
            "days_of_month": list(self.days_of_month),
            "months": list(self.months),
            "hours": list(self.hours),
            "minutes": list(self.minutes),
            "max_instances": self.max_instances,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Schedule:
        """Rebuilds a stored schedule; a broken shape is code 5 (see ``ScheduleError``)."""
        if not isinstance(d, Mapping):
            raise ScheduleError(INVALID_SCHEDULE_TYPE, "a schedule must be a mapping")
        lists: dict[str, tuple[int, ...]] = {}
        for name in ("days_of_week", "days_of_month", "months", "hours", "minutes"):
            value = d.get(name, [])
            if not isinstance(value, list | tuple) or not all(_is_int(v) for v in value):
                raise ScheduleError(INVALID_SCHEDULE_TYPE, f"{name} must be a list of integers")
            lists[name] = tuple(value)
        kind = d.get("kind")
        timezone = d.get("timezone", "UTC")
        send_at_local = d.get("send_at_local", "")
        max_instances = d.get("max_instances", 0)
        if not (
            isinstance(kind, str)
            and isinstance(timezone, str)
            and isinstance(send_at_local, str)
            and _is_int(max_instances)
        ):
            raise ScheduleError(INVALID_SCHEDULE_TYPE, "malformed stored schedule")
        assert isinstance(max_instances, int)
        return cls(
            kind=kind,
            timezone=timezone,
            send_at_local=send_at_local,
            max_instances=max_instances,
            **lists,
        )


# --- parsing the raw Campaign.Update parameters ---------------------------------------


def parse_schedule(params: Mapping[str, object]) -> Schedule:
    """Turns the raw ``Campaign.Update`` parameters into a ``Schedule``.

    Parameter names are matched case-insensitively, because form posts from
    hand-written PHP often differ in case. Errors come in the documented order:
    the type first (5), then the kind's fields in the order of their codes, so a
    caller fixing one error at a time meets them as the document lists them.
    Fields the kind does not use are ignored, so switching a campaign to
    ``Immediate`` does not fail on leftovers of an earlier schedule.
    """
    lowered = {str(k).lower(): v for k, v in params.items()}

    def get(name: str) -> object:
        value = lowered.get(name.lower())
        return None if _is_blank(value) else value

    raw_kind = get("ScheduleType")
    kind = _KIND_NAMES.get(raw_kind.strip().lower()) if isinstance(raw_kind, str) else None
    if kind is None:
        raise ScheduleError(INVALID_SCHEDULE_TYPE, f"ScheduleType {raw_kind!r}")
    if kind == IMMEDIATE:
        return Schedule(IMMEDIATE)

    if kind == FUTURE:
        send_date = _parse_date(get("SendDate"))
        hour, minute = _parse_time(get("SendTime"))
        timezone = _parse_zone(get("SendTimeZone"))
        return Schedule(
            FUTURE,
            timezone=timezone,
            send_at_local=f"{send_date.isoformat()}T{hour:02d}:{minute:02d}",
        )

    days_of_week = _parse_list(get("ScheduleRecDaysOfWeek"), _weekday_token, DAYS_REQUIRED)
    days_of_month = _parse_list(get("ScheduleRecDaysOfMonth"), _number_token(1, 31), DAYS_REQUIRED)
    if not (days_of_week or days_of_month):
        raise ScheduleError(DAYS_REQUIRED)
    months = _parse_list(get("ScheduleRecMonths"), _month_token, MONTHS_REQUIRED)
    if not months:
        raise ScheduleError(MONTHS_REQUIRED)
    _check_days_possible(days_of_week, days_of_month, months)
    hours = _parse_list(get("ScheduleRecHours"), _number_token(0, 23), HOURS_REQUIRED)
    if not hours:
        raise ScheduleError(HOURS_REQUIRED)
    minutes = _parse_list(get("ScheduleRecMinutes"), _number_token(0, 59), MINUTES_REQUIRED)
    if not minutes:
        raise ScheduleError(MINUTES_REQUIRED)
    max_instances = _parse_positive(get("ScheduleRecSendMaxInstance"))
    timezone = _parse_zone(get("SendTimeZone"))
    return Schedule(
        RECURSIVE,
        timezone=timezone,
        days_of_week=days_of_week,
        days_of_month=days_of_month,
        months=months,
        hours=hours,
        minutes=minutes,
        max_instances=max_instances,
    )


_KIND_NAMES = {kind.lower(): kind for kind in KINDS}
_FIELD_CODES = {
    "days_of_week": DAYS_REQUIRED,
    "days_of_month": DAYS_REQUIRED,
    "months": MONTHS_REQUIRED,
    "hours": HOURS_REQUIRED,
    "minutes": MINUTES_REQUIRED,
}
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})", re.ASCII)
_TIME_24 = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", re.ASCII)
_TIME_12 = re.compile(r"(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*([ap])\.?\s*m\.?", re.ASCII | re.I)
_NUMBER = re.compile(r"\d{1,10}", re.ASCII)
_RANGE = re.compile(r"([a-z0-9]+)\s*-\s*([a-z0-9]+)", re.ASCII)
_SEND_AT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})", re.ASCII)

# Monday-first positions (date.weekday()) of the names a caller may write.
_WEEKDAY_NAMES = {
    name: index
    for index, names in enumerate(
        (
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "weds", "wednesday"),
            ("thu", "thur", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        )
    )
    for name in names
}
_MONTH_NAMES = {
    **{calendar.month_name[m].lower(): m for m in range(1, 13)},
    **{calendar.month_abbr[m].lower(): m for m in range(1, 13)},
    "sept": 9,
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | tuple) and not value


def _parse_date(value: object) -> date:
    if value is None:
        raise ScheduleError(SEND_DATE_REQUIRED)
    if isinstance(value, str):
        text = value.strip()
        if match := _ISO_DATE.fullmatch(text):
            year, month, day = (int(g) for g in match.groups())
        elif match := _US_DATE.fullmatch(text):
            month, day, year = (int(g) for g in match.groups())
        else:
            raise ScheduleError(SEND_DATE_REQUIRED, f"SendDate {value!r} is not a date")
        if _MIN_YEAR <= year <= _MAX_YEAR:
            try:
                return date(year, month, day)
            except ValueError:
                pass
    raise ScheduleError(SEND_DATE_REQUIRED, f"SendDate {value!r} is not a date")


def _parse_time(value: object) -> tuple[int, int]:
    """Hour and minute; seconds are accepted and dropped (schedules are per minute)."""
    if value is None:
        raise ScheduleError(SEND_TIME_REQUIRED)
    if isinstance(value, str):
        text = value.strip()
        if match := _TIME_24.fullmatch(text):
            hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
            if hour <= 23 and minute <= 59 and second <= 59:
                return hour, minute
        elif match := _TIME_12.fullmatch(text):
            hour, minute, second = int(match[1]), int(match[2] or 0), int(match[3] or 0)
            if 1 <= hour <= 12 and minute <= 59 and second <= 59:
                # 12 AM is midnight and 12 PM is noon.
                return hour % 12 + (12 if match[4].lower() == "p" else 0), minute
    raise ScheduleError(SEND_TIME_REQUIRED, f"SendTime {value!r} is not a time of day")


@functools.cache
def _zone_names() -> tuple[frozenset[str], dict[str, str]]:
    names = frozenset(zoneinfo.available_timezones())
    return names, {name.lower(): name for name in names}


def canonical_zone(name: str) -> str | None:
    """The IANA spelling of ``name`` (matched case-insensitively), or None if unknown.

    Looking names up in the list of known zones, rather than handing user input
    to ``ZoneInfo`` directly, keeps arbitrary strings away from file lookups.
    """
    names, by_lower_case = _zone_names()
    key = name.strip()
    return key if key in names else by_lower_case.get(key.lower())


def _parse_zone(value: object) -> str:
    # Code 13 also for a zone name nobody knows: it is the only documented error
    # about the time zone, and a zone that cannot be resolved gives no send time,
    # exactly like a missing one.
    if value is None:
        raise ScheduleError(TIMEZONE_REQUIRED)
    zone = canonical_zone(value) if isinstance(value, str) else None
    if zone is None:
        raise ScheduleError(TIMEZONE_REQUIRED, f"unknown time zone {value!r}")
    return zone


def _parse_positive(value: object) -> int:
    if value is None:
        raise ScheduleError(MAX_INSTANCES_REQUIRED)
    number: int | None = None
    if _is_int(value):
        assert isinstance(value, int)
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not 1 <= number <= _MAX_INSTANCES:
        raise ScheduleError(
            MAX_INSTANCES_REQUIRED, f"ScheduleRecSendMaxInstance {value!r} is not a positive count"
        )
    return number


class _Token:
    """How one list field reads its items: values, names, and range endpoints."""

    def __init__(self, low: int, high: int, names: Mapping[str, int] | None = None) -> None:
        self.low, self.high, self.names = low, high, names or {}

    def value(self, text: str, *, range_end: bool = False) -> int | None:
        if _NUMBER.fullmatch(text):
            number = int(text)
            return number if self.low <= number <= self.high else None
        return self.names.get(text)

    def to_internal(self, value: int) -> int:
        return value


class _WeekdayToken(_Token):
    """Weekdays as the caller counts them: 0 (or 7) = Sunday ... 6 = Saturday."""

    def __init__(self) -> None:
        super().__init__(0, 7)

    def value(self, text: str, *, range_end: bool = False) -> int | None:
        if text in _WEEKDAY_NAMES:
            sunday_based = (_WEEKDAY_NAMES[text] + 1) % 7
            # "Fri-Sun" must read as 5-7, "Sun-Sat" as 0-6.
            return 7 if sunday_based == 0 and range_end else sunday_based
        return super().value(text)

    def to_internal(self, value: int) -> int:
        return (value - 1) % 7  # Sunday-based (0 or 7 = Sunday) to Monday-based


_weekday_token = _WeekdayToken()
_month_token = _Token(1, 12, _MONTH_NAMES)


@functools.cache
def _number_token(low: int, high: int) -> _Token:
    return _Token(low, high)


def _raw_items(value: object) -> Iterator[object]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        for item in text.split(","):
            yield item.strip().strip("\"'")
    elif isinstance(value, list | tuple):
        # One level only: ``["1,2", 3]`` is fine, nested lists are not a list field.
        for item in value:
            yield from _raw_items(item) if isinstance(item, str) else (item,)
    else:
        yield value


def _parse_list(value: object, token: _Token, code: int) -> tuple[int, ...]:
    """The set of values a list field names, in the module's internal numbering."""
    if value is None:
        return ()
    found: set[int] = set()
    for item in _raw_items(value):
        if _is_int(item):
            assert isinstance(item, int)
            if not 0 <= item <= token.high:
                raise ScheduleError(code, f"{item!r} is out of range")
            item = str(item)
        if not isinstance(item, str):
            raise ScheduleError(code, f"{item!r} is not a number or a name")
        text = item.strip().lower()
        if not text:
            continue  # "1,2," from a form that joins with a trailing comma
        found.update(_expand(text, token, code))
    return tuple(sorted(token.to_internal(v) for v in found))


def _expand(text: str, token: _Token, code: int) -> Iterable[int]:
    if text == "*":
        return range(token.low, token.high + 1)
    if match := _RANGE.fullmatch(text):
        first = token.value(match[1])
        last = token.value(match[2], range_end=True)
        if first is None or last is None or first > last:
            raise ScheduleError(code, f"{text!r} is not a range")
        return range(first, last + 1)
    single = token.value(text)
    if single is None:
        raise ScheduleError(code, f"{text!r} is out of range or unknown")
    return (single,)


# --- validation shared by parsing and construction ------------------------------------


def _check_range(values: tuple[int, ...], low: int, high: int, code: int, what: str) -> None:
    if any(not low <= v <= high for v in values):
        raise ScheduleError(code, f"{what} must lie in {low}..{high}")


def _check_days_possible(
    days_of_week: tuple[int, ...], days_of_month: tuple[int, ...], months: tuple[int, ...]
) -> None:
    """Rejects rules that can never fire, such as the 30th of February.

    Every month has every weekday, so only a days-of-month-only rule can be
    impossible; February counts 29 days because leap years come.
    """
    if days_of_week:
        return
    longest = max(calendar.monthrange(2000, m)[1] for m in months)  # 2000 is a leap year
    if min(days_of_month) > longest:
        raise ScheduleError(DAYS_REQUIRED, "no day of the month exists in the months given")


def _check_send_at_local(value: object) -> None:
    match = _SEND_AT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ScheduleError(SEND_DATE_REQUIRED, f"send_at_local {value!r}")
    year, month, day, hour, minute = (int(g) for g in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        raise ScheduleError(SEND_DATE_REQUIRED, f"send_at_local {value!r}") from None
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        raise ScheduleError(SEND_DATE_REQUIRED, f"send_at_local {value!r}")
    if hour > 23 or minute > 59:
        raise ScheduleError(SEND_TIME_REQUIRED, f"send_at_local {value!r}")


# --- due times ------------------------------------------------------------------------


def first_due(schedule: Schedule, now: datetime) -> datetime | None:
    """When the first send is due.

    ``Future`` returns its instant even when it has passed, so the caller can
    tell "overdue, send now" from "not yet"; ``Recursive`` includes ``now``
    itself when ``now`` is a matching minute. ``None`` only for a recursive rule
    with no matching instant left before year 9999.
    """
    now = _utc(now)
    if schedule.kind == IMMEDIATE:
        return now
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    if schedule.kind == FUTURE:
        return _first_valid_instant(datetime.fromisoformat(schedule.send_at_local), zone)
    return _next_match(schedule, zone, now, inclusive=True)


def next_due(schedule: Schedule, after: datetime, instances_sent: int) -> datetime | None:
    """The next recurrence strictly after ``after`` (usually the last send), if any is left."""
    after = _utc(after)
    if schedule.kind != RECURSIVE or instances_sent >= schedule.max_instances:
        return None
    return _next_match(schedule, zoneinfo.ZoneInfo(schedule.timezone), after, inclusive=False)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("due times are computed from aware datetimes only")
    return moment.astimezone(UTC)


def _instant(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime | None:
    """The first instant showing ``wall`` on the zone's clocks, or None if none does."""
    moment = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    back = moment.astimezone(zone).replace(tzinfo=None, fold=0)
    return moment if back == wall.replace(fold=0) else None


def _first_valid_instant(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """``wall`` as an instant; a wall time in a gap becomes the instant the gap ends."""
    if (moment := _instant(wall, zone)) is not None:
        return moment
    # ``fold=0`` reads a gap time with the offset in force before the gap, which
    # lands after the transition by less than the gap's length; the transition
    # is found by bisecting seconds (tz transitions fall on whole seconds).
    late = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    before_offset = wall.replace(tzinfo=zone, fold=0).utcoffset()
    after_offset = late.astimezone(zone).utcoffset()
    assert before_offset is not None and after_offset is not None
    # Bisect the number of seconds to step back from ``late``: stepping back by
    # ``low`` still shows the new offset, stepping back by the gap's length does not.
    low, high = 0, int((after_offset - before_offset).total_seconds())
    while low < high:
        middle = (low + high + 1) // 2
        if (late - timedelta(seconds=middle)).astimezone(zone).utcoffset() == after_offset:
            low = middle
        else:
            high = middle - 1
    return late - timedelta(seconds=low)


def _days(schedule: Schedule, year: int, month: int) -> list[int]:
    """The days of one month that match, under the cron-like OR of both day lists."""
    first_weekday, length = calendar.monthrange(year, month)
    days = {d for d in schedule.days_of_month if d <= length}
    if schedule.days_of_week:
        weekdays = set(schedule.days_of_week)
        days.update(d for d in range(1, length + 1) if (first_weekday + d - 1) % 7 in weekdays)
    return sorted(days)


def _next_match(
    schedule: Schedule, zone: zoneinfo.ZoneInfo, after: datetime, *, inclusive: bool
) -> datetime | None:
    """Walks months, then matching days, then hours and minutes in order.

    Candidates are generated in local wall-clock order, each read at its first
    occurrence; that order is also UTC order (first occurrences never go back in
    time), so the first candidate past ``after`` is the answer. Wall times before
    ``after``'s own wall time on its day are skipped without conversion: their
    first occurrence cannot be later than ``after``.
    """
    if after.year > _MAX_YEAR:
        return None
    local = after.astimezone(zone)
    start_day = local.date()
    start_minute = (local.hour, local.minute)
    year, month = start_day.year, start_day.month
    months = set(schedule.months)
    for _ in range(_SEARCH_MONTHS):
        if year > _MAX_YEAR:
            return None
        if month in months:
            for day in _days(schedule, year, month):
                current = date(year, month, day)
                if current < start_day:
                    continue
                same_day = current == start_day
                for hour in schedule.hours:
                    if same_day and hour < start_minute[0]:
                        continue
                    for minute in schedule.minutes:
                        if same_day and (hour, minute) < start_minute:
                            continue
                        moment = _instant(datetime(year, month, day, hour, minute), zone)
                        if moment is not None and (
                            moment > after or (inclusive and moment == after)
                        ):
                            return moment
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None
