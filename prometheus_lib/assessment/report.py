"""Evaluation report for cross-sectional scores: IC, quantile returns, turnover, calibration.

The figures are the ones Qlib reports for a model (IC, ICIR, Rank IC, Rank ICIR, group returns,
long-short), computed so that they survive overlapping labels. Everything is vectorised with
polars ``group_by``/``over`` on ``session_date``; there is no Python loop over rows.

Input
-----
A panel with one row per ``(session_date, instrument_id)``:

``session_date``     the decision session (``Date``)
``instrument_id``    the instrument (``str``); unique within a session
``forward_return``   the realised *log* return over the ``horizon_sessions`` sessions after the
                     decision; null while it is not known yet. Rows with a null (or NaN/inf)
                     label are excluded from every label-based figure.
score columns        one or more float scores (higher = more bullish); null/NaN = no opinion
``probability``      optional calibrated ``P(forward_return > 0)``
``regime``           optional regime label, one per session (null = unlabelled)

Conventions
-----------
IC / Rank IC      per session, over the rows with both the score and the label: Pearson
                  correlation, and Spearman = Pearson of average ranks (ties share the mean
                  rank, as ``scipy.stats.spearmanr``). Sessions with fewer than ``min_names``
                  such rows are dropped; a session with a constant score or label has an
                  undefined (null) IC and is left out of the means.
ICIR              ``mean(IC) / std(IC, ddof=1)`` of the daily series, **not annualised** (as
                  Qlib). Same for the Rank ICIR.
t-stat            of the mean daily Rank IC. The labels of consecutive sessions overlap over
                  ``h = horizon_sessions`` sessions, so the daily IC series is autocorrelated
                  (an MA(h-1) by construction) and the naive ``mean / (std / sqrt(T))``
                  overstates significance by up to ``sqrt(h)``. ``rank_ic_t_stat`` uses the
                  **Hansen-Hodrick** long-run variance (uniform weights on the sample
                  autocovariances at lags ``1 .. h-1``, lags counted in rows of the daily
                  series), which is the consistent estimator for exactly that MA(h-1)
                  structure: ``S = g0 + 2 * sum_{j=1}^{h-1} g_j`` with
                  ``g_j = sum_t (x_t - m)(x_{t-j} - m) / T`` and ``t = m / sqrt(S / (T - 1))``
                  (which is the classic one-sample t-stat when ``h = 1``). Hansen-Hodrick can
                  be non-positive in small samples; then Newey-West (Bartlett weights
                  ``1 - j/h``, same lags) is used and ``t_stat_method`` says so.
                  ``rank_ic_t_stat_nonoverlap`` is the plain t-stat on the non-overlapping
                  subsample (sessions whose position in the panel's calendar is a multiple
                  of ``h``, counted from the first session) as a cross-check.
Quantiles         per session, over rows with both values and at least
                  ``max(min_names, quantiles)`` of them: rows are ordered by score, ties broken
                  by ``instrument_id`` (ascending), and the 0-based position ``k`` of ``n`` goes
                  to quantile ``floor(k * Q / n) + 1`` (1 = lowest score, Q = highest). The
                  quantile's return is the equal-weight mean of its names' log returns (an
                  average of log returns, not the log of the equal-weight portfolio's simple
                  return: slightly lower, by Jensen). ``mean_return`` is the mean over
                  sessions, per horizon (not annualised). Long-short = top minus bottom.
Long-short Sharpe on the **non-overlapping** subsample only (every ``h``-th session of the
                  calendar, as above): ``mean / std(ddof=1) * sqrt(252 / h)``; the annualised
                  return is ``mean * 252 / h`` and the cumulative figure the sum of those
                  log returns (log returns compound by summing).
Turnover          equal-weight turnover of the top quantile: for each session and the previous
                  one (consecutive among sessions with a quantile assignment), the share of
                  the top-quantile names that were not in the previous top quantile; the mean
                  over sessions. It depends on the score only, so rows whose label is not
                  known yet take part (the portfolio would still be traded).
Calibration       pooled over rows with a probability and a label; outcome
                  ``forward_return > 0`` (a zero is a miss). ``bins`` equal-width bins on
                  ``[0, 1]`` (1.0 falls in the last). Brier = ``mean((p - y)^2)``; the
                  reference is the base rate's ``b(1-b)`` and the skill ``1 - Brier/ref``;
                  ECE is the count-weighted mean absolute gap.

How this differs from Qlib
--------------------------
Qlib's label is ``Ref($close,-2)/Ref($close,-1)-1`` (buy at T+1, sell at T+2), it sums daily
returns (no compounding) and annualises with 238 sessions, and its static train/valid segments
have no purge gap. Here the label is the log return over ``horizon_sessions`` after the
decision, the long-short Sharpe uses non-overlapping periods with 252 sessions a year, and the
models are trained purged/embargoed. Qlib's published LightGBM/Alpha158 figures (CSI300,
2017-01 to 2020-08) are carried in :data:`QLIB_LIGHTGBM_ALPHA158` for reference only.

Output
------
:func:`evaluate` returns a JSON-serialisable dict (floats rounded to 6 significant digits,
NaN/inf as ``None``, dates as ISO strings); :func:`write_report` writes ``report.html``,
``ic.png``, ``quantiles.png``, ``calibration.png`` and ``report.json`` atomically.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prometheus_lib.errors import DataValidationError

__all__ = [
    "PERIODS_PER_YEAR",
    "QLIB_LIGHTGBM_ALPHA158",
    "calibration",
    "daily_ic",
    "evaluate",
    "ic_by_group",
    "ic_summary",
    "quantile_returns",
    "top_quantile_turnover",
    "write_report",
]

PERIODS_PER_YEAR = 252
"""Sessions per year used to annualise (Qlib uses 238)."""

QLIB_LIGHTGBM_ALPHA158: dict[str, float] = {
    "ic_mean": 0.0448,
    "icir": 0.366,
    "rank_ic_mean": 0.0469,
    "rank_icir": 0.388,
}
"""Qlib's published LightGBM on Alpha158 (CSI300, test 2017-01 to 2020-08, 20 seeds, 1-day label)."""

