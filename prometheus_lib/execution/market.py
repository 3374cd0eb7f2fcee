"""One session's market data as the execution layer sees it: dense arrays over instruments.

A backtest holds its prices as (sessions x instruments) matrices; a ``MarketSnapshot`` is one
row of them, so building a session's view costs nothing per instrument. Missing prices are NaN;
an instrument is tradable in a session only when the needed price is finite and it is not
halted (a halt is explicit, or zero volume on a session the instrument has a bar).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from prometheus_lib.errors import InvalidValueError


@dataclass(frozen=True, slots=True)
class Bar:
    """One instrument's bar in one session (NaN where unknown)."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    daily_volatility: float
    halted: bool


@dataclass(frozen=True, slots=True)
class InstrumentIndex:
    """A fixed ordering of instrument ids, shared by every snapshot of a backtest."""

    ids: tuple[str, ...]
    positions: Mapping[str, int]

    @classmethod
    def of(cls, ids: Sequence[str]) -> InstrumentIndex:
        """Build an index over ``ids`` (must be unique)."""
        ids = tuple(ids)
        positions = {i: n for n, i in enumerate(ids)}
        if len(positions) != len(ids):
            raise InvalidValueError("instrument ids of an InstrumentIndex must be unique")
        return cls(ids, positions)

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, instrument_id: str) -> int | None:
        """Return the column of ``instrument_id``, or None when it is not in the index."""
        return self.positions.get(instrument_id)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Prices, volumes and daily volatilities of every instrument in one session.

    Arrays are aligned with ``index``; ``daily_volatility`` is the volatility of daily returns
    known at the session (used by square-root impact), NaN where unknown.
    """

    session_date: date
    index: InstrumentIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    daily_volatility: np.ndarray
    halted: np.ndarray  # bool

    def __post_init__(self) -> None:
        n = len(self.index)
        for name in ("open", "high", "low", "close", "volume", "daily_volatility", "halted"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise InvalidValueError(
                    f"MarketSnapshot {self.session_date}: {name} has shape {arr.shape}, expected ({n},)"
                )

    def bar(self, instrument_id: str) -> Bar | None:
        """Return ``instrument_id``'s bar, or None when it is not in the index."""
        k = self.index.position(instrument_id)
        if k is None:
            return None
        return Bar(
            float(self.open[k]),
            float(self.high[k]),
            float(self.low[k]),
            float(self.close[k]),
            float(self.volume[k]),
            float(self.daily_volatility[k]),
            bool(self.halted[k]),
        )

    def price(self, instrument_id: str, field: str = "close") -> float:
        """Return ``field`` ("open" or "close") for ``instrument_id``; NaN when unknown."""
        k = self.index.position(instrument_id)
        if k is None:
            return float("nan")
        return float(getattr(self, field)[k])

    def is_tradable(self, instrument_id: str, field: str = "close") -> bool:
        """True when ``field`` is a finite positive price, the instrument is not halted and traded."""
        k = self.index.position(instrument_id)
        if k is None:
            return False
        px = getattr(self, field)[k]
        vol = self.volume[k]
        return bool(np.isfinite(px) and px > 0 and not self.halted[k] and not (np.isfinite(vol) and vol <= 0))

    @classmethod
    def from_bars(cls, session_date: date, bars: Mapping[str, Bar]) -> MarketSnapshot:
        """Build a snapshot from a mapping of instrument id to ``Bar`` (tests, live use)."""
        index = InstrumentIndex.of(sorted(bars))
        cols = {f: np.array([getattr(bars[i], f) for i in index.ids], dtype=float) for f in
                ("open", "high", "low", "close", "volume", "daily_volatility")}
        halted = np.array([bars[i].halted for i in index.ids], dtype=bool)
        return cls(session_date, index, halted=halted, **cols)
