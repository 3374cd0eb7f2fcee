"""Specification of ``TradingCalendar`` and ``MarketState``.

The oracle is ``exchange_calendars`` itself (``xcals.get_calendar(code)``), compared session by
session over 2000-2026, plus a golden answer CSV (``tests/fixtures/calendars/xnys_2023_2025.csv``,
made by ``make_golden.py`` next to it) so that a change in exchange_calendars' data or in our
wrapper shows up as a failing test with a readable diff.

Market state timeline around one XNYS session with the default windows (90 min pre-open,
180 min post-close), New York time::

    08:00 PRE_OPEN  09:30 SESSION  16:00 POST_CLOSE  19:00 CLOSED
"""

from __future__ import annotations

import csv
import functools
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prometheus_lib.calendars import MarketState, TradingCalendar
from prometheus_lib.calendars.trading_calendar import regular_close
from prometheus_lib.errors import CalendarError, NotSessionError, PrometheusError

CODES = ["XNYS", "XETR", "XTKS", "XLON", "CMES"]
YEARS = list(range(2000, 2027))
XCALS_START = "2000-01-03"  # TradingCalendar's default start; xcals' own default is 20 years back

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")

PRE_OPEN, SESSION = MarketState.PRE_OPEN, MarketState.SESSION
POST_CLOSE, CLOSED = MarketState.POST_CLOSE, MarketState.CLOSED

GOLDEN_CSV = Path(__file__).parents[2] / "fixtures" / "calendars" / "xnys_2023_2025.csv"


# ---------------------------------------------------------------- helpers


@functools.cache
def xcal(code: str) -> xcals.ExchangeCalendar:
    return xcals.get_calendar(code, start=XCALS_START)


def xcal_sessions(code: str, year: int) -> list[date]:
    sessions = xcal(code).sessions
    return [s.date() for s in sessions[sessions.year == year]]


def weekdays(start: date, end: date) -> list[date]:
    return [d.date() for d in pd.bdate_range(start, end)]


def ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK, fold=fold)


def chicago(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def tokyo(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def last_sunday(year: int, month: int) -> date:
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - 6) % 7)


def utc_offset_changes_on(day: date, tz: ZoneInfo) -> bool:
    before = datetime.combine(day, time(0, 0), tz).utcoffset()
    after = datetime.combine(day, time(12, 0), tz).utcoffset()
    return before != after


@pytest.fixture(scope="module")
def xnys() -> TradingCalendar:
    return TradingCalendar("XNYS")


@pytest.fixture(scope="module", params=CODES)
def code_and_calendar(request: pytest.FixtureRequest) -> tuple[str, TradingCalendar]:
    return request.param, TradingCalendar(request.param)


# ---------------------------------------------------------------- construction


def test_construct_with_defaults_covers_2000_to_a_year_ahead_like_exchange_calendars(
    code_and_calendar: tuple[str, TradingCalendar],
) -> None:
    # Arrange
    code, calendar = code_and_calendar

    # Act
    first, last = calendar.first_session, calendar.last_session

    # Assert
    assert first == xcal(code).first_session.date()
    assert last == xcal(code).last_session.date()
    assert first <= date(2000, 1, 10)
    assert last >= date(2026, 12, 31)
    assert str(calendar.timezone) == str(xcal(code).tz)


def test_construct_with_defaults_uses_90_minute_pre_open_and_180_minute_post_close() -> None:
    # Act
    calendar = TradingCalendar("XNYS")

    # Assert
    assert calendar.pre_open == timedelta(minutes=90)
    assert calendar.post_close == timedelta(minutes=180)
    assert repr(calendar) == f"TradingCalendar('XNYS', 2000-01-03..{calendar.last_session})"


def test_construct_with_later_start_begins_at_first_session_on_or_after_start() -> None:
    # Act
    calendar = TradingCalendar("XNYS", start=date(2020, 1, 1))

    # Assert
    assert calendar.first_session == date(2020, 1, 2)  # 2020-01-01 is New Year's Day


def test_construct_with_unknown_code_raises_calendar_error_listing_valid_codes() -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match=r"unknown calendar code 'NOPE'.*XNYS") as info:
        TradingCalendar("NOPE")
    assert isinstance(info.value, PrometheusError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("pre_open", "post_close"),
    [(timedelta(minutes=-1), timedelta(0)), (timedelta(0), timedelta(seconds=-1))],
    ids=["negative-pre-open", "negative-post-close"],
)
def test_construct_with_negative_window_raises_calendar_error(
    pre_open: timedelta, post_close: timedelta
) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match="must be >= 0"):
        TradingCalendar("XNYS", pre_open=pre_open, post_close=post_close)


# ---------------------------------------------------------------- sessions


@pytest.mark.parametrize("year", YEARS)
@pytest.mark.parametrize("code", CODES)
def test_sessions_with_whole_year_equal_exchange_calendars_sessions(code: str, year: int) -> None:
    # Arrange
    calendar = TradingCalendar(code)

    # Act
    sessions = calendar.sessions(date(year, 1, 1), date(year, 12, 31))

    # Assert
    assert sessions == xcal_sessions(code, year)
    assert all(d.weekday() < 5 for d in sessions), "a weekend is never a session"
    assert all(calendar.is_session(d) for d in sessions)


def test_sessions_with_xnys_2024_count_exactly_252(xnys: TradingCalendar) -> None:
    # Act
    sessions = xnys.sessions("2024-01-01", "2024-12-31")

    # Assert
    assert len(sessions) == 252
    assert (sessions[0], sessions[-1]) == (date(2024, 1, 2), date(2024, 12, 31))


