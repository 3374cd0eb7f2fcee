"""Dagster partitions that are exactly an exchange's trading sessions."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg

from prometheus_lib.calendars import TradingCalendar

SESSION_FMT = "%Y-%m-%d"


def session_partitions(calendar: TradingCalendar, start: date) -> dg.TimeWindowPartitionsDefinition:
    """Return partitions whose keys are ``calendar``'s sessions from ``start`` on.

    A weekday cron in the exchange's time zone with every weekday holiday excluded: weekends
    and holidays are never partition keys. Holidays come from exchange_calendars, which knows
    them about a year ahead. ``end_offset=1`` makes the current session a key as soon as it
    starts (a weekday-cron window for Friday would otherwise only close on Monday, dagster
    #17464); sensors guard with the calendar before launching a session's run.
    """
    start = calendar.validate_session(start) if calendar.is_session(start) else calendar.next_session(start)
    holidays = calendar.non_session_weekdays(start, calendar.last_session)
    return dg.TimeWindowPartitionsDefinition(
        start=datetime.combine(start, datetime.min.time()),
        cron_schedule="0 0 * * 1-5",
        fmt=SESSION_FMT,
        timezone=str(calendar.timezone),
        exclusions=[datetime.combine(d, datetime.min.time()) for d in holidays],
        end_offset=1,
    )


def keys_to_sessions(keys: list[str] | tuple[str, ...]) -> list[date]:
    """Turn partition keys into session dates."""
    return [datetime.strptime(k, SESSION_FMT).date() for k in keys]
