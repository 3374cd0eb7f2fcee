"""The stability engine: per instrument per session, named stability components and an overall score.

Every component is in [0, 1] with 1 = most stable, computed at session T from the panel's rows
``<= T`` only (windows of ``W = window_sessions`` and ``S = short_window_sessions`` panel sessions
ending at T; cells without data are skipped). A raw measure ``x`` oriented so that larger is less
stable is mapped to [0, 1] by the monotone ``h(x, s) = 1 - tanh(max(x, 0) / s)`` (1 at x <= 0,
0.24 at x = s, towards 0 as x grows), with the scale ``s`` given per component below;
``pct(x)`` is the cross-sectional percentile of ``x`` at T among the instruments scored at T
((average rank - 1) / (n - 1), ties averaged; 0.5 when n = 1).

* ``volatility_level``: ``0.5 (1 - pct(vol_21)) + 0.5 h(log(vol_21 / mean vol_21 over W), 0.5)``:
  low volatility relative to the cross-section, and not above the instrument's own recent level.
* ``volatility_of_volatility``: ``h(std of log vol_21 over W, 0.3)``: how steady vol_21 has been
  (0.5, neutral, when the window holds too few values for a standard deviation).
* ``correlation_drift``: ``h(|corr_S - corr_W|, 0.5)`` where ``corr_S`` and ``corr_W`` are the
  correlations of the instrument's log returns with the market return over S and W sessions: a
  relationship to the market that is changing (idiosyncratic news, a decoupling) is less stable.
  An undefined correlation (a flat series, a missing market return) is neutral: 0.5.
* ``liquidity_stability``: ``0.5 h(|log(mean volume over S / over W)|, 0.5)
  + 0.5 h(CV of volume over W, 1.0)`` on split-adjusted volume (shares x close / total-return
  price, so a split does not move it): trading without a trend (collapse or surge) and
  without erratic swings. 0 when nothing traded in W; the trend term is 0 when nothing traded in S.
* ``drawdown_state``: ``h(dd, 0.15)`` with ``dd = 1 - P_T / max P over W`` on the total-return
  price rebuilt from the log returns (raw closes jump at splits): the fall from the trailing high.
* ``embedding_drift``: reserved for the instruments' text embeddings, which are not available
  yet: ``run(..., embeddings=None)`` leaves the component out; passing embeddings raises.

Volatilities are floored at ``1e-4`` (annualised) before logs and ratios. ``overall_score`` is the
weighted mean of the components with the weights of ``StabilityConfig`` (``*_weight``).

An instrument gets a row at T when it is listed at T (has a close), has a ``vol_21`` at T and has
at least ``S`` returns up to T; otherwise it has no row at T (too little history to judge it).
Rows depend on the panel's rows ``<= T`` only: windows use prefix sums, and the cross-section is
the one at T, so the output at T is the same whatever range is asked for and whatever follows T.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from prometheus_lib.config.models import StabilityConfig
from prometheus_lib.market_state.panel import MarketPanel
from prometheus_lib.stability._frames import JSON_DECIMALS, json_objects, percentile_rows
from prometheus_lib.storage.catalog import get_table

__all__ = ["COMPONENTS", "StabilityEngine", "StabilityResult", "stability_components"]

COMPONENTS = ("volatility_level", "volatility_of_volatility", "correlation_drift", "liquidity_stability",
              "drawdown_state")
ENTITY_TYPE = "INSTRUMENT"
_NEUTRAL = 0.5  # a component that cannot be measured at T
_VOL_FLOOR = 1e-4
_LEAST_STABLE = 5
# Scales s of h(x, s), per raw measure (see the module docstring).
_SCALE_OWN_VOL = 0.5
_SCALE_VOL_OF_VOL = 0.3
_SCALE_CORR_DRIFT = 0.5
_SCALE_VOLUME_TREND = 0.5
_SCALE_VOLUME_CV = 1.0
_SCALE_DRAWDOWN = 0.15


@dataclass(frozen=True)
class StabilityResult:
    """What ``StabilityEngine.run`` produced for the sessions in [start, end].

    ``vectors``: ``stability_vectors`` rows; ``sessions``: the sessions with at least one row,
    ascending; ``decisions`` / ``inputs``: one ``engine_decisions`` decision / inputs object per
    session of ``sessions`` (rows scored, mean overall score, the five least stable instruments;
    instruments listed and scored).
    """

    vectors: pl.DataFrame
    sessions: list[date]
    decisions: list[dict]
    inputs: list[dict]


def _h(x: np.ndarray, scale: float) -> np.ndarray:
    """``1 - tanh(max(x, 0) / scale)``: 1 for x <= 0, decreasing to 0."""
    return 1.0 - np.tanh(np.maximum(x, 0.0) / scale)


def _window_sums(x: np.ndarray, window: int) -> np.ndarray:
    """Sum over the ``window`` rows ending at each row (fewer at the top), from prefix sums."""
    prefix = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    rows = np.arange(1, x.shape[0] + 1)
    return prefix[rows] - prefix[np.maximum(rows - window, 0)]


def _window_moments(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sample standard deviation of the finite cells of ``x`` over each window.

    Each column is centred on its first finite value (data no window of a later row can miss) so
    that the prefix sums cancel little, and a constant column has a standard deviation of exactly 0.
    """
    ok = np.isfinite(x)
    origin = np.take_along_axis(x, np.argmax(ok, axis=0)[None, :], axis=0)
    z = np.where(ok, x - origin, 0.0)
    n = _window_sums(ok.astype(np.float64), window)
    s1, s2 = _window_sums(z, window), _window_sums(z * z, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 - s1 * mean, 0.0) / (n - 1.0)
    return n, np.where(n > 0, mean + origin, np.nan), np.where(n > 1, np.sqrt(var), np.nan)


