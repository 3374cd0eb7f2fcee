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

from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["FILTER_NAMES", "QUARTER_SESSIONS", "filter_reasons", "signal_filters"]

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


def filter_reasons(bits: int, adv: float, close: float, since: float, until: float, config: AssessmentConfig) -> list[str]:
    """The human-readable reasons of one cell's filter bits."""
    out = []
    if bits & 1:
        out.append(f"liquidity: average traded value {adv:,.0f} < {config.min_adv_value:,.0f}"
                   if np.isfinite(adv) else "liquidity: too few sessions of traded value")
    if bits & 2:
        out.append(f"earnings_blackout: call {int(since)} session(s) ago" if since <= config.earnings_blackout_sessions
                   else f"earnings_blackout: next call projected in {int(until)} session(s)")
    if bits & 4:
        out.append(f"price_floor: close {close:.4g} < {config.min_price:g}")
    return out
