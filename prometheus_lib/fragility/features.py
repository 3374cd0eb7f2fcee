"""The fragility engine's features: causal, per instrument per session, from the panel only.

Every feature at session T reads panel rows ``<= T`` only (trailing windows end at T; a
cross-sectional rank compares the instruments at T). Windows skip missing cells and need a
minimum count of them (``min``), else the feature is NaN (LightGBM routes NaN on its own).
Traded value is ``close x volume`` (split-invariant, unlike the share volume).

Instrument features
    ``vol_21``            the panel's 21-session volatility at T (annualised).
    ``vol_ratio``         ``log(vol_21 / vol_63)`` at T: volatility rising against its quarter.
    ``ewma_ratio``        ``log(vol_ewma / vol_63)`` at T: the same, faster.
    ``idio_vol_ratio``    ``log`` of the 10-session (min 8) standard deviation of the residual
                          simple return ``R_s - beta_s m_s`` (s in T-9..T, annualised; the
                          panel's beta regresses simple returns on the simple MKT return) over the panel's
                          ``residual_vol`` at T: the instrument's own volatility surging.
    ``vol_of_vol``        standard deviation of the daily change of ``log(vol_21)`` over the 21
                          sessions to T (min 15): how unsteady the volatility is.
    ``liquidity_trend``   mean of ``log(traded value)`` over the 10 sessions to T (min 7) minus
                          its mean over the 63 sessions to T (min 40): liquidity drying up.
    ``stress_gap``        ``ewma_ratio - liquidity_trend``: volatility rising while liquidity dries
                          up, the signature of a fragile name (one split where trees need many).
    ``return_21``         sum of log total returns over the 21 sessions to T (min 15).
    ``return_63``         the same over 63 sessions (min 40).
    ``drawdown_63``       log total-return price at T minus its maximum over the 63 sessions to T
                          (min 21): how far under its quarter's high.
    ``downside_ratio``    ``downside_vol_63 / vol_63`` at T: the skew of the quarter's moves.
    ``beta``, ``residual_vol``  the panel's market beta and residual volatility at T.

Cross-sectional ranks (``<feature>_rank``): the percentile rank in (0, 1] of ``vol_21``,
``liquidity_trend`` and ``stress_gap`` among the instruments with a value at T.

Market features (the same for every instrument at T)
    ``market_vol_21``     standard deviation of the market return over the 21 sessions to T
                          (min 15), annualised.
    ``avg_correlation``   the panel's 63-session average pairwise correlation at T.
    ``regime_<state>``    the regime engine's filtered probability of ``state`` at T, when a
                          regimes frame is given (``FragilityConfig.regime_states``).
"""

from __future__ import annotations

import json
from typing import get_args

import numpy as np
import polars as pl

from prometheus_lib.config.models import FragilityConfig
from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["FEATURES", "feature_names", "panel_features"]

# Every feature a config may select: the names FragilityConfig.features accepts (tuple[Literal[...], ...]).
FEATURES: tuple[str, ...] = get_args(get_args(FragilityConfig.model_fields["features"].annotation)[0])
_ANNUAL = np.sqrt(252.0)


def _rolling(values: np.ndarray, op: str, window: int, min_count: int) -> np.ndarray:
    """Trailing ``op`` (mean, std, max, ...) over ``window`` rows per column, skipping NaN cells."""
    frame = pl.DataFrame(values, schema=[str(c) for c in range(values.shape[1])]).fill_nan(None)
    expr = getattr(pl.all(), f"rolling_{op}")(window, min_samples=min_count)
    return frame.select(expr).to_numpy().astype(np.float64)


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(a / b)


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(np.log(a / b))


def _rank(values: np.ndarray) -> np.ndarray:
    """Percentile rank in (0, 1] within each row (session) among its finite cells; NaN elsewhere."""
    frame = pl.DataFrame(values.T, schema=[str(r) for r in range(values.shape[0])]).fill_nan(None)
    ranks = frame.select(pl.all().rank("average") / pl.all().count()).to_numpy().T
    return ranks.astype(np.float64)


