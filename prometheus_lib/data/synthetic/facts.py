"""Stylized facts of a synthetic market's daily returns, beside their published ranges.

The facts follow Cont (2001), "Empirical properties of asset returns: stylized facts and
statistical issues", Quantitative Finance 1(2), plus the cross-sectional shape of a broad cap
weighted index. Each is measured on the generated bars as an engine would see them (returns from
``adjusted_close``, weights from ``shares_outstanding * close`` at the previous session) and, for
the per-regime ones, split by the market's latent regime (ground truth). ``bench/synthetic_facts.py``
prints them; tests pin the ones that must hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

__all__ = ["Fact", "stylized_facts"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One measured statistic with the range published for real markets."""

    name: str
    scope: str  # "index", "median instrument", "cross-section"
    value: float
    low: float
    high: float
    note: str = ""

    @property
    def holds(self) -> bool:
        return math.isfinite(self.value) and self.low <= self.value <= self.high


def _acf(x: np.ndarray, lag: int) -> float:
    x = x[np.isfinite(x)]
    if x.size <= lag + 2:
        return math.nan
    a, b = x[:-lag] - x.mean(), x[lag:] - x.mean()
    den = float((x - x.mean()) @ (x - x.mean()))
    return float(a @ b / den) if den > 0 else math.nan


