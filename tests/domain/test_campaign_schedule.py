"""Campaign schedules: parsing Campaign.Update, and due times across DST and calendars."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.campaign_schedule import (
    SCHEDULE_ERRORS,
    Schedule,
    ScheduleError,
    first_due,
    next_due,
    parse_schedule,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def recursive(**overrides: object) -> dict[str, object]:
    params: dict[str, object] = {
        "ScheduleType": "Recursive",
        "ScheduleRecDaysOfWeek": "",
        "ScheduleRecDaysOfMonth": "",
        "ScheduleRecMonths": "*",
        "ScheduleRecHours": "9",
        "ScheduleRecMinutes": "0",
        "ScheduleRecSendMaxInstance": "10",
        "SendTimeZone": "UTC",
    }
    params.update(overrides)
    return params


def future(date: str, time: str, zone: str) -> Schedule:
    return parse_schedule(
        {"ScheduleType": "Future", "SendDate": date, "SendTime": time, "SendTimeZone": zone}
    )


def fires(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    moments: list[datetime] = []
    moment = first_due(schedule, start)
    while moment is not None and len(moments) < count:
        moments.append(moment)
        moment = next_due(schedule, moment, len(moments))
    return moments


# --- errors 5-13 ----------------------------------------------------------------------

ERROR_CASES: list[tuple[dict[str, object], int]] = [
    ({}, 5),
    ({"ScheduleType": "Weekly"}, 5),
    ({"ScheduleType": ["Future"]}, 5),
    ({"ScheduleType": "Future", "SendTime": "10:00", "SendTimeZone": "UTC"}, 6),
    ({"ScheduleType": "Future", "SendDate": "2025-02-29", "SendTimeZone": "UTC"}, 6),
    ({"ScheduleType": "Future", "SendDate": "2025-06-01", "SendTimeZone": "UTC"}, 7),
    ({"ScheduleType": "Future", "SendDate": "2025-06-01", "SendTime": "24:00"}, 7),
    ({"ScheduleType": "Future", "SendDate": "2025-06-01", "SendTime": "13:00 PM"}, 7),
    ({"ScheduleType": "Future", "SendDate": "2025-06-01", "SendTime": "10:00"}, 13),
    (
        {
            "ScheduleType": "Future",
            "SendDate": "2025-06-01",
            "SendTime": "10:00",
            "SendTimeZone": "Mars/Olympus_Mons",
        },
        13,
    ),
    (recursive(), 8),
    (recursive(ScheduleRecDaysOfWeek="Mon,Funday"), 8),
    (recursive(ScheduleRecDaysOfMonth="0"), 8),
    (recursive(ScheduleRecDaysOfMonth="30,31", ScheduleRecMonths="Feb"), 8),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecMonths=""), 9),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecMonths="13"), 9),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecHours=None), 10),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecHours="24"), 10),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecMinutes=[]), 11),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecMinutes="60"), 11),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecSendMaxInstance=""), 12),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecSendMaxInstance="0"), 12),
    (recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecSendMaxInstance=True), 12),
    (recursive(ScheduleRecDaysOfWeek="Mon", SendTimeZone=""), 13),
    (recursive(ScheduleRecDaysOfWeek="Mon", SendTimeZone="CEST"), 13),
    # Several errors at once: the lowest documented code of the kind wins.
    (recursive(ScheduleRecMonths="", ScheduleRecHours="", SendTimeZone=""), 8),
    (recursive(ScheduleRecDaysOfMonth="1", ScheduleRecHours="", SendTimeZone=""), 10),
]


@pytest.mark.parametrize(("params", "code"), ERROR_CASES)
def test_each_documented_error(params: dict[str, object], code: int) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(params)
    assert caught.value.code == code
    assert caught.value.message == SCHEDULE_ERRORS[code]
    assert caught.value.error.code == code
    assert isinstance(caught.value, ValueError)


def test_error_texts_are_the_documented_ones() -> None:
    assert SCHEDULE_ERRORS == {
        5: "Invalid schedule type",
        6: "Send date is required for future scheduled campaigns",
        7: "Send time is required for future scheduled campaigns",
        8: "Either days of the week or days of the month must be specified for recursive campaigns",
        9: "Months are required for recursive campaigns",
        10: "Hours are required for recursive campaigns",
        11: "Minutes are required for recursive campaigns",
        12: "Maximum instances are required for recursive campaigns",
        13: "Timezone is required for scheduled campaigns",
    }
    assert {code for _, code in ERROR_CASES} == set(SCHEDULE_ERRORS)


# --- parsing --------------------------------------------------------------------------


def test_immediate_ignores_leftover_fields() -> None:
    schedule = parse_schedule({"scheduletype": " IMMEDIATE ", "SendDate": "garbage"})
    assert schedule == Schedule("Immediate")


@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        ("2025-06-01", "10:00", "2025-06-01T10:00"),
        ("06/01/2025", "10:00:59", "2025-06-01T10:00"),
        ("6/1/2025", "3:30 PM", "2025-06-01T15:30"),
        ("2025-6-1", "12:05am", "2025-06-01T00:05"),
        ("2025-06-01", "12 p.m.", "2025-06-01T12:00"),
        ("2025-06-01", "7:45", "2025-06-01T07:45"),
    ],
)
def test_future_date_and_time_formats(date: str, time: str, expected: str) -> None:
    assert future(date, time, "UTC").send_at_local == expected


def test_time_zones_are_matched_case_insensitively_and_stored_canonically() -> None:
    assert future("2025-06-01", "10:00", "europe/berlin").timezone == BERLIN
    assert future("2025-06-01", "10:00", "GMT").timezone == "GMT"
    assert future("2025-06-01", "10:00", "utc").timezone == "UTC"


def test_weekday_numbers_count_from_sunday_like_php() -> None:
    def days(value: object) -> tuple[int, ...]:
        return parse_schedule(recursive(ScheduleRecDaysOfWeek=value)).days_of_week

    monday, friday, saturday, sunday = 0, 4, 5, 6
    assert days("0") == (sunday,)
    assert days("7") == (sunday,)
    assert days([1, "6"]) == (monday, saturday)
    assert days("Mon, tuesday,THURS") == (0, 1, 3)
    assert days("1-5") == (0, 1, 2, 3, 4)
    assert days("Mon-Fri") == (0, 1, 2, 3, 4)
    assert days("fri-sun") == (friday, saturday, sunday)
    assert days("sun-sat") == (0, 1, 2, 3, 4, 5, 6)
    assert days("*") == (0, 1, 2, 3, 4, 5, 6)
    with pytest.raises(ScheduleError):
        days("sat-mon")


def test_lists_in_every_shape() -> None:
    schedule = parse_schedule(
        recursive(
            ScheduleRecDaysOfMonth='["1","15"]',
            ScheduleRecMonths="jan, March ,sept,12",
            ScheduleRecHours=[9, "17"],
            ScheduleRecMinutes="0,30,",
            ScheduleRecSendMaxInstance=3,
        )
    )
    assert schedule.days_of_month == (1, 15)
    assert schedule.months == (1, 3, 9, 12)
    assert schedule.hours == (9, 17)
    assert schedule.minutes == (0, 30)
    assert schedule.max_instances == 3
    assert parse_schedule(recursive(ScheduleRecDaysOfMonth=5, ScheduleRecHours="9-11")).hours == (
        9,
        10,
        11,
    )


def test_days_of_month_31_is_possible_when_some_month_has_it() -> None:
    schedule = parse_schedule(recursive(ScheduleRecDaysOfMonth="31", ScheduleRecMonths="2,3"))
    assert schedule.days_of_month == (31,)
    leap_day = parse_schedule(recursive(ScheduleRecDaysOfMonth="29", ScheduleRecMonths="2"))
    assert leap_day.months == (2,)


def test_round_trip_through_json() -> None:
    schedules = [
        Schedule("Immediate"),
        future("2025-06-01", "10:00", BERLIN),
        parse_schedule(recursive(ScheduleRecDaysOfWeek="mon,fri", SendTimeZone=NEW_YORK)),
    ]
    for schedule in schedules:
        stored = json.loads(json.dumps(schedule.to_dict()))
        assert Schedule.from_dict(stored) == schedule


@pytest.mark.parametrize(
    "stored",
    [
        {"kind": "Recursive", "hours": "9"},
        {"kind": 3},
        {"kind": "Future", "send_at_local": "2025-06-01 10:00"},
        {"kind": "Recursive", "days_of_week": [7], "months": [1], "hours": [1], "minutes": [1]},
        {"kind": "Immediate", "timezone": "Nowhere/Land"},
    ],
)
def test_broken_stored_schedules_raise_schedule_error(stored: dict[str, object]) -> None:
    with pytest.raises(ScheduleError):
        Schedule.from_dict(stored)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["Mon-Fri", "1-5", "*", "9", "0", "31", "feb", "13:00 PM", "2024-02-29"]),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=5), st.dictionaries(st.text(max_size=3), scalars)
)
field_names = st.sampled_from(
    [
        "ScheduleType",
        "SendDate",
        "SendTime",
        "SendTimeZone",
        "ScheduleRecDaysOfWeek",
        "ScheduleRecDaysOfMonth",
        "ScheduleRecMonths",
        "ScheduleRecHours",
        "ScheduleRecMinutes",
        "ScheduleRecSendMaxInstance",
    ]
)


@settings(max_examples=300)
@given(
    kind=st.sampled_from(["Immediate", "future", "RECURSIVE", "x", ""]),
    fields=st.dictionaries(field_names, values),
)
def test_garbage_raises_only_schedule_errors(kind: str, fields: dict[str, object]) -> None:
    params: dict[str, object] = {"ScheduleType": kind, **fields}
    try:
        schedule = parse_schedule(params)
    except ScheduleError as error:
        assert 5 <= error.code <= 13
        return
    assert Schedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    first_due(schedule, utc(2025, 1, 1))


# --- one-off sends --------------------------------------------------------------------


def test_immediate_is_due_now_and_once() -> None:
    now = utc(2025, 6, 1, 12, 0, 5)
    assert first_due(Schedule("Immediate"), now) == now
    assert next_due(Schedule("Immediate"), now, 0) is None


def test_future_converts_local_wall_time() -> None:
    schedule = future("2025-07-01", "09:00", BERLIN)
    assert first_due(schedule, utc(2025, 1, 1)) == utc(2025, 7, 1, 7, 0)
    # Already passed: still reported, so the caller sends it at once.
    assert first_due(schedule, utc(2026, 1, 1)) == utc(2025, 7, 1, 7, 0)
    assert next_due(schedule, utc(2025, 7, 1, 7, 0), 0) is None


@pytest.mark.parametrize(
    ("date", "time", "zone", "expected"),
    [
        # Spring-forward gaps: the first instant that exists, when the clocks jump.
        ("2024-03-31", "02:30", BERLIN, utc(2024, 3, 31, 1, 0)),  # 03:00 CEST
        ("2024-03-10", "02:30", NEW_YORK, utc(2024, 3, 10, 7, 0)),  # 03:00 EDT
        ("2024-03-10", "02:00", NEW_YORK, utc(2024, 3, 10, 7, 0)),
        ("2024-03-10", "03:00", NEW_YORK, utc(2024, 3, 10, 7, 0)),
        ("2024-03-10", "01:59", NEW_YORK, utc(2024, 3, 10, 6, 59)),
        ("2024-10-06", "02:15", "Australia/Lord_Howe", utc(2024, 10, 5, 15, 30)),
        # Fall-back repeats: the first occurrence (still summer time).
        ("2024-10-27", "02:30", BERLIN, utc(2024, 10, 27, 0, 30)),  # CEST, not 01:30Z
        ("2024-11-03", "01:30", NEW_YORK, utc(2024, 11, 3, 5, 30)),  # EDT, not 06:30Z
    ],
)
def test_future_across_dst(date: str, time: str, zone: str, expected: datetime) -> None:
    assert first_due(future(date, time, zone), utc(2024, 1, 1)) == expected


# --- recurring sends ------------------------------------------------------------------


def test_a_missing_wall_time_is_skipped_that_day() -> None:
    daily = parse_schedule(
        recursive(
            ScheduleRecDaysOfWeek="*",
            ScheduleRecHours="2",
            ScheduleRecMinutes="30",
            SendTimeZone=BERLIN,
        )
    )
    assert fires(daily, utc(2024, 3, 29, 12), 3) == [
        utc(2024, 3, 30, 1, 30),  # CET
        utc(2024, 4, 1, 0, 30),  # CEST; 31 March had no 02:30
        utc(2024, 4, 2, 0, 30),
    ]


def test_a_repeated_wall_time_fires_once() -> None:
    daily = parse_schedule(
        recursive(
            ScheduleRecDaysOfWeek="*",
            ScheduleRecHours="2",
            ScheduleRecMinutes="30",
            SendTimeZone=BERLIN,
        )
    )
    assert fires(daily, utc(2024, 10, 26, 12), 2) == [
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST; 02:30 CET (01:30Z) does not fire again
        utc(2024, 10, 28, 1, 30),
    ]
    half_hourly = parse_schedule(
        recursive(
            ScheduleRecDaysOfWeek="*",
            ScheduleRecHours="1",
            ScheduleRecMinutes="0,30",
            SendTimeZone=NEW_YORK,
        )
    )
    assert fires(half_hourly, utc(2024, 11, 2, 12), 5) == [
        utc(2024, 11, 3, 5, 0),  # 01:00 EDT
        utc(2024, 11, 3, 5, 30),  # 01:30 EDT; the EST repeats at 06:00Z/06:30Z are skipped
        utc(2024, 11, 4, 6, 0),  # 01:00 EST
        utc(2024, 11, 4, 6, 30),
        utc(2024, 11, 5, 6, 0),
    ]
    # Starting inside the repeated hour, after its first occurrence has passed.
    assert next_due(half_hourly, utc(2024, 11, 3, 6, 10), 0) == utc(2024, 11, 4, 6, 0)


def test_leap_days() -> None:
    leap_day = parse_schedule(
        recursive(ScheduleRecDaysOfMonth="29", ScheduleRecMonths="feb", ScheduleRecHours="0")
    )
    assert first_due(leap_day, utc(2025, 1, 1)) == utc(2028, 2, 29)
    assert next_due(leap_day, utc(2028, 2, 29), 1) == utc(2032, 2, 29)
    assert first_due(leap_day, utc(2096, 3, 1)) == utc(2104, 2, 29)  # 2100 is no leap year


def test_day_31_skips_short_months() -> None:
    monthly = parse_schedule(recursive(ScheduleRecDaysOfMonth="31", ScheduleRecHours="10"))
    assert fires(monthly, utc(2025, 1, 31, 10, 0, 1), 4) == [
        utc(2025, 3, 31, 10),
        utc(2025, 5, 31, 10),
        utc(2025, 7, 31, 10),
        utc(2025, 8, 31, 10),
    ]


def test_days_of_week_or_days_of_month() -> None:
    rule = parse_schedule(
        recursive(ScheduleRecDaysOfWeek="Mon", ScheduleRecDaysOfMonth="15", ScheduleRecMonths="6")
    )
    # June 2025: Mondays 2, 9, 16, 23, 30 and Sunday the 15th.
    days = [moment.day for moment in fires(rule, utc(2025, 1, 1), 6)]
    assert days == [2, 9, 15, 16, 23, 30]


def test_first_due_includes_now_and_next_due_excludes_after() -> None:
    hourly = parse_schedule(recursive(ScheduleRecDaysOfWeek="*", ScheduleRecHours="*"))
    assert first_due(hourly, utc(2025, 6, 1, 9)) == utc(2025, 6, 1, 9)
    assert first_due(hourly, utc(2025, 6, 1, 9, 0, 1)) == utc(2025, 6, 1, 10)
    assert next_due(hourly, utc(2025, 6, 1, 9), 1) == utc(2025, 6, 1, 10)


def test_max_instances() -> None:
    three = parse_schedule(recursive(ScheduleRecDaysOfWeek="*", ScheduleRecSendMaxInstance="3"))
    assert len(fires(three, utc(2025, 1, 1), 10)) == 3
    assert next_due(three, utc(2025, 1, 1), 2) == utc(2025, 1, 1, 9)
    assert next_due(three, utc(2025, 1, 1), 3) is None


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        first_due(Schedule("Immediate"), datetime(2025, 1, 1))


def test_a_rule_that_only_dst_prevents_ends_with_none() -> None:
    # 02:30 on 31 March in Berlin, only when that is not the spring-forward Sunday.
    rule = parse_schedule(
        recursive(
            ScheduleRecDaysOfMonth="31",
            ScheduleRecMonths="3",
            ScheduleRecHours="2",
            ScheduleRecMinutes="30",
            SendTimeZone=BERLIN,
        )
    )
    assert first_due(rule, utc(2024, 1, 1)) == utc(2025, 3, 31, 0, 30)  # 2024-03-31 had none
    assert first_due(rule, utc(9998, 4, 1)) is None  # no year left to search


# --- properties -----------------------------------------------------------------------

ZONES = [
    "UTC",
    BERLIN,
    NEW_YORK,
    "Australia/Lord_Howe",  # half-hour DST
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Europe/London",
]
EVERY_DAY = list(range(7))


def transitions(zone_name: str) -> list[datetime]:
    """The hours (UTC) in which the zone's offset changes, in a few sample years."""
    zone = ZoneInfo(zone_name)

    def offset(moment: datetime) -> timedelta | None:
        return moment.astimezone(zone).utcoffset()

    found: list[datetime] = []
    for year in (2018, 2024, 2037, 2050):
        day = utc(year, 1, 1)
        while day.year == year:
            if offset(day) != offset(day + timedelta(days=1)):
                found.extend(
                    hour
                    for hour in (day + timedelta(hours=n) for n in range(24))
                    if offset(hour) != offset(hour + timedelta(hours=1))
                )
            day += timedelta(days=1)
    return found