def _instrument_features(panel: MarketPanel) -> dict[str, np.ndarray]:
    listed = panel.listed
    r = np.where(listed, panel.log_return, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_traded = np.where(listed, _finite(np.log(panel.close * panel.volume)), np.nan)
        d_log_vol = np.diff(_finite(np.log(panel.vol_21)), axis=0, prepend=np.nan)
    # The panel's beta and residual vol regress simple returns on the simple MKT return: so does this.
    residual = np.expm1(r) - panel.beta * panel.market_return[:, None]
    price = np.where(listed, np.cumsum(np.where(np.isfinite(r), r, 0.0), axis=0), np.nan)
    out = {
        "vol_21": panel.vol_21,
        "vol_ratio": _log_ratio(panel.vol_21, panel.vol_63),
        "ewma_ratio": _log_ratio(panel.vol_ewma, panel.vol_63),
        "idio_vol_ratio": _log_ratio(_rolling(residual, "std", 10, 8) * _ANNUAL, panel.residual_vol),
        "vol_of_vol": _rolling(d_log_vol, "std", 21, 15),
        "liquidity_trend": _rolling(log_traded, "mean", 10, 7) - _rolling(log_traded, "mean", 63, 40),
        "return_21": _rolling(r, "sum", 21, 15),
        "return_63": _rolling(r, "sum", 63, 40),
        "drawdown_63": price - _rolling(price, "max", 63, 21),
        "downside_ratio": _ratio(panel.downside_vol_63, panel.vol_63),
        "beta": panel.beta,
        "residual_vol": panel.residual_vol,
    }
    out["stress_gap"] = out["ewma_ratio"] - out["liquidity_trend"]
    for name in ("vol_21", "liquidity_trend", "stress_gap"):
        out[f"{name}_rank"] = _rank(out[name])
    market_vol = _rolling(panel.market_return[:, None], "std", 21, 15) * _ANNUAL
    out["market_vol_21"] = np.broadcast_to(market_vol, r.shape)
    out["avg_correlation"] = np.broadcast_to(panel.avg_correlation[:, None], r.shape)
    return out


def _regime_features(panel: MarketPanel, regimes: pl.DataFrame, states: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``regime_<state>`` arrays from catalogue ``regimes`` rows of the panel's market (NaN where absent)."""
    rows = (regimes.filter(pl.col("market_id") == panel.market_id)
            .select("session_date", "probabilities_json").drop_nulls()
            .join(pl.DataFrame({"session_date": pl.Series(panel.sessions).cast(pl.Date),
                                "_row": np.arange(panel.n_sessions)}), on="session_date", how="inner"))
    probs = np.full((panel.n_sessions, len(states)), np.nan)
    for row, payload in zip(rows["_row"].to_list(), rows["probabilities_json"].to_list()):
        parsed = json.loads(payload)
        probs[row] = [np.nan if parsed.get(s) is None else float(parsed[s]) for s in states]
    shape = (panel.n_sessions, panel.n_instruments)
    return {f"regime_{s}": np.broadcast_to(probs[:, j:j + 1], shape) for j, s in enumerate(states)}


def feature_names(features: tuple[str, ...], regime_states: tuple[str, ...], with_regimes: bool) -> list[str]:
    """The model's columns, in order: ``features`` then, with regimes, ``regime_<state>``."""
    return [*features, *(f"regime_{s}" for s in regime_states if with_regimes)]


def panel_features(panel: MarketPanel, features: tuple[str, ...], regimes: pl.DataFrame | None = None,
                   regime_states: tuple[str, ...] = ()) -> np.ndarray:
    """Feature cube (sessions, instruments, features) in ``feature_names`` order."""
    arrays = _instrument_features(panel)
    if regimes is not None:
        arrays |= _regime_features(panel, regimes, regime_states)
    names = feature_names(features, regime_states, regimes is not None)
    cube = np.empty((panel.n_sessions, panel.n_instruments, len(names)))
    for j, name in enumerate(names):
        cube[:, :, j] = _finite(arrays[name])
    return cube
