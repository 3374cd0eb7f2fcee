"""Exchange trading calendars: sessions, open/close times, early closes and market state.

A thin, typed layer over ``exchange_calendars``: it answers in ``datetime.date`` for sessions
and in the exchange's own time zone for open/close instants, and adds the platform's market
state (PRE_OPEN, SESSION, POST_CLOSE, CLOSED) with configurable pre-open / post-close windows.
"""

from __future__ import annotations

import enum
import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from prometheus_lib.errors import CalendarError, NotSessionError

DEFAULT_START = date(2000, 1, 3)


class MarketState(str, enum.Enum):
    """Where a market is in its daily cycle at an instant."""

    PRE_OPEN = "PRE_OPEN"
    SESSION = "SESSION"
    POST_CLOSE = "POST_CLOSE"
    CLOSED = "CLOSED"


def _as_date(value: date | datetime | str | pd.Timestamp, name: str = "date") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise CalendarError(f"{name} must be an ISO date (YYYY-MM-DD), was {value!r}") from None
    raise CalendarError(f"{name} must be a date, was {value!r} ({type(value).__name__})")


def _utc_ns(at: datetime) -> np.datetime64:
    # A naive datetime would be read as the host's local time by astimezone: refuse it.
    if at.tzinfo is None or at.utcoffset() is None:
        raise CalendarError(f"at must be timezone-aware, was naive {at.isoformat()}")
    return np.datetime64(at.astimezone(ZoneInfo("UTC")).replace(tzinfo=None), "ns")


@functools.lru_cache(maxsize=32)
def _load(code: str, start: date) -> xcals.ExchangeCalendar:
    try:
        return xcals.get_calendar(code, start=pd.Timestamp(start))
    except xcals.errors.InvalidCalendarName:
        valid = ", ".join(sorted(c for c in xcals.get_calendar_names(include_aliases=False)))
        raise CalendarError(f"unknown calendar code {code!r}; valid codes: {valid}") from None