TRANSITIONS = {zone: transitions(zone) for zone in ZONES}


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schedule, datetime]:
    """Rules that always match within about two weeks, so a minute scan stays cheap.

    Starts cluster just before DST transitions, and hours and minutes lean towards
    the small hours and quarter hours in which transitions happen.
    """
    zone = draw(st.sampled_from(ZONES))
    schedule = parse_schedule(
        {
            "ScheduleType": "Recursive",
            "ScheduleRecDaysOfWeek": draw(st.one_of(st.just(EVERY_DAY), SUNDAY_BASED)),
            "ScheduleRecDaysOfMonth": draw(st.lists(st.integers(1, 31), max_size=3)),
            "ScheduleRecMonths": "*",
            "ScheduleRecHours": draw(st.lists(hours, min_size=1, max_size=4)),
            "ScheduleRecMinutes": draw(st.lists(minutes, min_size=1, max_size=4)),
            "ScheduleRecSendMaxInstance": 1000,
            "SendTimeZone": zone,
        }
    )
    near_a_transition: bool = draw(st.booleans())
    if TRANSITIONS[zone] and near_a_transition:
        transition = draw(st.sampled_from(TRANSITIONS[zone]))
        start = transition + timedelta(seconds=draw(st.integers(-36 * 3600, 2 * 3600)))
    else:
        start = draw(instants)
    return schedule, start


SUNDAY_BASED = st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True)
hours = st.one_of(st.integers(0, 23), st.integers(0, 4))
minutes = st.one_of(st.integers(0, 59), st.sampled_from([0, 15, 30, 44, 45, 59]))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2060, 1, 1),
    timezones=st.just(UTC),
)


def matches(schedule: Schedule, local: datetime) -> bool:
    day_matches = local.weekday() in schedule.days_of_week or local.day in schedule.days_of_month
    return (
        local.month in schedule.months
        and day_matches
        and local.hour in schedule.hours
        and local.minute in schedule.minutes
        and local.fold == 0  # a repeated wall time fires at its first occurrence only
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_next_due_is_the_first_matching_minute_after(case: tuple[Schedule, datetime]) -> None:
    schedule, after = case
    due = next_due(schedule, after, 0)
    assert due is not None
    assert due > after
    zone = ZoneInfo(schedule.timezone)
    assert matches(schedule, due.astimezone(zone))
    assert due - after < timedelta(days=16)
    # Brute force: no UTC minute between ``after`` and ``due`` shows a matching wall time.
    minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < due:
        assert not matches(schedule, minute.astimezone(zone)), minute
        minute += timedelta(minutes=1)
    assert first_due(schedule, due) == due