_DATE = "session_date"
_ID = "instrument_id"
_RET = "forward_return"
_SIGNIFICANT = 6


# --------------------------------------------------------------------------------------------
# Preparation


def _require(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"report: frame lacks column(s) {missing}; it has {frame.columns}"
        )


def _finite(name: str) -> pl.Expr:
    """``name`` as Float64 with NaN/inf turned into null."""
    col = pl.col(name).cast(pl.Float64)
    return pl.when(col.is_finite()).then(col).otherwise(None).alias(name)


def _check_unique(frame: pl.DataFrame) -> None:
    if frame.height and frame.select(_DATE, _ID).is_duplicated().any():
        raise DataValidationError(
            "report: (session_date, instrument_id) must be unique; the frame repeats some pairs"
        )


def _calendar(frame: pl.DataFrame) -> pl.DataFrame:
    """Every session of the panel in order, with its 0-based position ``session_index``."""
    return (
        frame.select(pl.col(_DATE).unique().sort())
        .with_row_index("session_index")
        .with_columns(pl.col("session_index").cast(pl.Int64))
    )


def _pairs(frame: pl.DataFrame, score: str, label: str = _RET) -> pl.DataFrame:
    """Rows with a finite score and a finite label: ``session_date, instrument_id, s, r``."""
    _require(frame, [_DATE, _ID, score, label])
    return (
        frame.select(_DATE, _ID, _finite(score).alias("s"), _finite(label).alias("r"))
        .drop_nulls(["s", "r"])
    )


def _check_horizon(horizon_sessions: int) -> None:
    if int(horizon_sessions) != horizon_sessions or horizon_sessions < 1:
        raise DataValidationError(f"report: horizon_sessions must be an integer >= 1, got {horizon_sessions!r}")


def _check_quantiles(quantiles: int) -> None:
    if int(quantiles) != quantiles or quantiles < 2:
        raise DataValidationError(f"report: quantiles must be an integer >= 2, got {quantiles!r}")


# --------------------------------------------------------------------------------------------
# Information coefficient


def daily_ic(frame: pl.DataFrame, score: str, *, min_names: int = 10) -> pl.DataFrame:
    """Per-session IC (Pearson) and Rank IC (Spearman, average ranks) of ``score`` vs the label.

    Returns ``session_date, session_index, ic, rank_ic, n`` sorted by session, ``n`` being the
    rows with both values; sessions with ``n < min_names`` are dropped. ``session_index`` is the
    session's position among all sessions of ``frame`` (used for non-overlapping subsamples).
    An undefined correlation (constant score or label in the session) is null.
    """
    _check_unique(frame)
    pairs = _pairs(frame, score)
    ranked = pairs.with_columns(
        pl.col("s").rank("average").over(_DATE).cast(pl.Float64).alias("rs"),
        pl.col("r").rank("average").over(_DATE).cast(pl.Float64).alias("rr"),
    )
    daily = (
        ranked.group_by(_DATE)
        .agg(
            pl.corr("s", "r").alias("ic"),
            pl.corr("rs", "rr").alias("rank_ic"),
            pl.len().cast(pl.Int64).alias("n"),
        )
        .filter(pl.col("n") >= min_names)
        .with_columns(_finite("ic"), _finite("rank_ic"))
    )
    return (
        daily.join(_calendar(frame), on=_DATE, how="left")
        .select(_DATE, "session_index", "ic", "rank_ic", "n")
        .sort(_DATE)
    )


def _t_stat(x: np.ndarray) -> float:
    t = x.size
    if t < 2:
        return math.nan
    sd = float(np.std(x, ddof=1))
    return float(np.mean(x) / (sd / math.sqrt(t))) if sd > 0 else math.nan