def test_sessions_with_start_and_end_sessions_include_both_ends(xnys: TradingCalendar) -> None:
    # Act
    sessions = xnys.sessions(date(2024, 7, 1), date(2024, 7, 8))

    # Assert
    assert sessions == [date(2024, 7, d) for d in (1, 2, 3, 5, 8)]


def test_sessions_with_end_before_start_raises_calendar_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match="end 2024-01-01 is before start 2024-12-31"):
        xnys.sessions("2024-12-31", "2024-01-01")


@pytest.mark.parametrize(
    "value",
    [date(2024, 7, 5), "2024-07-05", datetime(2024, 7, 5, 10, 0), pd.Timestamp("2024-07-05")],
    ids=["date", "iso-string", "datetime", "timestamp"],
)
def test_is_session_with_any_date_like_input_answers_true_for_a_session(
    xnys: TradingCalendar, value: object
) -> None:
    # Act / Assert
    assert xnys.is_session(value) is True


@pytest.mark.parametrize(
    ("value", "message"),
    [("2024-13-01", "ISO date"), ("5 July 2024", "ISO date"), (20240705, "must be a date")],
)
def test_is_session_with_unparseable_date_raises_calendar_error(
    xnys: TradingCalendar, value: object, message: str
) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match=message):
        xnys.is_session(value)


XNYS_HOLIDAYS = [
    pytest.param(date(2024, 1, 1), id="2024-new-year"),
    pytest.param(date(2024, 3, 29), id="2024-good-friday"),
    pytest.param(date(2024, 6, 19), id="2024-juneteenth"),
    pytest.param(date(2024, 7, 4), id="2024-independence-day"),
    pytest.param(date(2024, 11, 28), id="2024-thanksgiving"),
    pytest.param(date(2024, 12, 25), id="2024-christmas"),
    pytest.param(date(2001, 9, 11), id="2001-09-11"),
    pytest.param(date(2001, 9, 12), id="2001-09-12"),
    pytest.param(date(2001, 9, 13), id="2001-09-13"),
    pytest.param(date(2001, 9, 14), id="2001-09-14"),
    pytest.param(date(2004, 6, 11), id="2004-reagan-funeral"),
    pytest.param(date(2007, 1, 2), id="2007-ford-funeral"),
    pytest.param(date(2012, 10, 29), id="2012-hurricane-sandy-day-1"),
    pytest.param(date(2012, 10, 30), id="2012-hurricane-sandy-day-2"),
    pytest.param(date(2018, 12, 5), id="2018-bush-funeral"),
    pytest.param(date(2025, 1, 9), id="2025-carter-funeral"),
]


@pytest.mark.parametrize("holiday", XNYS_HOLIDAYS)
def test_validate_session_with_xnys_holiday_raises_not_session_error_naming_date_and_holiday(
    xnys: TradingCalendar, holiday: date
) -> None:
    # Arrange
    assert not xcal("XNYS").is_session(holiday), "the oracle agrees it is a holiday"

    # Act / Assert
    assert xnys.is_session(holiday) is False
    message = rf"{holiday.isoformat()} is not a XNYS session \(a holiday\)"
    with pytest.raises(NotSessionError, match=message):
        xnys.validate_session(holiday)


@pytest.mark.parametrize("weekend_day", [date(2024, 7, 6), date(2024, 7, 7), "2001-09-15"])
def test_validate_session_with_weekend_raises_not_session_error_saying_weekend(
    xnys: TradingCalendar, weekend_day: date | str
) -> None:
    # Act / Assert
    assert xnys.is_session(weekend_day) is False
    with pytest.raises(NotSessionError, match=r"is not a XNYS session \(a weekend\)") as info:
        xnys.validate_session(weekend_day)
    assert str(weekend_day) in str(info.value)


def test_validate_session_with_not_session_error_is_also_a_value_error(
    xnys: TradingCalendar,
) -> None:
    # Act / Assert
    with pytest.raises(ValueError, match="2024-12-25"):
        xnys.validate_session("2024-12-25")


def test_validate_session_with_session_returns_it_as_a_date(xnys: TradingCalendar) -> None:
    # Act
    result = xnys.validate_session("2001-09-17")  # markets reopened after 9/11

    # Assert
    assert result == date(2001, 9, 17)


@pytest.mark.parametrize(
    "outside",
    [date(1999, 12, 31), date(1995, 6, 1), date(2030, 1, 2)],
    ids=["day-before-first", "long-before", "after-last"],
)
def test_validate_session_with_date_outside_calendar_raises_calendar_error_not_holiday(
    xnys: TradingCalendar, outside: date
) -> None:
    # Act / Assert
    assert xnys.is_session(outside) is False
    message = rf"date {outside} is outside calendar XNYS's range"
    with pytest.raises(CalendarError, match=message) as info:
        xnys.validate_session(outside)
    assert not isinstance(info.value, NotSessionError)


@pytest.mark.parametrize("year", YEARS)
@pytest.mark.parametrize("code", CODES)
def test_non_session_weekdays_with_whole_year_equal_weekdays_not_in_exchange_calendars(
    code: str, year: int
) -> None:
    # Arrange
    calendar = TradingCalendar(code)
    start, end = max(date(year, 1, 1), calendar.first_session), date(year, 12, 31)
    expected = sorted(set(weekdays(start, end)) - set(xcal_sessions(code, year)))

    # Act
    holidays = calendar.non_session_weekdays(start, end)

    # Assert
    assert holidays == expected


