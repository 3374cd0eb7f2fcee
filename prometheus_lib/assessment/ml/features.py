"""The assessment model's features: per instrument per session, each with its as-of rule.

Every feature at session T reads data dated at or before T only: panel rows ``<= T``,
``earnings_calls`` rows whose ``session_date`` (the session the call became known) is ``<= T``,
and the market-state arrays at rows ``<= T``. ``check_as_of`` enforces it on every run: it
perturbs everything after a probe session and requires each feature at or before the probe to
stay bit-identical, naming the first feature that moved (the leakage canary).

Instrument features are cross-sectionally ranked at T (``(rank + 0.5) / n - 0.5`` over the
instruments with a value, in [-0.5, 0.5]; Qlib's CSRankNorm): the model learns from where a
name stands among its peers at T, not from levels that drift over the years. Market features
(the same for every instrument at T) stay raw.

Groups (``AssessmentConfig.feature_groups``), windows in sessions ending at T:

``momentum``
    ``mom_12_1`` sum of log total returns over T-251..T-21 (min 200 present); ``mom_6_1`` over
    T-125..T-21 (min 100); ``ret_21`` over T-20..T (min 15); ``ret_5`` over T-4..T (min 4).
``volatility``
    ``vol_21``, ``vol_63``, ``vol_ewma`` (the panel's, at T); ``vol_ratio`` ``log(vol_21 /
    vol_63)``; ``beta``, ``residual_vol`` (the panel's 63-session regression on MKT at T);
    ``downside_ratio`` ``downside_vol_63 / vol_63``.
``liquidity``
    ``adv`` log mean traded value (close x volume) over T-20..T (min 11); ``liquidity_trend``
    mean log traded value over T-9..T (min 7) minus over T-62..T (min 40).
``alphas``
    ``rsi`` (Wilder, ``rsi_period``), ``ema_gap`` (``ema_fast / ema_slow - 1``), ``macd_norm``
    (the MACD signal line over the close), from ``prometheus_lib.assessment.alphas`` at T.
``earnings``
    From the latest call known at T (within the last 126 sessions, else NaN): ``sue``
    ``(eps_actual - eps_consensus) / |eps_consensus|``; ``call_reaction`` the instrument's log
    return on the call session minus the market's; ``sessions_since_call`` (raw, not ranked).
``market_state``
    ``regime_<state>``: the regime engine's filtered probability of each state at T (raw);
    ``stability``: the stability engine's overall score at T (ranked); ``market_vol_21``:
    annualised standard deviation of the market return over T-20..T (raw). The regime and
    stability arrays come from ``market_state_arrays`` (the engines run in memory over the
    panel, the same rows their assets write).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from prometheus_lib.assessment.alphas import compute_alphas
from prometheus_lib.config.models import AssessmentConfig, RegimeConfig, StabilityConfig
from prometheus_lib.errors import LookAheadError
from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["AssessmentInputs", "FeatureSet", "build_features", "check_as_of", "market_state_arrays"]

_ANNUAL = np.sqrt(252.0)
_CALL_MEMORY = 126  # sessions a call's features stay after it
# A feature function: inputs -> (sessions, instruments) array (research hooks and the canary).
ExtraFeature = Callable[["AssessmentInputs"], np.ndarray]


@dataclass(frozen=True, eq=False)
class AssessmentInputs:
    """What the assessment engine reads for one market, from its first priced session to T.

    ``calls`` holds the market's ``earnings_calls`` rows (``instrument_id``, ``session_date``,
    ``eps_actual``, ``eps_consensus``); ``regime_probabilities`` is (sessions, K) in
    ``regime_states`` order, NaN before the regime engine's first fit; ``stability`` is the
    (sessions, instruments) overall stability score, NaN where unscored.
    """

    panel: MarketPanel
    calls: pl.DataFrame | None = None
    regime_probabilities: np.ndarray | None = None
    regime_states: tuple[str, ...] = ()
    stability: np.ndarray | None = None
    # What produced the market-state arrays (e.g. the regime and stability configs' hashes): part of
    # the models' training hash, so a change there retrains instead of reusing stale models.
    fingerprint: str = ""

    def perturbed_after(self, row: int, rng: np.random.Generator) -> AssessmentInputs:
        """A copy whose every value dated after panel row ``row`` is scrambled (the as-of probe)."""
        p = self.panel
        changes = {}
        blank = rng.random(p.close[row + 1:].shape) < 0.05  # listings and gaps move too
        for name in ("close", "volume", "log_return", "vol_21", "vol_63", "vol_ewma", "downside_vol_63", "beta",
                     "residual_vol"):
            a = getattr(p, name).copy()
            a[row + 1:] = a[row + 1:] * rng.uniform(0.5, 1.5, a[row + 1:].shape) + rng.normal(0, 0.01, a[row + 1:].shape)
            a[row + 1:][blank] = np.nan
            changes[name] = a
        for name in ("market_return", "avg_correlation"):
            a = getattr(p, name).copy()
            a[row + 1:] = a[row + 1:] + rng.normal(0, 0.01, a[row + 1:].shape)
            changes[name] = a
        calls = self.calls
        later = p.sessions[row + 1:].astype("datetime64[D]").astype(object).tolist()
        if calls is not None and calls.height and later:
            cut = p.sessions[row].astype("datetime64[D]").astype(object)
            known, late = calls.filter(pl.col("session_date") <= cut), calls.filter(pl.col("session_date") > cut)
            # Later calls: other values, other sessions, and as many again for random instruments.
            ids = list(p.instrument_ids)
            extra = pl.DataFrame({
                "instrument_id": [ids[int(j)] for j in rng.integers(0, len(ids), late.height + 1)],
                "session_date": [later[int(j)] for j in rng.integers(0, len(later), late.height + 1)],
                "eps_actual": rng.normal(1.0, 1.0, late.height + 1), "eps_consensus": rng.normal(1.0, 0.2, late.height + 1),
            }).cast({c: t for c, t in calls.schema.items() if c in ("instrument_id", "session_date", "eps_actual",
                                                                    "eps_consensus")})
            moved = late.with_columns(
                pl.Series("session_date", [later[int(j)] for j in rng.integers(0, len(later), late.height)],
                          dtype=calls.schema["session_date"]),
                (pl.col("eps_actual") * 3.0 + 1.0).alias("eps_actual"))
            cols = ["instrument_id", "session_date", "eps_actual", "eps_consensus"]
            calls = pl.concat([known.select(cols), moved.select(cols), extra.select(cols)])
        regime = self.regime_probabilities
        if regime is not None:
            regime = regime.copy()
            regime[row + 1:] = rng.dirichlet(np.ones(regime.shape[1]), regime.shape[0] - row - 1)
        stability = self.stability
        if stability is not None:
            stability = stability.copy()
            stability[row + 1:] = rng.uniform(0, 1, stability[row + 1:].shape)
        return AssessmentInputs(p.replace(**changes), calls, regime, self.regime_states, stability, self.fingerprint)


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """The feature cube: ``values[t, i, f]`` (float32) of feature ``names[f]``."""

    names: tuple[str, ...]
    values: np.ndarray
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def feature(self, name: str) -> np.ndarray:
        return self.values[:, :, self.names.index(name)]


# ---------------------------------------------------------------------- helpers
def _trailing(x: np.ndarray, near: int, far: int, min_count: int, op: str = "sum") -> np.ndarray:
    """Sum (or mean) over rows T-far..T-near of each column, skipping NaN; NaN under ``min_count`` values."""
    finite = np.isfinite(x)
    cs = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(np.where(finite, x, 0.0), axis=0)])
    cn = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(finite, axis=0)])
    t = np.arange(x.shape[0])
    hi = np.clip(t - near + 1, 0, None)  # exclusive end: row T-near
    lo = np.clip(t - far, 0, None)
    s, n = cs[hi] - cs[lo], cn[hi] - cn[lo]
    valid = (n >= min_count) & (t - far >= 0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = s if op == "sum" else s / n
    return np.where(valid, out, np.nan)


def cross_sectional_rank(x: np.ndarray) -> np.ndarray:
    """Per row, ``(rank + 0.5) / n - 0.5`` over the finite cells (ties by column order); NaN elsewhere."""
    finite = np.isfinite(x)
    order = np.argsort(np.where(finite, x, np.inf), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(x.shape[1])[None, :].repeat(x.shape[0], axis=0), axis=1)
    n = finite.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ranks + 0.5) / n - 0.5
    return np.where(finite, out, np.nan)


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


def call_arrays(panel: MarketPanel, calls: pl.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """``(last_call_row, surprise)``: per cell, the row of the latest call known at T (-1 if none)
    and that call's surprise ``(actual - consensus) / |consensus|`` (NaN if undefined)."""
    t, n = panel.n_sessions, panel.n_instruments
    at = np.full((t, n), -1, dtype=np.int64)
    surprise_at = np.full((t, n), np.nan)
    if calls is not None and calls.height:
        col = {iid: j for j, iid in enumerate(panel.instrument_ids)}
        # A total order (two calls of one instrument on one session: the larger surprise row last),
        # so the result never depends on the order the rows came in.
        frame = calls.filter(pl.col("instrument_id").is_in(list(col))).sort(
            ["session_date", "instrument_id", "eps_actual", "eps_consensus"], nulls_last=True)
        days = frame["session_date"].to_numpy().astype("datetime64[D]")
        rows = np.searchsorted(panel.sessions, days)
        ok = (rows < t)
        ok[ok] &= panel.sessions[rows[ok]] == days[ok]
        cols = np.array([col[i] for i in frame["instrument_id"].to_list()], dtype=np.int64)
        actual = frame["eps_actual"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        consensus = frame["eps_consensus"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(np.abs(consensus) > 0, (actual - consensus) / np.abs(consensus), np.nan)
        at[rows[ok], cols[ok]] = rows[ok]
        surprise_at[rows[ok], cols[ok]] = s[ok]
    last = np.maximum.accumulate(at, axis=0)
    surprise = np.full((t, n), np.nan)
    has = last >= 0
    surprise[has] = surprise_at[last[has], np.nonzero(has)[1]]
    return last, surprise


def market_state_arrays(panel: MarketPanel, regime: RegimeConfig,
                        stability: StabilityConfig) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """``(regime_probabilities, state_names, stability)`` over the whole panel, computed in memory.

    The same engines, configs and walk-forward anchors as the market-state assets, so the values
    equal the stored rows; computed here so that a training row's features never depend on which
    partitions were materialised before.
    """
    from prometheus_lib.regime import RegimeEngine
    from prometheus_lib.stability.engine import component_weights, stability_components

    dates = panel.session_dates()
    probs = np.full((panel.n_sessions, len(regime.state_names)), np.nan)
    if dates:
        result = RegimeEngine(regime).run(panel, dates[0], dates[-1])
        if result.sessions:
            probs[panel.index_of(result.sessions[0]):] = result.probabilities
    scored, components = stability_components(panel, stability)
    weights = component_weights(stability)
    total = sum(weights.values())
    overall = sum(w * components[name] for name, w in weights.items()) / total
    return probs, tuple(regime.state_names), np.where(scored, overall, np.nan)


# ---------------------------------------------------------------------- the cube
def _group_features(group: str, inputs: AssessmentInputs, config: AssessmentConfig) -> dict[str, tuple[np.ndarray, bool]]:
    """``name -> (values, ranked)`` of one group."""
    p = inputs.panel
    r = p.log_return
    if group == "momentum":
        return {"mom_12_1": (_trailing(r, 21, 251, 200), True), "mom_6_1": (_trailing(r, 21, 125, 100), True),
                "ret_21": (_trailing(r, 0, 20, 15), True), "ret_5": (_trailing(r, 0, 4, 4), True)}
    if group == "volatility":
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = _log(p.vol_21 / p.vol_63)
            downside = p.downside_vol_63 / p.vol_63
        return {"vol_21": (p.vol_21, True), "vol_63": (p.vol_63, True), "vol_ewma": (p.vol_ewma, True),
                "vol_ratio": (ratio, True), "beta": (p.beta, True), "residual_vol": (p.residual_vol, True),
                "downside_ratio": (downside, True)}
    if group == "liquidity":
        traded = p.close * p.volume
        log_tv = _log(traded)
        return {"adv": (_log(_trailing(traded, 0, 20, 11, "mean")), True),
                "liquidity_trend": (_trailing(log_tv, 0, 9, 7, "mean") - _trailing(log_tv, 0, 62, 40, "mean"), True)}
    if group == "alphas":
        alphas = compute_alphas(p.close, alpha_params(config))
        return {"rsi": (alphas["rsi"].value, True), "ema_gap": (alphas["ema_cross"].value, True),
                "macd_norm": (alphas["macd"].value, True)}
    if group == "earnings":
        last, surprise = call_arrays(p, inputs.calls)
        rows = np.arange(p.n_sessions)[:, None]
        since = np.where(last >= 0, rows - last, np.nan).astype(float)
        recent = since < _CALL_MEMORY
        cols = np.broadcast_to(np.arange(p.n_instruments), last.shape)
        safe = np.where(last >= 0, last, 0)
        reaction = r[safe, cols] - p.market_return[safe]
        return {"sue": (np.where(recent, surprise, np.nan), True),
                "call_reaction": (np.where(recent, reaction, np.nan), True),
                "sessions_since_call": (np.where(recent, since, np.nan), False)}
    if group == "market_state":
        out: dict[str, tuple[np.ndarray, bool]] = {}
        if inputs.regime_probabilities is not None:
            for k, state in enumerate(inputs.regime_states):
                out[f"regime_{state}"] = (np.broadcast_to(inputs.regime_probabilities[:, k:k + 1], p.close.shape), False)
        if inputs.stability is not None:
            out["stability"] = (inputs.stability, True)
        m = p.market_return[:, None]
        sq = _trailing(m * m, 0, 20, 15, "mean")
        mean = _trailing(m, 0, 20, 15, "mean")
        vol = np.sqrt(np.maximum(sq - mean * mean, 0.0)) * _ANNUAL
        out["market_vol_21"] = (np.broadcast_to(vol, p.close.shape), False)
        return out
    raise ValueError(f"unknown assessment feature group {group!r}")


def alpha_params(config: AssessmentConfig) -> dict[str, dict[str, float]]:
    """The alphas' parameters from the config (``compute_alphas``'s ``params``)."""
    return {"rsi": {"period": config.rsi_period},
            "ema_cross": {"fast": config.ema_fast, "slow": config.ema_slow},
            "macd": {"fast": config.ema_fast, "slow": config.ema_slow, "signal": config.macd_signal,
                     "threshold": config.macd_threshold}}


def build_features(inputs: AssessmentInputs, config: AssessmentConfig,
                   extra: Mapping[str, ExtraFeature] | None = None) -> FeatureSet:
    """The feature cube of every session x instrument of ``inputs.panel`` (see the module docstring).

    ``extra`` adds research features (ranked like instrument features); they pass the same
    as-of check as the built-in ones.
    """
    p = inputs.panel
    names: list[str] = []
    columns: list[np.ndarray] = []
    groups: dict[str, tuple[str, ...]] = {}
    listed = p.listed
    specs = [(g, _group_features(g, inputs, config)) for g in config.feature_groups]
    if extra:
        specs.append(("extra", {name: (fn(inputs), True) for name, fn in extra.items()}))
    for group, features in specs:
        groups[group] = tuple(features)
        for name, (values, ranked) in features.items():
            values = np.where(listed, values, np.nan)
            names.append(name)
            columns.append((cross_sectional_rank(values) if ranked else values).astype(np.float32))
    cube = np.stack(columns, axis=2) if columns else np.empty((p.n_sessions, p.n_instruments, 0), np.float32)
    return FeatureSet(tuple(names), cube, groups)


def check_as_of(inputs: AssessmentInputs, config: AssessmentConfig, features: FeatureSet, probe_rows,
                extra: Mapping[str, ExtraFeature] | None = None, seed: int = 0) -> None:
    """Raise ``LookAheadError`` if any feature at or before a probe row reads data after it.

    For each probe row p, every input dated after p is scrambled (``perturbed_after``) and the
    features rebuilt; rows ``<= p`` must be bit-identical (NaN equal to NaN).
    """
    rng = np.random.default_rng(seed)
    dates = inputs.panel.session_dates()
    for p in probe_rows:
        p = int(p)
        if p < 0 or p >= inputs.panel.n_sessions - 1:
            continue
        moved = build_features(inputs.perturbed_after(p, rng), config, extra)
        a, b = features.values[:p + 1], moved.values[:p + 1]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        bad = ~same.all(axis=(0, 1))
        if bad.any():
            names = [features.names[f] for f in np.flatnonzero(bad)]
            first_row = int(np.argwhere(~same[:, :, int(np.flatnonzero(bad)[0])])[0][0])
            raise LookAheadError(
                f"assessment features {names} read data after the session they are dated: with every input "
                f"after {dates[p]} scrambled, their values at {dates[first_row]} (at or before it) changed")
