"""TimeMachine: the only way a strategy or engine reads data, and only what is known at a session.

A ``TimeMachine`` holds the sessions of a backtest and the tables its engines read (loaded once,
from the warehouse or given as frames) and a *current session*. Every read is cut at the current
session: ``read`` returns rows whose date column is at or before it, ``matrix`` returns a dense
(sessions x instruments) window ending at it, and asking for anything later raises
``LookAheadError``. Engines never see the warehouse, so point-in-time holds by construction
(STYLE rule 6).

Rows are "known at T" when their date column (``session_date`` for panels and prices; the
session an event became known for news and filings) is <= T. Tables whose rows carry the
session they were *computed for* satisfy this because every panel is point-in-time itself
(tested in the dbt suite).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from prometheus_lib.errors import CalendarError, LookAheadError, NotSessionError
from prometheus_lib.execution.market import InstrumentIndex
from prometheus_lib.storage.catalog import TRUTH_SCHEMA

if TYPE_CHECKING:
    from prometheus_lib.storage.warehouse import Warehouse


@dataclass(frozen=True, slots=True)
class _Table:
    frame: pl.DataFrame  # sorted by date_column
    date_column: str
    dates: np.ndarray  # the date column as numpy datetime64[D], for bisection


class TimeMachine:
    """Point-in-time reads over a fixed list of sessions.

    Parameters
    ----------
    sessions
        The trading sessions reads are indexed by, ascending (history before the backtest's
        first session included, so windows can look back).
    current
        The session the machine starts at (default: the first).
    """

    def __init__(self, sessions: Sequence[date], current: date | None = None) -> None:
        self._sessions = list(sessions)
        if not self._sessions:
            raise CalendarError("TimeMachine needs at least one session")
        if any(a >= b for a, b in zip(self._sessions, self._sessions[1:])):
            raise CalendarError("TimeMachine sessions must be strictly ascending")
        self._position = {s: i for i, s in enumerate(self._sessions)}
        self._tables: dict[str, _Table] = {}
        self._matrices: dict[tuple, tuple[InstrumentIndex, np.ndarray]] = {}
        self._cell_cache: dict[tuple, tuple[InstrumentIndex, tuple]] = {}
        self._value_cache: dict[tuple[str, str], np.ndarray] = {}
        self._grid = np.array(self._sessions, dtype="datetime64[D]")
        self._k = 0
        if current is not None:
            self.advance_to(current)

    # ------------------------------------------------------------ the clock

    @property
    def sessions(self) -> list[date]:
        """All sessions the machine knows, ascending."""
        return list(self._sessions)

    @property
    def current(self) -> date:
        """The current session: nothing after it can be read."""
        return self._sessions[self._k]

    @property
    def current_index(self) -> int:
        """Position of the current session in ``sessions``."""
        return self._k

    def session_index(self, session: date) -> int:
        """Return the position of ``session`` (raises ``NotSessionError``)."""
        try:
            return self._position[session]
        except KeyError:
            raise NotSessionError(
                f"{session} is not a session of this TimeMachine "
                f"({self._sessions[0]} .. {self._sessions[-1]}, {len(self._sessions)} sessions)"
            ) from None

    def advance_to(self, session: date) -> None:
        """Move the clock to ``session`` (forwards or backwards; engines only ever see the current one)."""
        self._k = self.session_index(session)

    def sessions_back(self, n: int) -> list[date]:
        """Return the last ``n`` sessions ending at the current one (fewer at the start)."""
        return self._sessions[max(0, self._k - n + 1): self._k + 1]

    # ------------------------------------------------------------ loading

    def has(self, name: str) -> bool:
        """Whether table ``name`` is registered."""
        return name in self._tables

    def register(self, name: str, frame: pl.DataFrame, date_column: str = "session_date") -> None:
        """Make ``frame`` readable as table ``name``, cut by ``date_column``.

        Raises
        ------
        PermissionError
            If ``frame`` is the synthetic market's ground truth (it carries the marker column)
            or ``name`` names it: no engine may read what the generator planted.
        """
        if TRUTH_SCHEMA in frame.columns or name.split(".")[0] == TRUTH_SCHEMA:
            raise PermissionError(
                f"table {name!r} is the synthetic market's ground truth: engines may not read it "
                "(it is for tests and benches, through prometheus_lib.data.synthetic.read_truth)"
            )
        if date_column not in frame.columns:
            raise KeyError(f"table {name!r} has no date column {date_column!r}; columns: {frame.columns}")
        if not frame[date_column].is_sorted():
            frame = frame.sort(date_column, maintain_order=True)
        dates = frame[date_column].to_numpy().astype("datetime64[D]")
        self._tables[name] = _Table(frame, date_column, dates)
        for key in [k for k in self._matrices if k[0] == name]:
            del self._matrices[key]
        for cache in (self._cell_cache, self._value_cache):
            for key in [k for k in cache if k[0] == name]:
                del cache[key]

    def load(
        self,
        warehouse: Warehouse,
        table: str,
        *,
        start: date | None = None,
        end: date | None = None,
        columns: Sequence[str] | None = None,
        scope: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> pl.DataFrame:
        """Read ``table`` from ``warehouse`` for [start, end] once and register it; return the frame."""
        frame = warehouse.read_table(table, start=start, end=end, columns=columns, scope=scope)
        from prometheus_lib.storage.catalog import get_table

        self.register(name or table, frame, get_table(table).partition_column or "session_date")
        return frame

    # ------------------------------------------------------------ reads

    def _table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"TimeMachine has no table {name!r}; loaded: {sorted(self._tables)}") from None

    def _check_end(self, name: str, end: date) -> None:
        if end > self.current:
            raise LookAheadError(
                f"read of {name!r} up to {end} at session {self.current}: data after the current session is not known yet"
            )

    def read(
        self,
        name: str,
        *,
        start: date | None = None,
        end: date | None = None,
        lookback_sessions: int | None = None,
    ) -> pl.DataFrame:
        """Return the rows of ``name`` known at the current session.

        ``end`` defaults to the current session and may not be later (``LookAheadError``);
        ``lookback_sessions=n`` starts the window n sessions back (the current one included).
        """
        t = self._table(name)
        end = self.current if end is None else end
        self._check_end(name, end)
        if lookback_sessions is not None:
            if lookback_sessions < 1:
                raise ValueError(f"lookback_sessions must be >= 1, was {lookback_sessions}")
            first = self.sessions_back(lookback_sessions)[0]
            start = first if start is None else max(start, first)
        hi = int(np.searchsorted(t.dates, np.datetime64(end, "D"), side="right"))
        lo = 0 if start is None else int(np.searchsorted(t.dates, np.datetime64(start, "D"), side="left"))
        return t.frame.slice(lo, max(hi - lo, 0))

    def matrix(
        self,
        name: str,
        column: str,
        index: InstrumentIndex,
        *,
        lookback_sessions: int = 1,
        instrument_column: str = "instrument_id",
        filter_column: str | None = None,
        filter_value: Any = None,
    ) -> np.ndarray:
        """Return a read-only (lookback x instruments) window of ``column`` ending at the current session.

        Rows are sessions (oldest first; fewer rows at the very start), columns follow
        ``index``; absent cells are NaN. ``filter_column == filter_value`` selects rows of a
        long table first (for example ``factor_id == 'MOM'``).
        """
        full = self._dense(name, column, index, instrument_column, filter_column, filter_value)
        lo = max(0, self._k - lookback_sessions + 1)
        return full[lo: self._k + 1]

    def _dense(self, name, column, index, instrument_column, filter_column, filter_value) -> np.ndarray:
        key = (name, column, id(index), instrument_column, filter_column, filter_value)
        cached = self._matrices.get(key)
        if cached is not None and cached[0] is index:
            return cached[1]
        take, flat = self._cells(name, index, instrument_column, filter_column, filter_value)
        values = self._values(name, column)
        out = np.full((len(self._sessions), len(index)), np.nan)
        out.reshape(-1)[flat] = values if take is None else values[take]
        out.setflags(write=False)
        self._matrices[key] = (index, out)
        return out

    def _values(self, name: str, column: str) -> np.ndarray:
        """Column ``column`` of table ``name`` as float64, converted once."""
        key = (name, column)
        values = self._value_cache.get(key)
        if values is None:
            values = self._value_cache[key] = self._table(name).frame[column].cast(pl.Float64).to_numpy()
        return values

    def _cells(self, name, index, instrument_column, filter_column, filter_value):
        """Where the rows of ``name`` land in the grid, cached: ``(take, flat)`` with ``take`` the
        positions of the rows that land (None: all of them) and ``flat`` their cells in the
        flattened (sessions x instruments) grid.

        The placement of every row is computed once per table and index; a filtered read
        (``filter_column == filter_value``) takes its subset.
        """
        key = (name, id(index), instrument_column, filter_column, filter_value)
        cached = self._cell_cache.get(key)
        if cached is not None and cached[0] is index:
            return cached[1]
        frame = self._table(name).frame
        if filter_column is None:
            dates = self._table(name).dates  # ascending (register sorts)
            grid = self._grid
            # place each distinct date once (a table has thousands of dates, millions of rows); int32
            # and in-place arithmetic: fresh memory for millions of cells is the cost here
            starts = np.flatnonzero(np.concatenate(([True], dates[1:] != dates[:-1]))) if dates.size else np.zeros(0, int)
            distinct = dates[starts]
            at = np.searchsorted(grid, distinct)
            cell = np.int32 if len(grid) * len(index) < 2**31 else np.int64
            at = np.where((at < len(grid)) & (grid[np.minimum(at, len(grid) - 1)] == distinct), at, -1).astype(cell)
            flat = np.repeat(at, np.diff(np.append(starts, dates.size)))
            # an Enum over the index's ids: its physical code is the position (null: not in the index)
            codes = frame[instrument_column].cast(pl.String).cast(pl.Enum(list(index.ids)), strict=False)
            cols = codes.to_physical().cast(pl.Int32 if cell is np.int32 else pl.Int64).fill_null(-1).to_numpy()
            ok = (flat >= 0) & (cols >= 0)
            flat *= len(index)
            flat += cols
            value = (None, flat) if ok.all() else (np.flatnonzero(ok), flat[ok])
        else:
            take, flat = self._cells(name, index, instrument_column, None, None)
            selected = (frame[filter_column] == filter_value).fill_null(False)
            if take is None:
                group = selected.arg_true().to_numpy()
            else:
                group = np.flatnonzero(selected.to_numpy()[take])
            value = (group if take is None else take[group], flat[group])
        self._cell_cache[key] = (index, value)
        return value


def sessions_between(sessions: Sequence[date], start: date, end: date) -> list[date]:
    """Return the sessions in [start, end] from an ascending list."""
    lo = bisect.bisect_left(sessions, start)
    hi = bisect.bisect_right(sessions, end)
    return list(sessions[lo:hi])