def test_non_session_weekdays_with_xnys_2024_list_the_ten_exchange_holidays(
    xnys: TradingCalendar,
) -> None:
    # Act
    holidays = xnys.non_session_weekdays("2024-01-01", "2024-12-31")

    # Assert
    assert holidays == [
        date(2024, 1, 1),
        date(2024, 1, 15),
        date(2024, 2, 19),
        date(2024, 3, 29),
        date(2024, 5, 27),
        date(2024, 6, 19),
        date(2024, 7, 4),
        date(2024, 9, 2),
        date(2024, 11, 28),
        date(2024, 12, 25),
    ]
    assert len(weekdays(date(2024, 1, 1), date(2024, 12, 31))) - len(holidays) == 252


def test_non_session_weekdays_with_range_across_year_end_list_both_years_holidays(
    xnys: TradingCalendar,
) -> None:
    # Act
    holidays = xnys.non_session_weekdays(date(2024, 12, 20), date(2025, 1, 10))

    # Assert
    assert holidays == [date(2024, 12, 25), date(2025, 1, 1), date(2025, 1, 9)]


@pytest.mark.parametrize(
    ("start", "end"),
    [(date(1999, 12, 1), date(2000, 1, 31)), (date(2027, 1, 1), date(2028, 12, 31))],
    ids=["before-first-session", "after-last-session"],
)
def test_non_session_weekdays_with_range_outside_calendar_raises_calendar_error(
    xnys: TradingCalendar, start: date, end: date
) -> None:
    # Weekdays the calendar does not cover must not be reported as holidays.
    # Act / Assert
    with pytest.raises(CalendarError, match="outside calendar XNYS's range"):
        xnys.non_session_weekdays(start, end)


# ---------------------------------------------------------------- next / previous / offset


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        pytest.param(date(2024, 12, 31), date(2025, 1, 2), id="year-end-over-new-year"),
        pytest.param(date(2024, 12, 24), date(2024, 12, 26), id="over-christmas"),
        pytest.param(date(2024, 5, 24), date(2024, 5, 28), id="memorial-day-long-weekend"),
        pytest.param(date(2024, 8, 30), date(2024, 9, 3), id="labor-day-long-weekend"),
        pytest.param(date(2024, 7, 6), date(2024, 7, 8), id="from-saturday"),
        pytest.param(date(2024, 7, 4), date(2024, 7, 5), id="from-holiday"),
        pytest.param(date(2001, 9, 10), date(2001, 9, 17), id="over-9-11-closure"),
        pytest.param(date(2012, 10, 26), date(2012, 10, 31), id="over-hurricane-sandy"),
        pytest.param(date(2025, 1, 8), date(2025, 1, 10), id="over-carter-funeral"),
    ],
)
def test_next_session_with_xnys_date_returns_first_session_strictly_after(
    xnys: TradingCalendar, day: date, expected: date
) -> None:
    # Act / Assert
    assert xnys.next_session(day) == expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        pytest.param(date(2025, 1, 2), date(2024, 12, 31), id="year-start-over-new-year"),
        pytest.param(date(2024, 12, 26), date(2024, 12, 24), id="over-christmas"),
        pytest.param(date(2024, 9, 3), date(2024, 8, 30), id="labor-day-long-weekend"),
        pytest.param(date(2024, 1, 16), date(2024, 1, 12), id="mlk-day-long-weekend"),
        pytest.param(date(2024, 12, 25), date(2024, 12, 24), id="from-holiday"),
        pytest.param(date(2024, 7, 7), date(2024, 7, 5), id="from-sunday"),
        pytest.param(date(2001, 9, 17), date(2001, 9, 10), id="over-9-11-closure"),
        pytest.param(date(2012, 10, 31), date(2012, 10, 26), id="over-hurricane-sandy"),
    ],
)
def test_previous_session_with_xnys_date_returns_last_session_strictly_before(
    xnys: TradingCalendar, day: date, expected: date
) -> None:
    # Act / Assert
    assert xnys.previous_session(day) == expected


@pytest.mark.parametrize("code", CODES)
def test_next_and_previous_session_with_every_day_2000_to_2026_equal_exchange_calendars(
    code: str,
) -> None:
    # Arrange
    calendar, oracle = TradingCalendar(code), xcal(code)
    days = pd.date_range(oracle.first_session + pd.Timedelta(days=1), "2026-12-31")

    # Act
    mismatches = []
    for ts in days:
        day = ts.date()
        if oracle.is_session(ts):
            expected_next, expected_previous = oracle.next_session(ts), oracle.previous_session(ts)
        else:
            expected_next = oracle.date_to_session(ts, "next")
            expected_previous = oracle.date_to_session(ts, "previous")
        got = (calendar.next_session(day), calendar.previous_session(day))
        if got != (expected_next.date(), expected_previous.date()):
            mismatches.append((day, got, expected_next.date(), expected_previous.date()))

    # Assert
    assert mismatches == []


def test_next_session_with_last_session_raises_calendar_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match="no XNYS session after"):
        xnys.next_session(xnys.last_session)