def _window_correlation(r: np.ndarray, m: np.ndarray, window: int) -> np.ndarray:
    """Correlation of each column of ``r`` with ``m`` over the rows where both are finite; NaN if undefined."""
    ok = np.isfinite(r) & np.isfinite(m)[:, None]
    x = np.where(ok, r, 0.0)
    y = np.where(ok, np.broadcast_to(m[:, None], r.shape), 0.0)
    n = _window_sums(ok.astype(np.float64), window)
    sx, sy = _window_sums(x, window), _window_sums(y, window)
    sxx, syy, sxy = _window_sums(x * x, window), _window_sums(y * y, window), _window_sums(x * y, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx, vy = sxx - sx * sx / n, syy - sy * sy / n
        corr = cov / np.sqrt(vx * vy)
    defined = (n > 2) & (vx > 0) & (vy > 0)
    return np.where(defined, np.clip(corr, -1.0, 1.0), np.nan)


def _trailing_max(x: np.ndarray, window: int) -> np.ndarray:
    """Maximum over the ``window`` rows ending at each row (fewer at the top)."""
    out = x.copy()
    for lag in range(1, min(window, x.shape[0])):
        np.maximum(out[lag:], x[:-lag], out=out[lag:])
    return out


def stability_components(panel: MarketPanel, config: StabilityConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every session x instrument of ``panel``: which cells get a row, and each component there.

    Returns ``(scored, components)``: ``scored`` is the boolean (sessions, instruments) mask of
    the cells that get a row; ``components`` maps each name of ``COMPONENTS`` to a float array of
    the same shape, in [0, 1] on the scored cells (anything elsewhere).
    """
    w, s = config.window_sessions, config.short_window_sessions
    returns = panel.log_return
    n_returns = np.cumsum(np.isfinite(returns), axis=0)
    scored = panel.listed & np.isfinite(panel.vol_21) & (n_returns >= s)

    vol = np.maximum(panel.vol_21, _VOL_FLOOR)
    _, vol_mean, _ = _window_moments(vol, w)
    with np.errstate(invalid="ignore"):
        own = _h(np.log(vol / np.maximum(vol_mean, _VOL_FLOOR)), _SCALE_OWN_VOL)
    volatility_level = 0.5 * (1.0 - percentile_rows(vol, scored)) + 0.5 * own

    _, _, log_vol_std = _window_moments(np.log(vol), w)
    # Undefined (too few observations in the window): neutral, not "most stable".
    volatility_of_volatility = np.where(np.isfinite(log_vol_std), _h(np.nan_to_num(log_vol_std, nan=0.0),
                                                                      _SCALE_VOL_OF_VOL), _NEUTRAL)

    drift = np.abs(_window_correlation(returns, panel.market_return, s)
                   - _window_correlation(returns, panel.market_return, w))
    correlation_drift = np.where(np.isfinite(drift), _h(np.nan_to_num(drift, nan=0.0), _SCALE_CORR_DRIFT), _NEUTRAL)

    # Split-adjusted volume: shares x close / total-return price (a 2-for-1 split doubles the
    # shares traded and halves the close; the total-return price does not move).
    with np.errstate(over="ignore", invalid="ignore"):
        value = panel.volume * panel.close / np.exp(np.nancumsum(returns, axis=0))
    _, volume_short, _ = _window_moments(value, s)
    _, volume_long, volume_std = _window_moments(value, w)
    traded = volume_long > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = np.where(volume_short > 0, np.abs(np.log(volume_short / volume_long)), np.inf)
        cv = np.nan_to_num(volume_std / volume_long, nan=0.0)
    liquidity_stability = np.where(traded, 0.5 * _h(trend, _SCALE_VOLUME_TREND) + 0.5 * _h(cv, _SCALE_VOLUME_CV),
                                   0.0)

    wealth = np.cumsum(np.nan_to_num(returns, nan=0.0), axis=0)
    drawdown = 1.0 - np.exp(wealth - _trailing_max(wealth, w))
    drawdown_state = _h(drawdown, _SCALE_DRAWDOWN)

    return scored, {"volatility_level": volatility_level, "volatility_of_volatility": volatility_of_volatility,
                    "correlation_drift": correlation_drift, "liquidity_stability": liquidity_stability,
                    "drawdown_state": drawdown_state}


def component_weights(config: StabilityConfig) -> dict[str, float]:
    """The overall score's weight of each component, by component name (``stability.*_weight``)."""
    return {"volatility_level": config.volatility_level_weight,
            "volatility_of_volatility": config.volatility_of_volatility_weight,
            "correlation_drift": config.correlation_drift_weight,
            "liquidity_stability": config.liquidity_stability_weight,
            "drawdown_state": config.drawdown_state_weight}


class StabilityEngine:
    """Stability vectors of one market's instruments (see the module docstring)."""

    name = "stability"

    def __init__(self, config: StabilityConfig) -> None:
        self.config = config

    def run(self, panel: MarketPanel, start: date, end: date, embeddings: object | None = None) -> StabilityResult:
        """Stability rows of the instruments scored at each panel session in [start, end].

        ``embeddings`` is reserved for the ``embedding_drift`` component; it must be None until
        the instruments' embeddings exist.
        """
        if embeddings is not None:
            raise NotImplementedError("stability: embedding_drift needs instrument embeddings, which do not exist yet; "
                                      "pass embeddings=None")
        schema = dict(get_table("stability_vectors").polars_schema)
        rows = panel.rows_between(start, end)
        scored, components = stability_components(panel, self.config)
        scored = scored[rows]
        weights = component_weights(self.config)
        total = sum(weights.values())
        r, c = np.nonzero(scored)
        values = {name: np.round(np.clip(components[name][rows][r, c], 0.0, 1.0), JSON_DECIMALS)
                  for name in COMPONENTS}
        overall = np.clip(sum(weights[name] * values[name] for name in COMPONENTS) / total, 0.0, 1.0)
        ids = np.asarray(panel.instrument_ids, dtype=object)
        vectors = pl.DataFrame({
            "entity_id": pl.Series(ids[c].tolist(), dtype=pl.String),
            "session_date": pl.Series(panel.sessions[rows][r]).cast(pl.Date),
            "overall_score": overall,
            "components_json": json_objects(values),
        }).with_columns(entity_type=pl.lit(ENTITY_TYPE), market_id=pl.lit(panel.market_id),
                        config_hash=pl.lit(self.config.config_hash())).select(list(schema)).cast(schema)
        sessions, decisions, inputs = self._decisions(panel, rows, scored, r, c, overall)
        return StabilityResult(vectors=vectors, sessions=sessions, decisions=decisions, inputs=inputs)

    def _decisions(self, panel: MarketPanel, rows: np.ndarray, scored: np.ndarray, r: np.ndarray, c: np.ndarray,
                   overall: np.ndarray) -> tuple[list[date], list[dict], list[dict]]:
        """Per session with rows: its decision (count, mean overall, least stable) and inputs."""
        grid = np.full(scored.shape, np.inf)
        grid[r, c] = overall
        order = np.argsort(grid, axis=1, kind="stable")[:, :_LEAST_STABLE]  # ties: by instrument id
        n_scored = scored.sum(axis=1)
        n_listed = panel.listed[rows].sum(axis=1)
        sums = np.zeros(len(rows))
        np.add.at(sums, r, overall)
        days = panel.sessions[rows].astype(object)
        sessions, decisions, inputs = [], [], []
        for k in np.flatnonzero(n_scored):
            least = [[panel.instrument_ids[j], float(grid[k, j])] for j in order[k, : min(_LEAST_STABLE, n_scored[k])]]
            sessions.append(days[k])
            decisions.append({"n": int(n_scored[k]), "mean_overall": float(sums[k] / n_scored[k]),
                              "least_stable": least})
            inputs.append({"listed": int(n_listed[k]), "scored": int(n_scored[k]),
                           "window_sessions": self.config.window_sessions,
                           "short_window_sessions": self.config.short_window_sessions})
        return sessions, decisions, inputs
