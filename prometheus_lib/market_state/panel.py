"""The market-state engines' input: one market's panels as dense session x instrument arrays.

``MarketPanel`` holds what the regime, stability and fragility engines read, for every session
from the market's history start to the last session asked for: the engines fit walk-forward on
an anchored schedule (refit sessions counted from the panel's first session), so the output at T
never depends on the range materialised. Cells without data are NaN. Nothing after ``last`` is
loaded; an engine's output at T reads rows ``<= T`` only (each engine's look-ahead test perturbs
every array after T and requires the rows at or before T to stay bit-identical).

Sources (all point-in-time at the session they are dated):

* ``prices_daily``: raw ``close`` and ``volume`` (traded value = close x volume);
* ``returns_daily``: ``log_return`` (total return, from adjusted closes);
* ``volatility_daily``: ``vol_21``, ``vol_63``, ``vol_ewma``, ``downside_vol_63`` (annualised);
* ``instrument_factors_daily`` (factor MKT): ``beta`` and ``residual_vol``;
* ``factors_daily`` (MKT): ``market_return``, the cap-weighted market return;
* ``correlation_panels`` (MARKET_AVG): ``avg_correlation``, the 63-session average pairwise
  correlation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from prometheus_lib.storage.warehouse import Warehouse

__all__ = ["INSTRUMENT_ARRAYS", "MARKET_ARRAYS", "MarketPanel", "load_market_panel"]

# Per (session, instrument) arrays and the table column each is read from.
INSTRUMENT_ARRAYS: dict[str, tuple[str, str]] = {
    "close": ("prices_daily", "close"),
    "volume": ("prices_daily", "volume"),
    "log_return": ("returns_daily", "return_log"),
    "vol_21": ("volatility_daily", "vol_21d"),
    "vol_63": ("volatility_daily", "vol_63d"),
    "vol_ewma": ("volatility_daily", "vol_ewma"),
    "downside_vol_63": ("volatility_daily", "downside_vol_63d"),
    "beta": ("instrument_factors_daily", "beta"),
    "residual_vol": ("instrument_factors_daily", "residual_vol"),
}
# Per session arrays.
MARKET_ARRAYS = ("market_return", "avg_correlation")


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """One market's panels, sessions x instruments, from its history start to ``sessions[-1]``.

    Attributes
    ----------
    market_id, region
        The market and the region it belongs to (markets.yaml).
    sessions
        The market's sessions, ascending (``datetime64[D]``), from the first one loaded.
    instrument_ids, sectors
        Columns: every instrument with a price in the span, sorted by id, and its sector.
    close, volume, log_return, vol_21, vol_63, vol_ewma, downside_vol_63, beta, residual_vol
        ``float64`` arrays of shape (sessions, instruments); NaN where there is no row.
    market_return, avg_correlation
        ``float64`` arrays of shape (sessions,); NaN where there is no row.
    """

    market_id: str
    region: str
    sessions: np.ndarray
    instrument_ids: tuple[str, ...]
    sectors: tuple[str | None, ...]
    close: np.ndarray
    volume: np.ndarray
    log_return: np.ndarray
    vol_21: np.ndarray
    vol_63: np.ndarray
    vol_ewma: np.ndarray
    downside_vol_63: np.ndarray
    beta: np.ndarray
    residual_vol: np.ndarray
    market_return: np.ndarray
    avg_correlation: np.ndarray

    def __post_init__(self) -> None:
        t, n = len(self.sessions), len(self.instrument_ids)
        for name in INSTRUMENT_ARRAYS:
            if getattr(self, name).shape != (t, n):
                raise ValueError(f"MarketPanel.{name} has shape {getattr(self, name).shape}, expected {(t, n)}")
        for name in MARKET_ARRAYS:
            if getattr(self, name).shape != (t,):
                raise ValueError(f"MarketPanel.{name} has shape {getattr(self, name).shape}, expected {(t,)}")
        if len(self.sectors) != n:
            raise ValueError(f"MarketPanel.sectors has {len(self.sectors)} entries, expected {n}")

    @property
    def n_sessions(self) -> int:
        return len(self.sessions)

    @property
    def n_instruments(self) -> int:
        return len(self.instrument_ids)

    @property
    def listed(self) -> np.ndarray:
        """Boolean (sessions, instruments): the instrument has a close at the session."""
        return np.isfinite(self.close)

    def session_dates(self) -> list[date]:
        """The sessions as ``datetime.date`` objects."""
        return self.sessions.astype("datetime64[D]").astype(object).tolist()

    def index_of(self, session: date) -> int:
        """Row of ``session``; raises ``KeyError`` if it is not a session of the panel."""
        k = int(np.searchsorted(self.sessions, np.datetime64(session, "D")))
        if k >= len(self.sessions) or self.sessions[k] != np.datetime64(session, "D"):
            raise KeyError(f"{session} is not a session of {self.market_id}'s panel "
                           f"({self.sessions[0]}..{self.sessions[-1]})")
        return k

    def rows_between(self, start: date, end: date) -> np.ndarray:
        """Row indices of the sessions in ``[start, end]``."""
        lo = int(np.searchsorted(self.sessions, np.datetime64(start, "D"), side="left"))
        hi = int(np.searchsorted(self.sessions, np.datetime64(end, "D"), side="right"))
        return np.arange(lo, hi)

    def truncated(self, last: date) -> MarketPanel:
        """The panel as it would be loaded with ``last`` as its last session."""
        k = int(np.searchsorted(self.sessions, np.datetime64(last, "D"), side="right"))
        keep = np.flatnonzero(np.isfinite(self.close[:k]).any(axis=0))  # instruments with a price in the span
        return self.replace(sessions=self.sessions[:k], instrument_ids=tuple(self.instrument_ids[j] for j in keep),
                            sectors=tuple(self.sectors[j] for j in keep),
                            **{a: getattr(self, a)[:k, keep] for a in INSTRUMENT_ARRAYS},
                            **{a: getattr(self, a)[:k] for a in MARKET_ARRAYS})

    def replace(self, **changes) -> MarketPanel:
        """A copy with some fields replaced (tests perturb arrays with it)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_frames(cls, market_id: str, region: str, sessions: Sequence[date], frames: dict[str, pl.DataFrame],
                    sectors: dict[str, str | None] | None = None) -> MarketPanel:
        """Build a panel from table frames (as read from the warehouse).

        ``frames`` maps table names (``prices_daily``, ``returns_daily``, ``volatility_daily``,
        ``instrument_factors_daily``, ``factors_daily``, ``correlation_panels``) to frames with
        at least the columns the panel reads; a missing table leaves its arrays NaN.
        ``sessions`` are the panel's rows (every session of the span, with data or not).
        """
        days = np.array(sorted(set(sessions)), dtype="datetime64[D]")
        prices = frames.get("prices_daily")
        ids = sorted(set(prices["instrument_id"].to_list())) if prices is not None and prices.height else []
        t, n = len(days), len(ids)
        row_of = pl.DataFrame({"session_date": pl.Series(days).cast(pl.Date), "_row": np.arange(t, dtype=np.int64)})
        col_of = pl.DataFrame({"instrument_id": pl.Series(ids, dtype=pl.String), "_col": np.arange(n, dtype=np.int64)})
        arrays: dict[str, np.ndarray] = {}
        for table in sorted({tab for tab, _ in INSTRUMENT_ARRAYS.values()}):
            names = [a for a, (tab, _) in INSTRUMENT_ARRAYS.items() if tab == table]
            for name in names:
                arrays[name] = np.full((t, n), np.nan)
            frame = frames.get(table)
            if frame is None or frame.height == 0 or n == 0:
                continue
            if table == "instrument_factors_daily":
                frame = frame.filter(pl.col("factor_id") == "MKT")
            placed = (frame.join(row_of, on="session_date", how="inner")
                      .join(col_of, on="instrument_id", how="inner"))
            r, c = placed["_row"].to_numpy(), placed["_col"].to_numpy()
            for name in names:
                arrays[name][r, c] = placed[INSTRUMENT_ARRAYS[name][1]].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for name, table, where, column in (
            ("market_return", "factors_daily", pl.col("factor_id") == "MKT", "factor_return"),
            ("avg_correlation", "correlation_panels", pl.col("panel_id") == "MARKET_AVG", "correlation"),
        ):
            arrays[name] = np.full(t, np.nan)
            frame = frames.get(table)
            if frame is None or frame.height == 0:
                continue
            placed = frame.filter(where).join(row_of, on="session_date", how="inner")
            arrays[name][placed["_row"].to_numpy()] = placed[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        sectors = sectors or {}
        return cls(market_id=market_id, region=region, sessions=days, instrument_ids=tuple(ids),
                   sectors=tuple(sectors.get(i) for i in ids), **arrays)


_COLUMNS: dict[str, list[str]] = {
    "prices_daily": ["instrument_id", "session_date", "close", "volume"],
    "returns_daily": ["instrument_id", "session_date", "return_log"],
    "volatility_daily": ["instrument_id", "session_date", "vol_21d", "vol_63d", "vol_ewma", "downside_vol_63d"],
    "instrument_factors_daily": ["instrument_id", "session_date", "factor_id", "beta", "residual_vol"],
    "factors_daily": ["session_date", "factor_id", "factor_return"],
    "correlation_panels": ["session_date", "panel_id", "correlation"],
}


def load_market_panel(warehouse: Warehouse, market_id: str, region: str, sessions: Sequence[date]) -> MarketPanel:
    """Read ``market_id``'s panels for ``sessions`` (ascending, the panel's rows) from the warehouse."""
    first, last = min(sessions), max(sessions)
    frames = {}
    for table, columns in _COLUMNS.items():
        frames[table] = warehouse.read_table(table, start=first, end=last, scope={"market_id": market_id}, columns=columns)
    instruments = warehouse.read_table("instruments", scope={"market_id": market_id},
                                       columns=["instrument_id", "sector"])
    sectors = dict(zip(instruments["instrument_id"].to_list(), instruments["sector"].to_list()))
    return MarketPanel.from_frames(market_id, region, sessions, frames, sectors)