def test_previous_session_with_first_session_raises_calendar_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match="no XNYS session before 2000-01-03"):
        xnys.previous_session(xnys.first_session)


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        pytest.param(date(2024, 12, 31), 1, date(2025, 1, 2), id="forward-over-year-end"),
        pytest.param(date(2025, 1, 2), -1, date(2024, 12, 31), id="back-over-year-end"),
        pytest.param(date(2024, 12, 24), 1, date(2024, 12, 26), id="forward-over-christmas"),
        pytest.param(date(2024, 5, 24), 1, date(2024, 5, 28), id="forward-over-long-weekend"),
        pytest.param(date(2024, 7, 5), 0, date(2024, 7, 5), id="zero-is-identity"),
        pytest.param(date(2024, 1, 2), 251, date(2024, 12, 31), id="last-of-252-in-2024"),
        pytest.param(date(2024, 1, 2), 252, date(2025, 1, 2), id="a-trading-year-on"),
        pytest.param(date(2001, 9, 10), 1, date(2001, 9, 17), id="over-9-11-closure"),
    ],
)
def test_session_offset_with_xnys_session_counts_sessions_not_days(
    xnys: TradingCalendar, day: date, n: int, expected: date
) -> None:
    # Act
    result = xnys.session_offset(day, n)

    # Assert
    assert result == expected
    assert result == xcal("XNYS").session_offset(pd.Timestamp(day), n).date()


def test_session_offset_with_non_session_raises_not_session_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(NotSessionError, match="2024-07-04"):
        xnys.session_offset("2024-07-04", 1)


@pytest.mark.parametrize(("which", "n"), [("first", -1), ("last", 1)])
def test_session_offset_with_result_outside_calendar_raises_calendar_error(
    xnys: TradingCalendar, which: str, n: int
) -> None:
    # Arrange
    day = xnys.first_session if which == "first" else xnys.last_session

    # Act / Assert
    with pytest.raises(CalendarError, match=f"offset by {n} falls outside calendar XNYS"):
        xnys.session_offset(day, n)


@settings(max_examples=150, deadline=None)
@given(
    code=st.sampled_from(CODES),
    index=st.integers(min_value=300, max_value=6500),
    n=st.integers(min_value=-250, max_value=250),
)
def test_session_offset_with_random_session_and_n_equals_exchange_calendars_and_round_trips(
    code: str, index: int, n: int
) -> None:
    # Arrange
    calendar, oracle = TradingCalendar(code), xcal(code)
    session = oracle.sessions[index]

    # Act
    result = calendar.session_offset(session.date(), n)

    # Assert
    assert result == oracle.session_offset(session, n).date()
    assert calendar.session_offset(result, -n) == session.date()


# ---------------------------------------------------------------- opens, closes, early closes


@pytest.mark.parametrize("code", CODES)
def test_session_open_and_close_with_every_session_2000_to_2026_equal_exchange_calendars(
    code: str,
) -> None:
    # Arrange
    calendar, oracle = TradingCalendar(code), xcal(code)
    sessions = oracle.sessions[oracle.sessions.year <= 2026]
    opens = oracle.opens[sessions].dt.tz_convert(oracle.tz)
    closes = oracle.closes[sessions].dt.tz_convert(oracle.tz)

    # Act
    mismatches = []
    for session, expected_open, expected_close in zip(sessions, opens, closes, strict=True):
        got_open = calendar.session_open(session.date())
        got_close = calendar.session_close(session.date())
        # isoformat compares wall time and UTC offset, not just the instant.
        if (got_open.isoformat(), got_close.isoformat()) != (
            expected_open.isoformat(),
            expected_close.isoformat(),
        ):
            mismatches.append((session.date(), got_open, got_close, expected_open, expected_close))

    # Assert
    assert mismatches == []
    assert calendar.session_open(sessions[-1].date()).tzinfo == ZoneInfo(str(oracle.tz))


def test_session_open_with_non_session_raises_not_session_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(NotSessionError, match="2024-07-04"):
        xnys.session_open(date(2024, 7, 4))
    with pytest.raises(NotSessionError, match="2024-07-06"):
        xnys.session_close(date(2024, 7, 6))


@pytest.mark.parametrize(
    ("switch_sunday", "offset_before", "offset_after"),
    [
        *(pytest.param(nth_sunday(y, 3, 2), -5, -4, id=f"{y}-spring") for y in range(2007, 2027)),
        *(pytest.param(nth_sunday(y, 11, 1), -4, -5, id=f"{y}-autumn") for y in range(2007, 2027)),
    ],
)
def test_session_open_with_us_dst_switch_stays_0930_local_while_utc_offset_changes(
    xnys: TradingCalendar, switch_sunday: date, offset_before: int, offset_after: int
) -> None:
    # Arrange: US DST (since 2007) starts the 2nd Sunday of March, ends the 1st of November.
    assert utc_offset_changes_on(switch_sunday, NEW_YORK)
    before, after = xnys.previous_session(switch_sunday), xnys.next_session(switch_sunday)

    # Act
    open_before, open_after = xnys.session_open(before), xnys.session_open(after)

    # Assert
    assert open_before.time() == open_after.time() == time(9, 30)
    assert open_before.utcoffset() == timedelta(hours=offset_before)
    assert open_after.utcoffset() == timedelta(hours=offset_after)
    assert open_after.astimezone(UTC).time() != open_before.astimezone(UTC).time()


@pytest.mark.parametrize(
    ("switch_sunday", "offset_before", "offset_after"),
    [
        *(pytest.param(last_sunday(y, 3), 1, 2, id=f"{y}-spring") for y in range(2000, 2027)),
        *(pytest.param(last_sunday(y, 10), 2, 1, id=f"{y}-autumn") for y in range(2000, 2027)),
    ],
)
def test_session_open_with_eu_dst_switch_stays_0900_local_on_xetr_while_utc_offset_changes(
    switch_sunday: date, offset_before: int, offset_after: int
) -> None:
    # Arrange: EU summer time runs from the last Sunday of March to the last Sunday of October.
    calendar = TradingCalendar("XETR")
    assert utc_offset_changes_on(switch_sunday, BERLIN)
    before, after = calendar.previous_session(switch_sunday), calendar.next_session(switch_sunday)

    # Act
    open_before, open_after = calendar.session_open(before), calendar.session_open(after)

    # Assert
    assert open_before.time() == open_after.time() == time(9, 0)
    assert open_before.utcoffset() == timedelta(hours=offset_before)
    assert open_after.utcoffset() == timedelta(hours=offset_after)