def _overlap_t_stat(x: np.ndarray, horizon_sessions: int) -> tuple[float, str]:
    """t-stat of ``mean(x)`` with a Hansen-Hodrick long-run variance over lags ``1 .. h-1``."""
    t = x.size
    if horizon_sessions == 1:
        return _t_stat(x), "iid"
    if t < 2:
        return math.nan, "hansen-hodrick"
    lags = min(horizon_sessions - 1, t - 1)
    d = x - x.mean()
    gammas = np.array([np.dot(d[j:], d[: t - j]) / t for j in range(lags + 1)])
    s_hh = gammas[0] + 2.0 * gammas[1:].sum()
    method = "hansen-hodrick"
    s = s_hh
    if not s_hh > 0:
        weights = 1.0 - np.arange(1, lags + 1) / (horizon_sessions)
        s = gammas[0] + 2.0 * float(np.dot(weights, gammas[1:]))
        method = "newey-west"
    if not s > 0:
        return math.nan, method
    return float(x.mean() / math.sqrt(s / (t - 1))), method


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def ic_summary(daily: pl.DataFrame, *, horizon_sessions: int = 1) -> dict[str, Any]:
    """Summarise a :func:`daily_ic` series.

    Returns ``n_sessions`` (sessions with a defined Rank IC), ``mean_names``, ``ic_mean``,
    ``ic_std``, ``icir`` (= ``ic_mean / ic_std``, ddof=1, not annualised), ``rank_ic_mean``,
    ``rank_ic_std``, ``rank_icir``, ``rank_ic_hit_rate`` (share of sessions with Rank IC > 0),
    ``rank_ic_t_stat`` (overlap-corrected, see the module docstring), ``t_stat_method``,
    ``rank_ic_t_stat_nonoverlap`` and ``n_nonoverlap``.
    """
    _check_horizon(horizon_sessions)
    daily = daily.sort(_DATE)
    ic = daily["ic"].drop_nulls().to_numpy().astype(float)
    rank = daily.filter(pl.col("rank_ic").is_not_null())
    ric = rank["rank_ic"].to_numpy().astype(float)
    if "session_index" in rank.columns:
        position = rank["session_index"].to_numpy()
    else:
        position = np.arange(rank.height)
    sub = ric[position % horizon_sessions == 0]
    t_hh, method = _overlap_t_stat(ric, horizon_sessions)
    ic_mean, ic_std = _mean(ic), _std(ic)
    r_mean, r_std = _mean(ric), _std(ric)
    return {
        "n_sessions": int(ric.size),
        "mean_names": float(rank["n"].mean()) if rank.height else math.nan,
        "ic_mean": ic_mean,
        "ic_std": ic_std,
        "icir": _ratio(ic_mean, ic_std),
        "rank_ic_mean": r_mean,
        "rank_ic_std": r_std,
        "rank_icir": _ratio(r_mean, r_std),
        "rank_ic_hit_rate": float(np.mean(ric > 0)) if ric.size else math.nan,
        "rank_ic_t_stat": t_hh,
        "t_stat_method": method,
        "rank_ic_t_stat_nonoverlap": _t_stat(sub),
        "n_nonoverlap": int(sub.size),
    }


