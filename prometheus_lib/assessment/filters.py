"""Signal filters: which scored instruments may trade at T, and why the others may not.

All read data known at T:

* ``liquidity``: the mean traded value (close x volume) over the ``liquidity_window`` sessions
  to T, at least half of them present, must reach ``min_adv_value``;
* ``earnings_blackout``: no trade within ``earnings_blackout_sessions`` sessions of an earnings
  call: after a call known at T (its session at most that many sessions back), or before the
  next one, projected one quarter (63 sessions) after the latest call known at T (calls are
  quarterly; the future date itself is not in the data at T);
* ``price_floor``: the close at T must reach ``min_price``.

``signal_filters`` returns a bit mask per cell (bit k set when ``FILTER_NAMES[k]`` excludes it)
and the values the reasons quote.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["FILTER_NAMES", "QUARTER_SESSIONS", "filter_reasons", "reason_lists", "signal_filters"]

FILTER_NAMES = ("liquidity", "earnings_blackout", "price_floor")
QUARTER_SESSIONS = 63


def _adv(panel: MarketPanel, window: int) -> np.ndarray:
    traded = panel.close * panel.volume
    finite = np.isfinite(traded)
    cs = np.vstack([np.zeros((1, traded.shape[1])), np.cumsum(np.where(finite, traded, 0.0), axis=0)])
    cn = np.vstack([np.zeros((1, traded.shape[1])), np.cumsum(finite, axis=0)])
    t = np.arange(traded.shape[0])
    lo = np.clip(t + 1 - window, 0, None)
    s, n = cs[t + 1] - cs[lo], cn[t + 1] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= max(1, (window + 1) // 2), s / n, np.nan)


def signal_filters(panel: MarketPanel, last_call_row: np.ndarray, config: AssessmentConfig) -> tuple[np.ndarray, dict]:
    """``(mask, values)``: the filter bits of every cell and ``{"adv": ..., "next_call_in": ...}``."""
    adv = _adv(panel, config.liquidity_window)
    rows = np.arange(panel.n_sessions)[:, None]
    since = np.where(last_call_row >= 0, rows - last_call_row, np.inf)
    until_next = np.where(last_call_row >= 0, last_call_row + QUARTER_SESSIONS - rows, np.inf)
    b = config.earnings_blackout_sessions
    blackout = (since <= b) | ((until_next >= 0) & (until_next <= b))
    mask = np.zeros(panel.close.shape, dtype=np.int8)
    mask |= np.where(~(adv >= config.min_adv_value), 1, 0).astype(np.int8)
    mask |= np.where(blackout, 2, 0).astype(np.int8)
    mask |= np.where(~(panel.close >= config.min_price), 4, 0).astype(np.int8)
    return mask, {"adv": adv, "since_call": since, "until_next_call": until_next}


def reason_lists(bits: np.ndarray, adv: np.ndarray, close: np.ndarray, since: np.ndarray, until: np.ndarray,
                 config: AssessmentConfig) -> pl.Series:
    """Per cell, the reasons of its filter bits (empty when none), built column-wise (polars)."""
    def finite_or_nan(x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.where(np.isfinite(x), x, np.nan)

    frame = pl.DataFrame({"b": np.asarray(bits, dtype=np.int64), "adv": finite_or_nan(adv), "close": finite_or_nan(close),
                          "since": finite_or_nan(since), "until": finite_or_nan(until)}
                         ).with_columns(pl.col(pl.Float64).fill_nan(None))
    b, blackout = pl.col("b"), config.earnings_blackout_sessions
    finite = pl.col("adv").is_not_null()
    liquidity = pl.when((b & 1) > 0).then(
        pl.when(finite).then(pl.format("liquidity: average traded value {} < {}",
                                       pl.col("adv").round(0).cast(pl.Int64), pl.lit(f"{config.min_adv_value:.0f}")))
        .otherwise(pl.lit("liquidity: too few sessions of traded value")))
    earnings = pl.when((b & 2) > 0).then(
        pl.when(pl.col("since") <= blackout)
        .then(pl.format("earnings_blackout: call {} session(s) ago", pl.col("since").cast(pl.Int64)))
        .otherwise(pl.format("earnings_blackout: next call projected in {} session(s)", pl.col("until").cast(pl.Int64))))
    price = pl.when((b & 4) > 0).then(
        pl.format("price_floor: close {} < {}", pl.col("close").round(4), pl.lit(f"{config.min_price:g}")))
    return frame.select(pl.concat_list([liquidity, earnings, price]).list.drop_nulls().alias("filters")).to_series()


def filter_reasons(bits: int, adv: float, close: float, since: float, until: float, config: AssessmentConfig) -> list[str]:
    """The human-readable reasons of one cell's filter bits (``reason_lists`` of one cell)."""
    return reason_lists(np.array([bits]), np.array([adv]), np.array([close]), np.array([since]), np.array([until]),
                        config).to_list()[0]