@pytest.mark.parametrize(
    ("session", "close"),
    [
        (date(2024, 7, 3), time(13, 0)),
        (date(2024, 11, 29), time(13, 0)),
        (date(2024, 12, 24), time(13, 0)),
        (date(2024, 7, 5), time(16, 0)),
    ],
)
def test_session_close_with_xnys_2024_session_closes_at_expected_local_time(
    xnys: TradingCalendar, session: date, close: time
) -> None:
    # Act / Assert
    assert xnys.session_close(session).time() == close
    assert xnys.is_early_close(session) is (close != time(16, 0))


def test_early_closes_with_xnys_2024_are_july_3_black_friday_and_christmas_eve(
    xnys: TradingCalendar,
) -> None:
    # Act
    early = xnys.early_closes("2024-01-01", "2024-12-31")

    # Assert
    assert early == [date(2024, 7, 3), date(2024, 11, 29), date(2024, 12, 24)]


@pytest.mark.parametrize("code", CODES)
def test_early_closes_and_is_early_close_with_each_year_equal_exchange_calendars(
    code: str,
) -> None:
    # Arrange
    calendar, oracle = TradingCalendar(code), xcal(code)
    oracle_early = {d.date() for d in oracle.early_closes}

    for year in YEARS:
        # Act
        early = calendar.early_closes(date(year, 1, 1), date(year, 12, 31))
        flags = {d: calendar.is_early_close(d) for d in xcal_sessions(code, year)}

        # Assert
        assert early == sorted(d for d in oracle_early if d.year == year), year
        assert {d for d, flag in flags.items() if flag} == set(early), year


def test_is_early_close_with_non_session_raises_not_session_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(NotSessionError, match="2024-07-04"):
        xnys.is_early_close("2024-07-04")


@pytest.mark.parametrize(
    ("code", "close"),
    [("XNYS", time(16, 0)), ("XETR", time(17, 30)), ("XLON", time(16, 30)), ("XTKS", time(15, 30))],
)
def test_regular_close_with_calendar_returns_latest_regular_local_close(
    code: str, close: time
) -> None:
    # XTKS moved its close from 15:00 to 15:30 on 2024-11-05; the latest rule wins.
    # Act / Assert
    assert regular_close(TradingCalendar(code)) == close


# ---------------------------------------------------------------- golden answer CSV


def golden_rows() -> list[dict[str, str]]:
    with GOLDEN_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def test_sessions_with_2023_to_2025_equal_golden_csv(xnys: TradingCalendar) -> None:
    # Arrange
    expected = [date.fromisoformat(row["session_date"]) for row in golden_rows()]

    # Act
    sessions = xnys.sessions("2023-01-01", "2025-12-31")

    # Assert
    assert sessions == expected
    assert sum(d.year == 2024 for d in expected) == 252


def test_session_times_and_early_close_with_each_golden_row_equal_golden_csv(
    xnys: TradingCalendar,
) -> None:
    # Act
    mismatches = []
    for row in golden_rows():
        session = date.fromisoformat(row["session_date"])
        got = {
            "session_date": row["session_date"],
            "open_local": xnys.session_open(session).isoformat(),
            "close_local": xnys.session_close(session).isoformat(),
            "early_close": "true" if xnys.is_early_close(session) else "false",
        }
        if got != row:
            mismatches.append((row, got))

    # Assert
    assert mismatches == []


def test_golden_csv_with_exchange_calendars_today_still_matches_its_data() -> None:
    # Separates "exchange_calendars' data changed" from "our wrapper changed" when the
    # golden tests above fail. Regenerate with make_golden.py only after reviewing the diff.
    # Arrange
    oracle = xcal("XNYS")
    sessions = oracle.sessions_in_range("2023-01-01", "2025-12-31")

    # Act
    rows = [
        {
            "session_date": s.date().isoformat(),
            "open_local": oracle.opens[s].tz_convert(oracle.tz).isoformat(),
            "close_local": oracle.closes[s].tz_convert(oracle.tz).isoformat(),
            "early_close": "true" if s in oracle.early_closes else "false",
        }
        for s in sessions
    ]

    # Assert
    assert rows == golden_rows()