def _session_labels(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """One label per session from column ``key`` (null sessions dropped); raises on conflicts."""
    _require(frame, [_DATE, key])
    labels = frame.group_by(_DATE).agg(
        pl.col(key).drop_nulls().n_unique().alias("_k"), pl.col(key).drop_nulls().min().alias("group")
    )
    bad = labels.filter(pl.col("_k") > 1)
    if bad.height:
        raise DataValidationError(
            f"report: column {key!r} must hold one label per session; {bad.height} session(s) "
            f"have several, e.g. {bad.sort(_DATE)[_DATE][0]}"
        )
    return labels.drop("_k").drop_nulls("group").with_columns(pl.col("group").cast(pl.String))


def ic_by_group(
    daily: pl.DataFrame,
    key: str = "year",
    *,
    frame: pl.DataFrame | None = None,
    horizon_sessions: int = 1,
) -> dict[str, dict[str, Any]]:
    """:func:`ic_summary` per calendar year (``key="year"``) or per per-session label column.

    For a label column (e.g. ``"regime"``) ``frame`` supplies the label of each session;
    sessions whose label is null are left out. Groups are returned sorted by label.
    """
    if key == "year":
        grouped = daily.with_columns(pl.col(_DATE).dt.year().cast(pl.String).alias("group"))
    else:
        if frame is None:
            raise DataValidationError(f"report: ic_by_group({key!r}) needs the frame holding the labels")
        grouped = daily.join(_session_labels(frame, key), on=_DATE, how="inner")
    out: dict[str, dict[str, Any]] = {}
    for (group,), part in sorted(grouped.partition_by("group", as_dict=True).items()):
        out[str(group)] = ic_summary(part.drop("group"), horizon_sessions=horizon_sessions)
    return out


# --------------------------------------------------------------------------------------------
# Quantiles and turnover


def _assign_quantiles(pairs: pl.DataFrame, quantiles: int, min_names: int) -> pl.DataFrame:
    """Add ``q`` (1 = lowest score) to rows with ``s``; sessions with too few rows dropped."""
    least = max(int(min_names), int(quantiles))
    return (
        pairs.sort([_DATE, "s", _ID])
        .with_columns(
            pl.int_range(pl.len()).over(_DATE).cast(pl.Int64).alias("_k"),
            pl.len().over(_DATE).cast(pl.Int64).alias("_n"),
        )
        .filter(pl.col("_n") >= least)
        .with_columns(((pl.col("_k") * quantiles) // pl.col("_n") + 1).cast(pl.Int32).alias("q"))
        .drop("_k", "_n")
    )


def quantile_returns(
    frame: pl.DataFrame,
    score: str,
    quantiles: int = 10,
    *,
    horizon_sessions: int = 1,
    min_names: int = 10,
) -> dict[str, Any]:
    """Mean label per score quantile, and the top-minus-bottom long-short.

    Returns ``quantiles``, ``mean_return`` (``quantiles`` values, lowest score first: mean over
    sessions of the equal-weight mean log return, per horizon), ``mean_count`` (names per
    quantile, mean over sessions), ``monotonicity`` (Spearman of quantile number vs
    ``mean_return``), ``long_short_mean`` and ``long_short_hit_rate`` over all sessions, and on the
    non-overlapping subsample ``n_periods``, ``long_short_ann_return`` (``mean * 252/h``),
    ``long_short_ann_vol``, ``long_short_sharpe`` and ``long_short_cum_log_return``; plus
    ``n_sessions`` and ``periods_per_year`` (``252/h``).
    """
    _check_horizon(horizon_sessions)
    _check_quantiles(quantiles)
    _check_unique(frame)
    assigned = _assign_quantiles(_pairs(frame, score), quantiles, min_names)
    per = assigned.group_by([_DATE, "q"]).agg(pl.col("r").mean().alias("ret"), pl.len().alias("count"))
    by_q = per.group_by("q").agg(pl.col("ret").mean(), pl.col("count").mean()).sort("q")
    mean_return = [math.nan] * quantiles
    mean_count = [0.0] * quantiles
    for q, ret, count in by_q.iter_rows():  # at most `quantiles` rows
        mean_return[q - 1] = float(ret)
        mean_count[q - 1] = float(count)
    ls = (
        per.group_by(_DATE)
        .agg(
            (pl.col("ret").filter(pl.col("q") == quantiles).first()
             - pl.col("ret").filter(pl.col("q") == 1).first()).alias("ls")
        )
        .join(_calendar(frame), on=_DATE, how="left")
        .sort(_DATE)
    )
    every = ls["ls"].to_numpy().astype(float)
    sub = ls.filter(pl.col("session_index") % horizon_sessions == 0)["ls"].to_numpy().astype(float)
    per_year = PERIODS_PER_YEAR / horizon_sessions
    sub_mean, sub_std = _mean(sub), _std(sub)
    finite = np.isfinite(mean_return)
    if finite.sum() > 1:
        q_ranks = np.arange(1, quantiles + 1, dtype=float)[finite]
        monotonicity = _spearman(q_ranks, np.asarray(mean_return)[finite])
    else:
        monotonicity = math.nan
    return {
        "quantiles": int(quantiles),
        "mean_return": mean_return,
        "mean_count": mean_count,
        "monotonicity": monotonicity,
        "long_short_mean": _mean(every),
        "long_short_hit_rate": float(np.mean(every > 0)) if every.size else math.nan,
        "n_sessions": int(every.size),
        "n_periods": int(sub.size),
        "periods_per_year": per_year,
        "long_short_ann_return": sub_mean * per_year,
        "long_short_ann_vol": sub_std * math.sqrt(per_year),
        "long_short_sharpe": _ratio(sub_mean, sub_std) * math.sqrt(per_year),
        "long_short_cum_log_return": float(sub.sum()) if sub.size else math.nan,
    }


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = pl.Series(x).rank("average").to_numpy().astype(float)
    ry = pl.Series(y).rank("average").to_numpy().astype(float)
    if np.std(rx) == 0 or np.std(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def top_quantile_turnover(
    frame: pl.DataFrame, score: str, quantiles: int = 10, *, min_names: int = 10
) -> float:
    """Mean share of the top-quantile names that were not in the previous session's top quantile.

    Uses the score only (rows whose label is still null take part). Consecutive means
    consecutive among the sessions with at least ``max(min_names, quantiles)`` scored names.
    NaN when fewer than two such sessions exist.
    """
    _check_quantiles(quantiles)
    _require(frame, [_DATE, _ID, score])
    _check_unique(frame)
    scored = frame.select(_DATE, _ID, _finite(score).alias("s")).drop_nulls("s")
    top = _assign_quantiles(scored, quantiles, min_names).filter(pl.col("q") == quantiles).select(_DATE, _ID)
    sessions = top.select(pl.col(_DATE).unique().sort()).with_columns(pl.col(_DATE).shift(1).alias("_prev"))
    previous = top.rename({_DATE: "_prev"}).with_columns(pl.lit(True).alias("_held"))
    turnover = (
        top.join(sessions, on=_DATE, how="left")
        .filter(pl.col("_prev").is_not_null())
        .join(previous, on=["_prev", _ID], how="left")
        .group_by(_DATE)
        .agg((1.0 - pl.col("_held").fill_null(False).cast(pl.Float64).mean()).alias("turnover"))
    )
    return float(turnover["turnover"].mean()) if turnover.height else math.nan


# --------------------------------------------------------------------------------------------
# Calibration


def calibration(frame: pl.DataFrame, prob: str = "probability", bins: int = 10) -> dict[str, Any]:
    """Reliability curve and Brier score of ``prob`` as ``P(forward_return > 0)``.

    Returns ``n``, ``brier``, ``base_rate``, ``brier_reference`` (``b(1-b)``), ``brier_skill``,
    ``ece`` and ``bins``: ``bins`` dicts ``{lower, upper, count, mean_predicted,
    observed_frequency}`` (the means null for an empty bin). Rows with a null probability or
    label are skipped; probabilities outside ``[0, 1]`` raise.
    """
    if int(bins) != bins or bins < 1:
        raise DataValidationError(f"report: bins must be an integer >= 1, got {bins!r}")
    pairs = _pairs(frame, prob)
    if pairs.height and not pairs.select(pl.col("s").is_between(0.0, 1.0).all()).item():
        raise DataValidationError(f"report: column {prob!r} must lie in [0, 1]")
    data = pairs.select(
        pl.col("s").alias("p"),
        (pl.col("r") > 0).cast(pl.Float64).alias("y"),
        (pl.col("s") * bins).floor().cast(pl.Int64).clip(0, bins - 1).alias("bin"),
    )
    grouped = data.group_by("bin").agg(
        pl.len().alias("count"), pl.col("p").mean().alias("mp"), pl.col("y").mean().alias("oy")
    )
    table = {b: (c, mp, oy) for b, c, mp, oy in grouped.iter_rows()}  # at most `bins` rows
    n = data.height
    rows = []
    ece = 0.0
    for b in range(bins):
        count, mp, oy = table.get(b, (0, None, None))
        if count:
            ece += count / n * abs(mp - oy)
        rows.append({
            "lower": b / bins,
            "upper": (b + 1) / bins,
            "count": int(count),
            "mean_predicted": None if mp is None else float(mp),
            "observed_frequency": None if oy is None else float(oy),
        })
    if n:
        p = data["p"].to_numpy()
        y = data["y"].to_numpy()
        brier = float(np.mean((p - y) ** 2))
        base = float(y.mean())
    else:
        brier = base = math.nan
    reference = base * (1.0 - base)
    return {
        "n": int(n),
        "brier": brier,
        "base_rate": base,
        "brier_reference": reference,
        "brier_skill": 1.0 - brier / reference if reference > 0 else math.nan,
        "ece": ece if n else math.nan,
        "bins": rows,
    }


# --------------------------------------------------------------------------------------------
# Evaluation


def _clean(value: Any) -> Any:
    """JSON-ready copy: floats to 6 significant digits, NaN/inf to None, dates to ISO."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return float(f"{x:.{_SIGNIFICANT}g}") if math.isfinite(x) else None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def evaluate(
    frame: pl.DataFrame,
    scores: Sequence[str],
    horizon_sessions: int,
    regime_col: str | None = "regime",
    quantiles: int = 10,
    *,
    prob_col: str | None = "probability",
    min_names: int = 10,
) -> dict[str, Any]:
    """Evaluate every score of ``frame``; return a JSON-serialisable dict.

    Layout::

        {"conventions": {horizon_sessions, quantiles, min_names, periods_per_year, label,
                         icir, t_stat, long_short_sharpe, turnover, qlib_differences},
         "sample": {first_session, last_session, n_sessions, n_rows, n_labelled},
         "scores": {<score>: {"ic": ic_summary, "by_year": {year: ic_summary},
                              "by_regime": {label: ic_summary}, "quantiles": quantile_returns,
                              "turnover": {"top_quantile": float},
                              "daily": {"session_date": [iso], "ic": [...], "rank_ic": [...],
                                        "n": [...]}}},
         "calibration": calibration(...) or None (no ``prob_col``),
         "reference": {"qlib_lightgbm_alpha158": {...}},
         "oracle": None}

    ``by_regime`` is ``{}`` when ``regime_col`` is not in the frame. ``oracle`` is left for the
    caller to fill (e.g. the planted signals' realised ICs on synthetic data).
    """
    _check_horizon(horizon_sessions)
    _check_quantiles(quantiles)
    if isinstance(scores, str):
        scores = [scores]
    if not scores:
        raise DataValidationError("report: evaluate needs at least one score column")
    _require(frame, [_DATE, _ID, _RET, *scores])
    _check_unique(frame)
    labelled = frame.select(_finite(_RET)).drop_nulls().height
    sessions = frame[_DATE]
    out: dict[str, Any] = {
        "conventions": {
            "horizon_sessions": int(horizon_sessions),
            "quantiles": int(quantiles),
            "min_names": int(min_names),
            "periods_per_year": PERIODS_PER_YEAR,
            "label": f"log return over the {horizon_sessions} session(s) after the decision session",
            "icir": "mean/std (ddof=1) of the daily IC, not annualised (as Qlib)",
            "t_stat": (f"Rank IC mean with a Hansen-Hodrick long-run variance over lags 1..{horizon_sessions - 1} "
                       "(Newey-West if not positive); cross-check on non-overlapping sessions"),
            "long_short_sharpe": (f"on non-overlapping periods (every {horizon_sessions}th session), "
                                  f"annualised with {PERIODS_PER_YEAR}/{horizon_sessions} periods a year; "
                                  "returns are log, summed over periods"),
            "turnover": "mean share of top-quantile names not in the previous session's top quantile",
            "qlib_differences": _QLIB_PARAGRAPH,
        },
        "sample": {
            "first_session": sessions.min() if frame.height else None,
            "last_session": sessions.max() if frame.height else None,
            "n_sessions": int(sessions.n_unique()),
            "n_rows": int(frame.height),
            "n_labelled": int(labelled),
        },
        "scores": {},
        "calibration": None,
        "reference": {"qlib_lightgbm_alpha158": dict(QLIB_LIGHTGBM_ALPHA158)},
        "oracle": None,
    }
    has_regime = regime_col is not None and regime_col in frame.columns
    for score in scores:
        daily = daily_ic(frame, score, min_names=min_names)
        out["scores"][score] = {
            "ic": ic_summary(daily, horizon_sessions=horizon_sessions),
            "by_year": ic_by_group(daily, "year", horizon_sessions=horizon_sessions),
            "by_regime": (
                ic_by_group(daily, regime_col, frame=frame, horizon_sessions=horizon_sessions)
                if has_regime else {}
            ),
            "quantiles": quantile_returns(
                frame, score, quantiles, horizon_sessions=horizon_sessions, min_names=min_names
            ),
            "turnover": {"top_quantile": top_quantile_turnover(frame, score, quantiles, min_names=min_names)},
            "daily": {
                "session_date": daily[_DATE].to_list(),
                "ic": daily["ic"].to_list(),
                "rank_ic": daily["rank_ic"].to_list(),
                "n": daily["n"].to_list(),
            },
        }
    if prob_col is not None and prob_col in frame.columns:
        out["calibration"] = calibration(frame, prob_col)
    return _clean(out)


_QLIB_PARAGRAPH = (
    "Qlib's label is Ref($close,-2)/Ref($close,-1)-1 (buy at T+1, sell at T+2); it sums daily "
    "returns without compounding and annualises with 238 sessions, and its static train/valid "
    "segments have no purge gap, so the last training labels use validation-period prices. Here "
    "the label is the log return over the horizon after the decision session, the long-short "
    "Sharpe uses non-overlapping periods (252 sessions a year), the Rank IC t-stat is corrected "
    "for overlapping labels, and training is purged and embargoed. ICIR is mean/std of the daily "
    "IC, not annualised, as in Qlib."
)


# --------------------------------------------------------------------------------------------
# Writing


_FILES = ("report.json", "ic.png", "quantiles.png", "calibration.png", "report.html")


def write_report(
    result: Mapping[str, Any],
    directory: Path,
    title: str,
    oracle: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``report.html``, ``ic.png``, ``quantiles.png``, ``calibration.png``, ``report.json``.

    ``result`` is what :func:`evaluate` returned; ``oracle`` (if given) replaces its ``"oracle"``
    slot: a mapping ``name -> {field: value}`` or ``name -> value``, or a list of row dicts
    (e.g. ``DataFrame.to_dicts()``). The HTML references the PNGs by relative path.

    All files are first written to a temporary directory beside ``directory`` and then moved in
    with ``os.replace`` (JSON and PNGs first, the HTML last), so a crash while rendering leaves
    the previous report untouched. Drawing uses matplotlib's Agg canvas on a bare ``Figure``
    (no ``pyplot``, so the process-wide backend and other figures are left alone), and PNGs are
    written without version metadata, so the same inputs give the same bytes. Returns
    ``{"html", "json", "ic", "quantiles", "calibration"}`` paths.
    """
    result = dict(result)
    if oracle is not None:
        result["oracle"] = _clean(oracle if isinstance(oracle, Mapping) else list(oracle))
    result = _clean(result)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        payloads = {
            "report.json": json.dumps(result, indent=1, sort_keys=True).encode("utf-8"),
            "ic.png": _ic_png(result),
            "quantiles.png": _quantiles_png(result),
            "calibration.png": _calibration_png(result),
            "report.html": _render_html(result, title).encode("utf-8"),
        }
        for name in _FILES:
            with open(tmp / name, "wb") as f:
                f.write(payloads[name])
                f.flush()
                os.fsync(f.fileno())
        directory.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            os.replace(tmp / name, directory / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "html": directory / "report.html",
        "json": directory / "report.json",
        "ic": directory / "ic.png",
        "quantiles": directory / "quantiles.png",
        "calibration": directory / "calibration.png",
    }


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    fig.clear()
    return buffer.getvalue()


def _ic_png(result: Mapping[str, Any]) -> bytes:
    fig = _figure(9, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    plotted = False
    for name, part in result.get("scores", {}).items():
        days = [date.fromisoformat(d) for d in part["daily"]["session_date"]]
        ric = np.array([0.0 if v is None else v for v in part["daily"]["rank_ic"]], dtype=float)
        if days:
            ax.plot(days, np.cumsum(ric), label=name, linewidth=1.2)
            plotted = True
    ax.axhline(0.0, color="#999", linewidth=0.8)
    ax.set_title("Cumulative daily Rank IC (null sessions count as 0)")
    ax.set_ylabel("sum of daily Rank IC")
    if plotted:
        ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def _quantiles_png(result: Mapping[str, Any]) -> bytes:
    scores = list(result.get("scores", {}).items())
    cols = min(3, max(1, len(scores)))
    rows = max(1, math.ceil(len(scores) / cols))
    fig = _figure(4.2 * cols, 3.2 * rows)
    horizon = result.get("conventions", {}).get("horizon_sessions", 1)
    for i, (name, part) in enumerate(scores):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = np.array([math.nan if v is None else v * 1e4 for v in part["quantiles"]["mean_return"]])
        xs = np.arange(1, values.size + 1)
        colors = ["#2a7" if v >= 0 else "#c44" for v in np.nan_to_num(values)]
        ax.bar(xs, np.nan_to_num(values), color=colors)
        ax.axhline(0.0, color="#999", linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(xs)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("quantile (1 = lowest score)", fontsize=8)
        ax.set_ylabel(f"mean {horizon}-session log return (bp)", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _calibration_png(result: Mapping[str, Any]) -> bytes:
    fig = _figure(5.5, 5.5)
    cal = result.get("calibration")
    ax = fig.add_subplot(2, 1, 1) if cal else fig.add_subplot(1, 1, 1)
    if not cal or not cal.get("n"):
        ax.text(0.5, 0.5, "no calibrated probability in this evaluation", ha="center", va="center")
        ax.set_axis_off()
        fig.tight_layout()
        return _png(fig)
    used = [b for b in cal["bins"] if b["count"]]
    ax.plot([0, 1], [0, 1], color="#999", linewidth=0.8, linestyle="--")
    ax.plot([b["mean_predicted"] for b in used], [b["observed_frequency"] for b in used], marker="o")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed P(return > 0)")
    ax.set_title(f"Reliability (Brier {_fmt(cal['brier'], 4)})")
    hist = fig.add_subplot(2, 1, 2)
    width = 1.0 / max(1, len(cal["bins"]))
    hist.bar([(b["lower"] + b["upper"]) / 2 for b in cal["bins"]], [b["count"] for b in cal["bins"]],
             width=width * 0.9, color="#57a")
    hist.set_xlim(0, 1)
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("rows")
    fig.tight_layout()
    return _png(fig)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def _bp(value: Any) -> str:
    return "n/a" if value is None else f"{value * 1e4:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


_IC_HEADER = ("", "sessions", "names", "IC", "ICIR", "Rank IC", "Rank ICIR", "Rank IC > 0",
              "t (overlap-corrected)", "t (non-overlapping)")


def _ic_row(label: str, s: Mapping[str, Any]) -> list[str]:
    return [label, _fmt(s["n_sessions"]), _fmt(s["mean_names"], 1), _fmt(s["ic_mean"]), _fmt(s["icir"], 3),
            _fmt(s["rank_ic_mean"]), _fmt(s["rank_icir"], 3), _pct(s["rank_ic_hit_rate"], 1),
            f"{_fmt(s['rank_ic_t_stat'], 2)} ({s['t_stat_method']})",
            f"{_fmt(s['rank_ic_t_stat_nonoverlap'], 2)} (n={s['n_nonoverlap']})"]


def _oracle_html(oracle: Any) -> str:
    if not oracle:
        return "<p>No oracle supplied.</p>"
    if isinstance(oracle, Mapping):
        values = list(oracle.values())
        if all(isinstance(v, Mapping) for v in values):
            fields = sorted({k for v in values for k in v})
            return _table(["", *fields], [[k, *(_fmt(v.get(f)) for f in fields)] for k, v in oracle.items()])
        return _table(["", "value"], [[k, _fmt(v)] for k, v in oracle.items()])
    rows = [r for r in oracle if isinstance(r, Mapping)]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    return _table(fields, [[_fmt(r.get(f)) for f in fields] for r in rows])


def _render_html(result: Mapping[str, Any], title: str) -> str:
    t = html.escape(title)
    conv = result.get("conventions", {})
    sample = result.get("sample", {})
    scores: Mapping[str, Any] = result.get("scores", {})
    h = conv.get("horizon_sessions", 1)
    parts: list[str] = []

    ic_rows = [_ic_row(name, part["ic"]) for name, part in scores.items()]
    ref = result.get("reference", {}).get("qlib_lightgbm_alpha158")
    if ref:
        ic_rows.append(["Qlib LightGBM/Alpha158 (reference: CSI300 2017-2020, 1-day label)", "", "",
                        _fmt(ref.get("ic_mean")), _fmt(ref.get("icir"), 3), _fmt(ref.get("rank_ic_mean")),
                        _fmt(ref.get("rank_icir"), 3), "", "", ""])
    parts.append("<h2>Information coefficient</h2>")
    parts.append(_table(_IC_HEADER, ic_rows))
    parts.append('<img alt="Cumulative Rank IC" src="ic.png">')

    for key, heading in (("by_year", "By calendar year"), ("by_regime", "By regime")):
        parts.append(f"<h2>{heading}</h2>")
        any_rows = False
        for name, part in scores.items():
            groups = part.get(key) or {}
            if groups:
                any_rows = True
                parts.append(f"<h3>{html.escape(name)}</h3>")
                parts.append(_table(_IC_HEADER, [_ic_row(g, s) for g, s in groups.items()]))
        if not any_rows:
            parts.append("<p>No groups (no labels in the frame).</p>")

    q = conv.get("quantiles", 10)
    parts.append(f"<h2>Quantile returns (mean {h}-session log return, bp; Q1 = lowest score)</h2>")
    q_rows = [[name, *(_bp(v) for v in part["quantiles"]["mean_return"]), _bp(part["quantiles"]["long_short_mean"])]
              for name, part in scores.items()]
    parts.append(_table(["", *(f"Q{i}" for i in range(1, q + 1)), "top - bottom"], q_rows))
    parts.append(f"<h2>Long-short (top minus bottom) on non-overlapping {h}-session periods</h2>")
    ls_rows = []
    for name, part in scores.items():
        qr = part["quantiles"]
        ls_rows.append([name, _fmt(qr["n_periods"]), _pct(qr["long_short_ann_return"]), _pct(qr["long_short_ann_vol"]),
                        _fmt(qr["long_short_sharpe"], 2), _pct(qr["long_short_cum_log_return"]),
                        _pct(qr["long_short_hit_rate"], 1), _fmt(qr["monotonicity"], 3),
                        _pct(part["turnover"]["top_quantile"], 1)])
    parts.append(_table(["", "periods", "ann. return (log)", "ann. vol", "Sharpe", "cumulative (log)",
                         "sessions LS > 0", "monotonicity", "top-quantile turnover / session"], ls_rows))
    parts.append('<img alt="Quantile returns" src="quantiles.png">')

    parts.append("<h2>Calibration</h2>")
    cal = result.get("calibration")
    if cal:
        parts.append(_table(["rows", "Brier", "base rate", "reference b(1-b)", "Brier skill", "ECE"],
                            [[_fmt(cal["n"]), _fmt(cal["brier"]), _pct(cal["base_rate"], 1),
                              _fmt(cal["brier_reference"]), _fmt(cal["brier_skill"], 3), _fmt(cal["ece"])]]))
        parts.append(_table(["bin", "rows", "mean predicted", "observed P(return > 0)"],
                            [[f"[{b['lower']:.2f}, {b['upper']:.2f}{']' if b['upper'] >= 1 else ')'}", b["count"], _fmt(b["mean_predicted"], 3),
                              _fmt(b["observed_frequency"], 3)] for b in cal["bins"]]))
    else:
        parts.append("<p>No calibrated probability column was evaluated.</p>")
    parts.append('<img alt="Calibration" src="calibration.png">')

    parts.append("<h2>Oracle</h2>")
    parts.append(_oracle_html(result.get("oracle")))

    conventions = (
        f"Labels are log returns over the {h} session(s) after the decision session. IC is the "
        "per-session Pearson correlation and Rank IC the Spearman (average ranks), averaged over "
        "sessions; ICIR = mean/std of the daily series (ddof=1), not annualised. The Rank IC t-stat "
        f"uses a Hansen-Hodrick long-run variance over lags 1..{h - 1} because consecutive labels "
        "overlap; the non-overlapping t-stat is a cross-check. Quantile returns are equal-weight means "
        "of log returns; the long-short Sharpe is computed on non-overlapping periods, annualised with "
        f"{PERIODS_PER_YEAR}/{h} periods a year, and log returns are summed across periods. "
    )
    meta = (f"{sample.get('first_session')} to {sample.get('last_session')}: {sample.get('n_sessions')} sessions, "
            f"{sample.get('n_rows')} rows, {sample.get('n_labelled')} with a known label. "
            f"Scores: {', '.join(scores)}.")
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{t}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em 0; }}
td, th {{ padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>{t}</h1>
<p>{html.escape(meta)}</p>
<h2>Conventions</h2>
<p>{html.escape(conventions)}</p>
<p>{html.escape(conv.get("qlib_differences", _QLIB_PARAGRAPH))}</p>
{body}
</body>
</html>
"""