def _kurt(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size < 20:
        return math.nan
    c = x - x.mean()
    m2 = float((c**2).mean())
    return float((c**4).mean() / m2**2 - 3.0) if m2 > 0 else math.nan


def _skew(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    c = x - x.mean()
    m2 = float((c**2).mean())
    return float((c**3).mean() / m2**1.5) if m2 > 0 else math.nan


def _leverage(x: np.ndarray, horizon: int = 10) -> float:
    """corr(r_t, sum of |r| over t+1..t+horizon): negative when falls raise later volatility."""
    x = np.nan_to_num(x)
    future = np.convolve(np.abs(x), np.ones(horizon), mode="full")[horizon: horizon + x.size - horizon]
    past = x[: future.size]
    if past.size < 50:
        return math.nan
    return float(np.corrcoef(past, future)[0, 1])


def panel(prices: pl.DataFrame) -> dict[str, np.ndarray]:
    """Session x instrument matrices of simple returns (adjusted), caps at T-1, volume."""
    frame = prices.sort("instrument_id", "session_date").with_columns(
        ret=(pl.col("adjusted_close") / pl.col("adjusted_close").shift(1) - 1.0).over("instrument_id"),
        cap_prev=(pl.col("shares_outstanding") * pl.col("close")).shift(1).over("instrument_id"),
    )
    sessions = frame["session_date"].unique().sort()
    ids = frame["instrument_id"].unique().sort()
    s_idx = frame.select(pl.col("session_date").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    i_idx = frame.select(pl.col("instrument_id").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    out = {}
    for name in ("ret", "cap_prev", "volume", "close"):
        m = np.full((sessions.len(), ids.len()), np.nan)
        m[s_idx, i_idx] = frame[name].to_numpy()
        out[name] = m
    out["sessions"] = sessions.to_numpy()
    return out


def stylized_facts(prices: pl.DataFrame, regimes: pl.DataFrame | None = None,
                   price_range: tuple[float, float] = (5.0, 500.0)) -> list[Fact]:
    """Measure the stylized facts of ``prices`` (one market's ``prices_daily`` rows).

    ``regimes`` (the truth's ``session_date, regime``) splits the volatility and correlation
    facts by latent regime; without it those facts are skipped. ``price_range`` is the range a
    median price should lie in, in the market's currency (JPY prices are a hundred times USD's).
    """
    p = panel(prices)
    ret, cap, vol = p["ret"], p["cap_prev"], p["volume"]
    ok = np.isfinite(ret) & np.isfinite(cap) & (cap > 0)
    w = np.where(ok, cap, 0.0)
    wsum = w.sum(axis=1)
    index = np.where(wsum > 0, (np.where(ok, ret, 0.0) * w).sum(axis=1) / np.where(wsum > 0, wsum, 1.0), np.nan)[1:]
    weights = w[1:] / np.where(wsum[1:, None] > 0, wsum[1:, None], 1.0)
    largest = weights.max(axis=1)
    top10 = -np.sort(-weights, axis=1)[:, :10].sum(axis=1)

    facts: list[Fact] = []
    ann = math.sqrt(252)
    facts.append(Fact("annualised volatility (all sessions)", "index", float(np.nanstd(index) * ann), 0.10, 0.35,
                      "MKT factor within 8-35 %"))
    if regimes is not None and regimes.height:
        reg = dict(zip(regimes["session_date"].to_list(), regimes["regime"].to_list(), strict=True))
        labels = np.array([reg.get(d.astype("datetime64[D]").astype(date), "") for d in p["sessions"][1:]])
        for name, lo, hi in (("calm", 0.10, 0.20), ("volatile", 0.15, 0.30), ("crisis", 0.25, 0.80)):
            sel = labels == name
            if sel.sum() > 20:
                facts.append(Fact(f"annualised volatility ({name} regime)", "index", float(np.nanstd(index[sel]) * ann),
                                  lo, hi, "12-25 % outside crises, higher inside"))
        # Cross-sectional correlation by regime: mean pairwise correlation of the largest names.
        big = np.argsort(-np.nanmean(np.where(np.isfinite(cap), cap, np.nan), axis=0))[:60]
        for name in ("calm", "crisis"):
            sel = np.concatenate(([False], labels == name))
            sub = ret[sel][:, big]
            keep = np.isfinite(sub).all(axis=0)
            if sel.sum() > 30 and keep.sum() > 5:
                c = np.corrcoef(sub[:, keep].T)
                mean_corr = float((c.sum() - np.trace(c)) / (c.size - c.shape[0]))
                facts.append(Fact(f"mean pairwise correlation ({name} regime)", "cross-section", mean_corr,
                                  *((0.05, 0.45) if name == "calm" else (0.30, 0.90)),
                                  "correlation rises in crises (Cont 2001, fact 11 analogue)"))
    facts += [
        Fact("excess kurtosis of daily returns", "index", _kurt(index), 1.0, 50.0, "heavy tails (Cont fact 2)"),
        Fact("skewness of daily returns", "index", _skew(index), -2.0, 0.1, "gain/loss asymmetry (Cont fact 3)"),
        Fact("autocorrelation of returns, lag 1", "index", _acf(index, 1), -0.1, 0.1, "no linear autocorrelation (fact 1)"),
        Fact("autocorrelation of |returns|, lag 1", "index", _acf(np.abs(index), 1), 0.1, 0.5, "volatility clustering (fact 8)"),
        Fact("autocorrelation of |returns|, lag 50", "index", _acf(np.abs(index), 50), 0.02, 0.35,
             "slow decay of absolute-return autocorrelation (fact 8)"),
        Fact("corr(r_t, |r| over t+1..t+10)", "index", _leverage(index), -0.5, -0.02, "leverage effect (fact 10)"),
        Fact("excess kurtosis of 21-session returns", "index",
             _kurt(np.add.reduceat(np.nan_to_num(index), np.arange(0, index.size, 21))), -1.0, 5.0,
             "aggregational Gaussianity (fact 4): lower than daily"),
        Fact("largest index weight (mean over sessions)", "index", float(largest.mean()), 0.03, 0.08,
             "broad cap-weighted index"),
        Fact("top-ten index weight (mean over sessions)", "index", float(top10.mean()), 0.20, 0.35,
             "broad cap-weighted index"),
        Fact("largest index weight (max over sessions)", "index", float(largest.max()), 0.03, 0.12, "no runaway name"),
    ]

    per: dict[str, list[float]] = {k: [] for k in ("kurt", "acf1", "absacf1", "absacf50", "lev", "volvol", "ann")}
    for i in range(ret.shape[1]):
        x = ret[:, i]
        x = x[np.isfinite(x)]
        if x.size < 300:
            continue
        per["kurt"].append(_kurt(x))
        per["acf1"].append(_acf(x, 1))
        per["absacf1"].append(_acf(np.abs(x), 1))
        per["absacf50"].append(_acf(np.abs(x), 50))
        per["lev"].append(_leverage(x))
        per["ann"].append(float(np.std(x) * ann))
        v = vol[:, i]
        both = np.isfinite(ret[:, i]) & np.isfinite(v) & (v > 0)
        if both.sum() > 100:
            per["volvol"].append(float(np.corrcoef(np.log(v[both]), np.abs(ret[both, i]))[0, 1]))

    def med(k: str) -> float:
        vals = np.array(per[k], dtype=float)
        vals = vals[np.isfinite(vals)]
        return float(np.median(vals)) if vals.size else math.nan

    facts += [
        Fact("annualised volatility", "median instrument", med("ann"), 0.18, 0.50, "single stocks 20-50 %"),
        Fact("excess kurtosis of daily returns", "median instrument", med("kurt"), 2.0, 50.0, "heavy tails (fact 2)"),
        Fact("autocorrelation of returns, lag 1", "median instrument", med("acf1"), -0.1, 0.1, "fact 1"),
        Fact("autocorrelation of |returns|, lag 1", "median instrument", med("absacf1"), 0.05, 0.4, "fact 8"),
        Fact("autocorrelation of |returns|, lag 50", "median instrument", med("absacf50"), 0.0, 0.3, "fact 8"),
        Fact("corr(r_t, |r| over t+1..t+10)", "median instrument", med("lev"), -0.3, 0.0, "leverage effect (fact 10)"),
        Fact("corr(log volume, |return|)", "median instrument", med("volvol"), 0.1, 0.7, "volume/volatility (fact 9)"),
    ]
    closes = p["close"][np.isfinite(p["close"])]
    facts.append(Fact("median price level", "cross-section", float(np.median(closes)), *price_range,
                      "in the market's currency units"))
    return facts


def format_facts(facts: Sequence[Fact]) -> str:
    """A fixed-width table: statistic, scope, value, published range, holds."""
    lines = [f"{'statistic':44s} {'scope':18s} {'value':>9s}  {'published range':>17s}  ok"]
    for f in facts:
        lines.append(f"{f.name:44s} {f.scope:18s} {f.value:9.4f}  [{f.low:7.3f}, {f.high:7.3f}]  "
                     f"{'yes' if f.holds else 'NO'}")
    return "\n".join(lines)