# ---------------------------------------------------------------- market state


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(ny(2024, 3, 5, 2, 0), CLOSED, id="overnight"),
        pytest.param(ny(2024, 3, 5, 7, 59, 59), CLOSED, id="just-before-pre-open"),
        pytest.param(ny(2024, 3, 5, 8, 0), PRE_OPEN, id="pre-open-starts-90-min-early"),
        pytest.param(ny(2024, 3, 5, 9, 29, 59), PRE_OPEN, id="last-second-of-pre-open"),
        pytest.param(ny(2024, 3, 5, 9, 30), SESSION, id="at-open"),
        pytest.param(ny(2024, 3, 5, 12, 0), SESSION, id="midday"),
        pytest.param(ny(2024, 3, 5, 15, 59, 59), SESSION, id="last-second-of-session"),
        pytest.param(ny(2024, 3, 5, 16, 0), POST_CLOSE, id="at-close"),
        pytest.param(ny(2024, 3, 5, 18, 59, 59), POST_CLOSE, id="end-of-post-close"),
        pytest.param(ny(2024, 3, 5, 19, 0), CLOSED, id="post-close-ends-180-min-on"),
        pytest.param(ny(2024, 3, 5, 23, 59), CLOSED, id="late-evening"),
        pytest.param(ny(2024, 7, 3, 12, 59, 59), SESSION, id="early-close-day-12-59"),
        pytest.param(ny(2024, 7, 3, 13, 0), POST_CLOSE, id="early-close-at-13h"),
        pytest.param(ny(2024, 7, 3, 15, 59, 59), POST_CLOSE, id="early-close-post-window"),
        pytest.param(ny(2024, 7, 3, 16, 0), CLOSED, id="early-close-post-window-over"),
        pytest.param(ny(2024, 7, 4, 10, 0), CLOSED, id="holiday-independence-day"),
        pytest.param(ny(2024, 12, 25, 9, 0), CLOSED, id="holiday-christmas-pre-open-hour"),
        pytest.param(ny(2018, 12, 5, 11, 0), CLOSED, id="holiday-bush-funeral"),
        pytest.param(ny(2012, 10, 29, 11, 0), CLOSED, id="hurricane-sandy"),
        pytest.param(ny(2024, 7, 6, 11, 0), CLOSED, id="saturday"),
        pytest.param(ny(2024, 7, 7, 9, 0), CLOSED, id="sunday-pre-open-hour"),
        pytest.param(ny(2024, 7, 8, 8, 30), PRE_OPEN, id="monday-after-weekend"),
        pytest.param(ny(2025, 1, 2, 9, 0), PRE_OPEN, id="first-session-of-year"),
    ],
)
def test_market_state_with_xnys_instant_returns_state_of_the_daily_cycle(
    xnys: TradingCalendar, at: datetime, expected: MarketState
) -> None:
    # Act
    state = xnys.market_state(at)

    # Assert
    assert state is expected


@pytest.mark.parametrize("tz", [UTC, TOKYO, BERLIN, ZoneInfo("Australia/Sydney")])
@pytest.mark.parametrize(
    "at",
    [ny(2024, 3, 5, 8, 0), ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16, 0), ny(2024, 3, 5, 19, 0)],
    ids=["pre-open", "session", "post-close", "closed"],
)
def test_market_state_with_same_instant_in_another_time_zone_gives_same_state(
    xnys: TradingCalendar, at: datetime, tz: ZoneInfo
) -> None:
    # Act / Assert
    assert xnys.market_state(at.astimezone(tz)) is xnys.market_state(at)
    assert xnys.market_state(pd.Timestamp(at).tz_convert(tz)) is xnys.market_state(at)


@pytest.mark.parametrize(
    ("pre_minutes", "post_minutes", "at", "expected"),
    [
        pytest.param(0, 0, ny(2024, 3, 5, 9, 29, 59), CLOSED, id="no-windows-before-open"),
        pytest.param(0, 0, ny(2024, 3, 5, 9, 30), SESSION, id="no-windows-at-open"),
        pytest.param(0, 0, ny(2024, 3, 5, 16, 0), CLOSED, id="no-windows-at-close"),
        pytest.param(180, 0, ny(2024, 3, 5, 6, 30), PRE_OPEN, id="3h-pre-open"),
        pytest.param(180, 0, ny(2024, 3, 5, 6, 29, 59), CLOSED, id="before-3h-pre-open"),
        pytest.param(90, 30, ny(2024, 3, 5, 16, 29, 59), POST_CLOSE, id="30m-post-close"),
        pytest.param(90, 30, ny(2024, 3, 5, 16, 30), CLOSED, id="after-30m-post-close"),
        pytest.param(10, 180, ny(2024, 3, 5, 8, 0), CLOSED, id="10m-pre-open-at-8h"),
    ],
)
def test_market_state_with_custom_windows_moves_pre_open_and_post_close_boundaries(
    pre_minutes: int, post_minutes: int, at: datetime, expected: MarketState
) -> None:
    # Arrange
    calendar = TradingCalendar(
        "XNYS", pre_open=timedelta(minutes=pre_minutes), post_close=timedelta(minutes=post_minutes)
    )

    # Act / Assert
    assert calendar.market_state(at) is expected


def test_market_state_with_naive_datetime_raises_calendar_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    message = "at must be timezone-aware, was naive 2024-03-05T10:00:00"
    with pytest.raises(CalendarError, match=message):
        xnys.market_state(datetime(2024, 3, 5, 10, 0))


@pytest.mark.parametrize(
    "at",
    [utc(1999, 6, 1, 15, 0), utc(2030, 6, 3, 15, 0)],
    ids=["before-calendar", "after-calendar"],
)
def test_market_state_with_instant_outside_calendar_raises_calendar_error(
    xnys: TradingCalendar, at: datetime
) -> None:
    # CLOSED would be a guess there: the calendar does not know those sessions.
    # Act / Assert
    with pytest.raises(CalendarError, match="outside calendar XNYS's range"):
        xnys.market_state(at)
    with pytest.raises(CalendarError, match="outside calendar XNYS's range"):
        xnys.session_at(at)


