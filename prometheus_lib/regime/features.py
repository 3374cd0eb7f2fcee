"""The regime engine's features: one value per session, computed causally from a ``MarketPanel``.

Every feature at row T reads panel rows ``<= T`` only, and a gap is filled forward from the past
(never backward): rows before a feature's first value stay NaN and are not used. A return that
spans g weekdays (g > 1 after a weekday holiday) is scaled by ``1 / sqrt(g)`` where volatility is
measured, so that the session after a holiday does not look like stress.

* ``dispersion``      — log of the robust cross-sectional standard deviation of the instruments'
  log returns, ``(q75 - q25) / 1.349``, EWMA-smoothed over ``smoothing_sessions`` (1 = none).
  Idiosyncratic, sector and beta-spread risk all widen it, and with many instruments it is
  measured precisely every session, its noise independent from one session to the next: the
  sharpest per-session stress signal, and the default (only) feature.
* ``realised_vol``    — log of the trailing root mean square of the market return over
  ``realised_vol_sessions`` sessions (at least half of them with a return).
* ``volume``          — mean over instruments of ``log(traded value) - cumulative log return``
  (a split- and price-level-free volume) against its own trailing median over
  ``volume_baseline_sessions`` sessions before T, EWMA-smoothed over ``smoothing_sessions``.
* ``avg_correlation`` — the panel's 63-session average pairwise correlation.
* ``market_return``   — the cap-weighted market return of the session.
* ``drawdown``        — log of the market index (cumulated market return) against its running high.

A cross-sectional feature needs ``MIN_CROSS_SECTION`` instruments at the session, else the
session has no value (and the previous one is carried forward).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from prometheus_lib.config.models import RegimeConfig
from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["FEATURES", "MIN_CROSS_SECTION", "STRESS_SIGN", "regime_features", "trailing_rms"]

MIN_CROSS_SECTION = 5
_IQR_TO_STD = 1.349  # interquartile range of a standard normal
_FLOOR = 1e-10  # logs of zero volatility or dispersion are floored here
_MAX_VOLUME_DEVIATION = 3.0  # an instrument's log deviation from its baseline is clipped (bad prints)

# +1: the feature rises with stress; -1: it falls. Orders the fitted states (see engine).
STRESS_SIGN: dict[str, float] = {"realised_vol": 1.0, "dispersion": 1.0, "volume": 1.0, "avg_correlation": 1.0,
                                 "market_return": -1.0, "drawdown": -1.0}


def _ffill(x: np.ndarray) -> np.ndarray:
    """``x`` (1-D) with each NaN replaced by the last finite value before it (NaN before the first)."""
    idx = np.where(np.isfinite(x), np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, x[np.maximum(idx, 0)], np.nan)


def _ewma(x: np.ndarray, span: int) -> np.ndarray:
    """Causal exponentially weighted mean (alpha = 2 / (span + 1)) of a forward-filled series."""
    if span <= 1:
        return x
    out = np.full_like(x, np.nan)
    finite = np.flatnonzero(np.isfinite(x))
    if finite.size == 0:
        return out
    first = finite[0]
    a = 2.0 / (span + 1.0)
    out[first:], _ = lfilter([a], [1.0, a - 1.0], x[first:], zi=[(1.0 - a) * x[first]])
    return out


def trailing_rms(x: np.ndarray, window: int) -> np.ndarray:
    """Root mean square of ``x`` over the trailing ``window`` rows (NaN below ``window // 2`` values)."""
    finite = np.isfinite(x)
    sq = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0) ** 2)])
    n = np.concatenate([[0], np.cumsum(finite)])
    lo = np.maximum(np.arange(1, len(x) + 1) - window, 0)
    count = n[1:] - n[lo]
    total = sq[1:] - sq[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= max(window // 2, 1), np.sqrt(np.maximum(total, 0.0) / count), np.nan)


def _session_gaps(panel: MarketPanel) -> np.ndarray:
    """Weekdays each session's return spans (1, or more after a weekday holiday; 1 for the first)."""
    days = panel.sessions.astype("datetime64[D]")
    return np.concatenate([[1], np.maximum(np.busday_count(days[:-1], days[1:]), 1)]).astype(np.float64)


def _realised_vol(panel: MarketPanel, config: RegimeConfig) -> np.ndarray:
    daily = panel.market_return / np.sqrt(_session_gaps(panel))
    return np.log(np.maximum(trailing_rms(daily, config.realised_vol_sessions), _FLOOR))


def _dispersion(panel: MarketPanel, config: RegimeConfig) -> np.ndarray:
    r = np.sort(panel.log_return, axis=1)  # NaN sort last
    n = np.isfinite(r).sum(axis=1)
    rows = np.arange(len(r))

    def quantile(q: float) -> np.ndarray:
        pos = q * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        w = pos - lo
        return r[rows, lo] * (1.0 - w) + r[rows, hi] * w

    with np.errstate(invalid="ignore"):
        spread = np.where(n >= MIN_CROSS_SECTION, (quantile(0.75) - quantile(0.25)) / _IQR_TO_STD, np.nan)
    spread /= np.sqrt(_session_gaps(panel))
    return _ewma(_ffill(np.log(np.maximum(spread, _FLOOR))), config.smoothing_sessions)


def _volume(panel: MarketPanel, config: RegimeConfig) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        value = panel.close * panel.volume
        level = np.where(value > 0.0, np.log(value), np.nan) - np.nancumsum(panel.log_return, axis=0)
    window = config.volume_baseline_sessions
    baseline = (pd.DataFrame(level).rolling(window, min_periods=min(21, window)).median().shift(1).to_numpy())
    deviation = np.clip(level - baseline, -_MAX_VOLUME_DEVIATION, _MAX_VOLUME_DEVIATION)
    finite = np.isfinite(deviation)
    n = finite.sum(axis=1)
    with np.errstate(invalid="ignore"):
        # A sequential sum (cumsum), not numpy's pairwise one: an instrument listed after T adds
        # a column of zeros, which must leave the value at T bit-identical whatever its position.
        total = np.cumsum(np.where(finite, deviation, 0.0), axis=1)[:, -1] if deviation.shape[1] else np.zeros(len(n))
        mean = np.where(n >= MIN_CROSS_SECTION, total / n, np.nan)
    return _ewma(_ffill(mean), config.smoothing_sessions)


def _drawdown(panel: MarketPanel, config: RegimeConfig) -> np.ndarray:
    r = panel.market_return  # a simple return: the index cumulates its log
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.cumsum(np.where(np.isfinite(r), np.log1p(r), 0.0))
    out = index - np.maximum.accumulate(index)
    seen = np.flatnonzero(np.isfinite(r))
    out[: seen[0] if seen.size else len(r)] = np.nan  # no index before the first market return
    return out


FEATURES: dict[str, Callable[[MarketPanel, RegimeConfig], np.ndarray]] = {
    "realised_vol": _realised_vol,
    "dispersion": _dispersion,
    "volume": _volume,
    "avg_correlation": lambda panel, config: panel.avg_correlation,
    "market_return": lambda panel, config: panel.market_return,
    "drawdown": _drawdown,
}


def regime_features(panel: MarketPanel, config: RegimeConfig) -> np.ndarray:
    """(sessions, features) raw feature values in ``config.features`` order, each forward-filled."""
    return np.column_stack([_ffill(np.asarray(FEATURES[name](panel, config), dtype=np.float64))
                            for name in config.features])