class TradingCalendar:
    """Trading sessions and market state of one exchange.

    Parameters
    ----------
    code
        An ``exchange_calendars`` code, for example ``"XNYS"``.
    pre_open
        Length of the PRE_OPEN window before each session's open.
    post_close
        Length of the POST_CLOSE window after each session's close.
    start
        First date the calendar must cover.

    Raises
    ------
    CalendarError
        If ``code`` is unknown or the windows are negative.
    """

    def __init__(
        self,
        code: str,
        pre_open: timedelta = timedelta(minutes=90),
        post_close: timedelta = timedelta(minutes=180),
        start: date = DEFAULT_START,
    ) -> None:
        if pre_open < timedelta(0) or post_close < timedelta(0):
            raise CalendarError(
                f"pre_open and post_close must be >= 0, were {pre_open} and {post_close}"
            )
        self.code = code
        self.pre_open = pre_open
        self.post_close = post_close
        self._cal = _load(code, _as_date(start, "start"))
        self.timezone = ZoneInfo(str(self._cal.tz))
        sessions = self._cal.sessions
        self._sessions = np.array(sessions.values.astype("datetime64[D]"))
        self._opens = self._cal.opens.values  # UTC datetime64[ns]
        self._closes = self._cal.closes.values
        self._break_starts = self._cal.break_starts.values
        self._break_ends = self._cal.break_ends.values
        self._early = {d.date() for d in self._cal.early_closes}

    def __repr__(self) -> str:
        return f"TradingCalendar({self.code!r}, {self.first_session}..{self.last_session})"

    # ------------------------------------------------------------ sessions
    @property
    def first_session(self) -> date:
        """The first session the calendar covers."""
        return self._sessions[0].astype(date)

    @property
    def last_session(self) -> date:
        """The last session the calendar covers (exchange_calendars looks about a year ahead)."""
        return self._sessions[-1].astype(date)

    def _check_bounds(self, d: date, name: str) -> None:
        if d < self.first_session or d > self.last_session:
            raise CalendarError(
                f"{name} {d} is outside calendar {self.code}'s range "
                f"{self.first_session}..{self.last_session}"
            )

    def sessions(self, start: date | str, end: date | str) -> list[date]:
        """Return the sessions from ``start`` to ``end``, both inclusive, in order."""
        s, e = _as_date(start, "start"), _as_date(end, "end")
        if e < s:
            raise CalendarError(f"end {e} is before start {s}")
        lo = np.searchsorted(self._sessions, np.datetime64(s, "D"), side="left")
        hi = np.searchsorted(self._sessions, np.datetime64(e, "D"), side="right")
        return self._sessions[lo:hi].astype(date).tolist()

    def is_session(self, d: date | str) -> bool:
        """Return whether ``d`` is a trading session."""
        d = _as_date(d)
        i = np.searchsorted(self._sessions, np.datetime64(d, "D"))
        return bool(i < len(self._sessions) and self._sessions[i] == np.datetime64(d, "D"))

    def _index(self, d: date) -> int:
        if not self.is_session(d):
            self._check_bounds(d, "date")
            where = "a weekend" if d.weekday() >= 5 else "a holiday"
            raise NotSessionError(f"{d} is not a {self.code} session ({where})")
        return int(np.searchsorted(self._sessions, np.datetime64(d, "D")))

    def validate_session(self, d: date | str) -> date:
        """Return ``d`` as a date if it is a session.

        Raises
        ------
        NotSessionError
            If ``d`` is a weekend or holiday.
        """
        d = _as_date(d)
        self._index(d)
        return d

    def next_session(self, d: date | str) -> date:
        """Return the first session strictly after ``d`` (``d`` need not be a session)."""
        d = _as_date(d)
        i = np.searchsorted(self._sessions, np.datetime64(d, "D"), side="right")
        if i >= len(self._sessions):
            raise CalendarError(f"no {self.code} session after {d} within the calendar")
        return self._sessions[i].astype(date)

    def previous_session(self, d: date | str) -> date:
        """Return the last session strictly before ``d`` (``d`` need not be a session)."""
        d = _as_date(d)
        i = np.searchsorted(self._sessions, np.datetime64(d, "D"), side="left")
        if i == 0:
            raise CalendarError(f"no {self.code} session before {d} within the calendar")
        return self._sessions[i - 1].astype(date)

    def session_offset(self, d: date | str, n: int) -> date:
        """Return the session ``n`` sessions after (``n`` > 0) or before (``n`` < 0) session ``d``."""
        i = self._index(_as_date(d)) + n
        if not 0 <= i < len(self._sessions):
            raise CalendarError(f"session {d} offset by {n} falls outside calendar {self.code}")
        return self._sessions[i].astype(date)

    def non_session_weekdays(self, start: date | str, end: date | str) -> list[date]:
        """Return the Monday-to-Friday dates in ``[start, end]`` that are not sessions (holidays).

        Raises
        ------
        CalendarError
            If ``end`` is before ``start``, or a weekday in the range lies outside the calendar
            (it would otherwise be reported as a holiday).
        """
        s, e = _as_date(start, "start"), _as_date(end, "end")
        days = pd.bdate_range(s, e).date
        if len(days):
            self._check_bounds(days[0], "start")
            self._check_bounds(days[-1], "end")
        sessions = set(self.sessions(s, e))
        return [d for d in days if d not in sessions]

    # ------------------------------------------------------------ times
    def _windows(self) -> tuple[np.timedelta64, np.timedelta64]:
        pre = np.timedelta64(int(self.pre_open.total_seconds() * 1e9), "ns")
        post = np.timedelta64(int(self.post_close.total_seconds() * 1e9), "ns")
        return pre, post

    def _instant(self, at: datetime) -> np.datetime64:
        # Beyond the sessions the calendar knows, CLOSED (or "last closed") would be a guess.
        t = _utc_ns(at)
        pre, post = self._windows()
        lo, hi = self._opens[0] - pre, self._closes[-1] + post
        if not lo <= t < hi:
            raise CalendarError(
                f"at {at.isoformat()} is outside calendar {self.code}'s range "
                f"{self._utc(lo).isoformat()}..{self._utc(hi).isoformat()} (UTC, end excluded)"
            )
        return t

    def _utc(self, value: np.datetime64) -> datetime:
        return pd.Timestamp(value).tz_localize("UTC").to_pydatetime()

    def session_open(self, d: date | str) -> datetime:
        """Return the session's open in the exchange's time zone."""
        return self._utc(self._opens[self._index(_as_date(d))]).astimezone(self.timezone)

    def session_close(self, d: date | str) -> datetime:
        """Return the session's close in the exchange's time zone."""
        return self._utc(self._closes[self._index(_as_date(d))]).astimezone(self.timezone)

    def is_early_close(self, d: date | str) -> bool:
        """Return whether session ``d`` closes earlier than the exchange's regular close."""
        d = _as_date(d)
        self._index(d)
        return d in self._early

    def early_closes(self, start: date | str, end: date | str) -> list[date]:
        """Return the early-close sessions in ``[start, end]``."""
        s, e = _as_date(start, "start"), _as_date(end, "end")
        return sorted(d for d in self._early if s <= d <= e)

    def market_state(self, at: datetime) -> MarketState:
        """Return the market state at instant ``at`` (timezone-aware).

        SESSION runs from open to close (a lunch break counts as SESSION: the session is under
        way). PRE_OPEN is the ``pre_open`` window before the open and POST_CLOSE the
        ``post_close`` window after the close; where windows of neighbouring sessions overlap
        (round-the-clock markets), SESSION wins, then POST_CLOSE, then PRE_OPEN.

        Raises
        ------
        CalendarError
            If ``at`` is naive, or outside the calendar (before the first session's pre-open
            window or after the last session's post-close window).
        """
        t = self._instant(at)
        pre, post = self._windows()
        # The last session whose open is <= t, and its neighbour after.
        i = int(np.searchsorted(self._opens, t, side="right")) - 1
        if i >= 0 and self._opens[i] <= t < self._closes[i]:
            return MarketState.SESSION
        if i >= 0 and self._closes[i] <= t < self._closes[i] + post:
            return MarketState.POST_CLOSE
        j = i + 1
        if j < len(self._opens) and self._opens[j] - pre <= t < self._opens[j]:
            return MarketState.PRE_OPEN
        return MarketState.CLOSED

    def session_at(self, at: datetime) -> date | None:
        """Return the session whose open..close contains ``at``, or None.

        Raises
        ------
        CalendarError
            As `market_state` does.
        """
        if self.market_state(at) is not MarketState.SESSION:
            return None
        t = self._instant(at)
        i = int(np.searchsorted(self._opens, t, side="right")) - 1
        return self._sessions[i].astype(date)

    def last_closed_session(self, at: datetime) -> date:
        """Return the most recent session whose close is at or before ``at`` (timezone-aware).

        Raises
        ------
        CalendarError
            If ``at`` is naive, after the last session's post-close window (a later session
            the calendar does not know may have closed), or no session has closed by ``at``.
        """
        t = self._instant(at)
        i = int(np.searchsorted(self._closes, t, side="right")) - 1
        if i < 0:
            raise CalendarError(f"no {self.code} session has closed by {at.isoformat()}")
        return self._sessions[i].astype(date)


def regular_close(calendar: TradingCalendar) -> time:
    """Return the exchange's regular (non-early) close time in local time."""
    return calendar._cal.close_times[-1][1]