@pytest.mark.parametrize(
    ("at_utc", "expected"),
    [
        # Friday before spring forward: EST, open 09:30 = 14:30 UTC.
        pytest.param(datetime(2024, 3, 8, 13, 30), PRE_OPEN, id="fri-0830-est"),
        pytest.param(datetime(2024, 3, 8, 14, 30), SESSION, id="fri-0930-est"),
        # The switch Sunday itself (02:00 -> 03:00 local) is closed all day.
        pytest.param(datetime(2024, 3, 10, 7, 30), CLOSED, id="sun-0330-edt"),
        pytest.param(datetime(2024, 3, 10, 14, 30), CLOSED, id="sun-1030-edt"),
        # Monday after: EDT, open 09:30 = 13:30 UTC.
        pytest.param(datetime(2024, 3, 11, 12, 0), PRE_OPEN, id="mon-0800-edt"),
        pytest.param(datetime(2024, 3, 11, 13, 30), SESSION, id="mon-0930-edt"),
        pytest.param(datetime(2024, 3, 11, 20, 0), POST_CLOSE, id="mon-1600-edt"),
        # Autumn: Friday EDT open 13:30 UTC, Monday EST open 14:30 UTC.
        pytest.param(datetime(2024, 11, 1, 13, 30), SESSION, id="fri-0930-edt"),
        pytest.param(datetime(2024, 11, 4, 13, 30), PRE_OPEN, id="mon-0830-est"),
        pytest.param(datetime(2024, 11, 4, 14, 30), SESSION, id="mon-0930-est"),
        pytest.param(datetime(2024, 11, 4, 21, 0), POST_CLOSE, id="mon-1600-est"),
    ],
)
def test_market_state_with_dst_switch_follows_local_0930_open_not_utc(
    xnys: TradingCalendar, at_utc: datetime, expected: MarketState
) -> None:
    # Act / Assert
    assert xnys.market_state(at_utc.replace(tzinfo=UTC)) is expected


@pytest.mark.parametrize("fold", [0, 1])
def test_market_state_with_ambiguous_fall_back_hour_on_switch_sunday_is_closed(
    xnys: TradingCalendar, fold: int
) -> None:
    # Arrange: 01:30 happens twice on 2024-11-03 in New York.
    at = ny(2024, 11, 3, 1, 30, fold=fold)

    # Act / Assert
    assert xnys.market_state(at) is MarketState.CLOSED


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(berlin(2024, 3, 28, 8, 30), PRE_OPEN, id="thu-cet-pre-open"),
        pytest.param(berlin(2024, 3, 28, 9, 0), SESSION, id="thu-cet-open"),
        pytest.param(berlin(2024, 3, 29, 10, 0), CLOSED, id="good-friday"),
        pytest.param(berlin(2024, 3, 31, 10, 0), CLOSED, id="switch-sunday"),
        pytest.param(berlin(2024, 4, 1, 10, 0), CLOSED, id="easter-monday"),
        pytest.param(utc(2024, 4, 2, 7, 0), SESSION, id="tue-cest-open-is-07-utc"),
        pytest.param(utc(2024, 4, 2, 6, 59), PRE_OPEN, id="tue-cest-just-before-open"),
    ],
)
def test_market_state_with_xetr_around_eu_dst_switch_follows_local_0900_open(
    at: datetime, expected: MarketState
) -> None:
    # Act / Assert
    assert TradingCalendar("XETR").market_state(at) is expected


def test_market_state_with_xtks_lunch_break_counts_break_as_session() -> None:
    # Arrange: Tokyo breaks 11:30-12:30; a session under way stays SESSION (documented choice),
    # unlike exchange_calendars' is_open_on_minute, which says closed during the break.
    calendar = TradingCalendar("XTKS")
    at = tokyo(2024, 6, 3, 12, 0)
    oracle = xcal("XTKS")
    assert oracle.break_starts[pd.Timestamp("2024-06-03")] <= pd.Timestamp(at)
    assert not oracle.is_open_on_minute(pd.Timestamp(at))

    # Act
    state = calendar.market_state(at)

    # Assert
    assert state is MarketState.SESSION
    assert calendar.session_at(at) == date(2024, 6, 3)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(chicago(2024, 7, 3, 17, 0), SESSION, id="close-is-next-open"),
        pytest.param(chicago(2024, 7, 4, 11, 59), SESSION, id="before-early-close"),
        pytest.param(chicago(2024, 7, 4, 12, 0), POST_CLOSE, id="early-close-at-noon"),
        pytest.param(chicago(2024, 7, 4, 14, 59), POST_CLOSE, id="end-of-post-close"),
        pytest.param(chicago(2024, 7, 4, 15, 15), CLOSED, id="gap-between-windows"),
        pytest.param(chicago(2024, 7, 4, 15, 30), PRE_OPEN, id="evening-pre-open"),
        pytest.param(chicago(2024, 7, 6, 12, 0), CLOSED, id="saturday"),
        pytest.param(chicago(2024, 7, 7, 17, 0), SESSION, id="sunday-evening-open"),
    ],
)
def test_market_state_with_cmes_round_the_clock_market_returns_expected_state(
    at: datetime, expected: MarketState
) -> None:
    # Act / Assert
    assert TradingCalendar("CMES").market_state(at) is expected


def test_market_state_with_overlapping_windows_prefers_post_close_over_pre_open() -> None:
    # Arrange: CMES closes 12:00 CT on 2024-07-04 and reopens 17:00; a 4 h post-close window
    # (to 16:00) overlaps the 90 min pre-open window (from 15:30).
    calendar = TradingCalendar("CMES", post_close=timedelta(hours=4))
    at = chicago(2024, 7, 4, 15, 45)

    # Act
    state = calendar.market_state(at)

    # Assert
    assert state is MarketState.POST_CLOSE


def test_market_state_with_post_close_overlapping_next_open_prefers_session() -> None:
    # Arrange: a 12 h post-close window runs well into the next CMES session.
    calendar = TradingCalendar("CMES", post_close=timedelta(hours=12))

    # Act / Assert
    assert calendar.market_state(chicago(2024, 7, 4, 18, 0)) is MarketState.SESSION


# ---------------------------------------------------------------- session_at / last_closed_session


@pytest.mark.parametrize(
    ("code", "at", "expected"),
    [
        pytest.param("XNYS", ny(2024, 7, 3, 9, 30), date(2024, 7, 3), id="xnys-at-open"),
        pytest.param("XNYS", ny(2024, 7, 3, 12, 59), date(2024, 7, 3), id="xnys-pre-early-close"),
        pytest.param("XNYS", ny(2024, 7, 3, 13, 0), None, id="xnys-post-close"),
        pytest.param("XNYS", ny(2024, 7, 5, 9, 0), None, id="xnys-pre-open"),
        pytest.param("XNYS", ny(2024, 7, 4, 12, 0), None, id="xnys-holiday"),
        pytest.param("CMES", chicago(2024, 7, 3, 18, 0), date(2024, 7, 4), id="cmes-evening"),
        pytest.param("XTKS", tokyo(2024, 6, 3, 9, 0), date(2024, 6, 3), id="xtks-open"),
    ],
)
def test_session_at_with_instant_returns_session_under_way_or_none(
    code: str, at: datetime, expected: date | None
) -> None:
    # Act / Assert
    assert TradingCalendar(code).session_at(at) == expected


def test_session_at_with_naive_datetime_raises_calendar_error(xnys: TradingCalendar) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match="timezone-aware"):
        xnys.session_at(datetime(2024, 7, 3, 10, 0))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(ny(2024, 7, 3, 13, 0), date(2024, 7, 3), id="at-early-close-counts"),
        pytest.param(ny(2024, 7, 3, 12, 59, 59), date(2024, 7, 2), id="just-before-early-close"),
        pytest.param(ny(2024, 7, 4, 12, 0), date(2024, 7, 3), id="on-holiday"),
        pytest.param(ny(2024, 7, 5, 10, 0), date(2024, 7, 3), id="during-session-after-holiday"),
        pytest.param(ny(2024, 7, 7, 20, 0), date(2024, 7, 5), id="sunday-evening"),
        pytest.param(ny(2025, 1, 2, 8, 0), date(2024, 12, 31), id="across-year-end"),
    ],
)
def test_last_closed_session_with_xnys_instant_returns_latest_session_closed_by_then(
    xnys: TradingCalendar, at: datetime, expected: date
) -> None:
    # Act / Assert
    assert xnys.last_closed_session(at) == expected


def test_last_closed_session_with_naive_datetime_raises_calendar_error(
    xnys: TradingCalendar,
) -> None:
    # A naive datetime would otherwise be read in the host's local time zone.
    # Act / Assert
    with pytest.raises(CalendarError, match="timezone-aware"):
        xnys.last_closed_session(datetime(2024, 7, 3, 13, 0))


@pytest.mark.parametrize(
    "at",
    [ny(2000, 1, 3, 12, 0), utc(2030, 6, 3, 15, 0)],
    ids=["before-first-close", "after-calendar"],
)
def test_last_closed_session_with_no_known_answer_raises_calendar_error(
    xnys: TradingCalendar, at: datetime
) -> None:
    # Act / Assert
    with pytest.raises(CalendarError, match="XNYS"):
        xnys.last_closed_session(at)


# ---------------------------------------------------------------- property


def expected_state(
    code: str, at: datetime, pre: timedelta, post: timedelta
) -> tuple[MarketState, date | None]:
    """Market state from exchange_calendars' own opens/closes, by the documented priority."""
    oracle, t = xcal(code), pd.Timestamp(at)
    day = t.tz_convert(None).normalize()
    nearby = oracle.sessions_in_range(day - pd.Timedelta(days=5), day + pd.Timedelta(days=5))
    spans = [(s.date(), oracle.session_open(s), oracle.session_close(s)) for s in nearby]
    under_way = [s for s, o, c in spans if o <= t < c]
    if under_way:
        return MarketState.SESSION, under_way[0]
    if any(c <= t < c + post for _, _, c in spans):
        return MarketState.POST_CLOSE, None
    if any(o - pre <= t < o for _, o, _ in spans):
        return MarketState.PRE_OPEN, None
    return MarketState.CLOSED, None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    code=st.sampled_from(CODES),
    at=st.datetimes(
        min_value=datetime(2005, 1, 1),
        max_value=datetime(2026, 12, 31, 23, 59, 59),
        timezones=st.sampled_from([UTC, NEW_YORK, BERLIN, TOKYO]),
        allow_imaginary=False,
    ),
    pre_minutes=st.sampled_from([0, 1, 90, 240, 600]),
    post_minutes=st.sampled_from([0, 1, 180, 300, 720]),
)
def test_market_state_with_random_instant_2005_to_2026_matches_exchange_calendars(
    code: str, at: datetime, pre_minutes: int, post_minutes: int
) -> None:
    # Arrange
    pre, post = timedelta(minutes=pre_minutes), timedelta(minutes=post_minutes)
    calendar = TradingCalendar(code, pre_open=pre, post_close=post)
    want_state, want_session = expected_state(code, at, pre, post)

    # Act
    state = calendar.market_state(at)
    session = calendar.session_at(at)

    # Assert: exactly one state holds, SESSION iff some session's open <= at < close.
    assert sum(state is s for s in MarketState) == 1
    assert (state is MarketState.SESSION) == (want_state is MarketState.SESSION)
    assert state is want_state
    assert session == want_session
