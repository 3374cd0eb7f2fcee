"""The synthetic market's ground truth: what the generator planted, for tests and benches only.

Engines never see any of this. The truth is not a provider table and is not in the warehouse:
``SyntheticMarket`` returns it as frames that carry a ``synthetic_truth`` marker column (which
``TimeMachine.register`` refuses), and ``record_truth`` writes it as Parquet under the project
home (``$PROMETHEUS_HOME/synthetic_truth/<market>/``), outside every engine data accessor.
An import-linter contract forbids the engine packages from importing this package at all.

Kinds (one Parquet file per kind, per year for the per-session ones):

* ``regimes``: per session, the region's latent regime, the global regime and the region's
  market factor return.
* ``factor_returns``: per session, every factor's true log return.
* ``exposures``: per instrument, its true beta, sector, style loadings, idiosyncratic vol,
  target cap, dividend yield, listing and delisting sessions.
* ``signals``: per instrument per session, the planted signal values known at that session
  (momentum z, low-volatility z, post-earnings drift, the total planted drift) and the
  fragility phase (0 none, 1 precursor, 2 crash, 3 recovery) and halts.
* ``fragility_events``: per planted event, its onset (precursor start), crash start and end
  sessions and the planted drawdown.
* ``news_sentiment``: per article, the latent sentiment its tone was drawn from.
* ``oracle_ics``: per signal, the configured strength and the realised rank IC of the planted
  signal against the next ``horizon`` sessions' returns over the recorded range.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from prometheus_lib.storage.catalog import TRUTH_SCHEMA

__all__ = ["SESSION_KINDS", "TRUTH_MARKER", "TruthViews", "read_truth", "record_truth"]

TRUTH_MARKER = TRUTH_SCHEMA  # the marker column every truth frame carries
SESSION_KINDS = ("regimes", "factor_returns", "signals", "news_sentiment")
STATIC_KINDS = ("exposures", "fragility_events", "oracle_ics")
IC_HORIZON = 21
_REGIMES = ("calm", "volatile", "crisis")


def _mark(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    return frame.select(pl.lit(kind).alias(TRUTH_MARKER), pl.all())


class TruthViews:
    """Ground-truth accessors of ``SyntheticMarket`` (a mixin over its ``TextFeeds``)."""

    def true_regimes(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Per session: ``regime`` (the region's latent state), ``global_regime``, ``market_return``."""
        ordinals, days = self._ordinals(sessions)
        schema = {"session_date": pl.Date(), "market_id": pl.String(), "region": pl.String(), "regime": pl.String(),
                  "global_regime": pl.String(), "market_return": pl.Float64()}
        if not days:
            return _mark(pl.DataFrame(schema=schema), "regimes")
        path = self._ensure(int(ordinals[-1]))
        frame = pl.DataFrame(
            {
                "session_date": days,
                "market_id": [self.market_id] * len(days),
                "region": [self.config.region] * len(days),
                "regime": [_REGIMES[int(r)] for r in path.regime[ordinals]],
                "global_regime": [_REGIMES[int(r)] for r in path.global_regime[ordinals]],
                "market_return": path.factors[ordinals, 0],
            },
            schema=schema,
        )
        return _mark(frame, "regimes")

    def _factor_ids(self) -> list[str]:
        from prometheus_lib.data.synthetic.config import STYLE_FACTORS

        return ["market", *(f"sector:{s[0]}" for s in self._sectors), *STYLE_FACTORS]

    def true_factor_returns(self, sessions: Sequence[date]) -> pl.DataFrame:
        """One row per factor per session: ``market``, ``sector:<name>`` and the style factors."""
        ordinals, days = self._ordinals(sessions)
        ids = self._factor_ids()
        schema = {"session_date": pl.Date(), "factor_id": pl.String(), "factor_return": pl.Float64()}
        if not days:
            return _mark(pl.DataFrame(schema=schema), "factor_returns")
        path = self._ensure(int(ordinals[-1]))
        frame = pl.DataFrame(
            {
                "session_date": np.repeat(np.array(days, dtype="datetime64[D]"), len(ids)),
                "factor_id": ids * len(days),
                "factor_return": path.factors[ordinals].ravel(),
            },
            schema=schema,
        )
        return _mark(frame, "factor_returns")

    def true_exposures(self) -> pl.DataFrame:
        """Per instrument: true loadings, idiosyncratic vol (annualised), target cap, lifecycle."""
        from prometheus_lib.data.synthetic.config import STYLE_FACTORS

        u = self._universe
        data = {
            "instrument_id": list(u.instrument_ids),
            "slot": u.slot,
            "sector": [self._sectors[s][0] for s in u.sector],
            "beta_market": u.beta,
        }
        for j, name in enumerate(STYLE_FACTORS):
            data[name] = u.styles[:, j]
        data["idio_vol"] = u.idio_vol
        data["target_market_cap"] = np.exp(u.target_log_cap)
        data["dividend_yield"] = u.dividend_yield
        data["listing_date"] = [self._ordinal_date(int(k)) for k in u.listing_k]
        data["delisting_date"] = [self._ordinal_date(int(k)) if k >= 0 else None for k in u.delisting_k]
        return _mark(pl.DataFrame(data), "exposures")

    def true_signals(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Per listed instrument per session: the planted signal values and the fragility phase."""
        ordinals, days = self._ordinals(sessions)
        if not days:
            return _mark(pl.DataFrame(schema={"session_date": pl.Date(), "instrument_id": pl.String()}), "signals")
        path = self._ensure(int(ordinals[-1]))
        occ = path.occ[ordinals]
        flat = (occ >= 0).ravel()
        n = self.config.n_instruments
        data = {
            "session_date": pl.Series(np.array(days, dtype="datetime64[D]")).gather(
                np.repeat(np.arange(len(days)), n)[flat]),
            "instrument_id": pl.Series(self._universe.instrument_ids).gather(occ.ravel()[flat]),
        }
        for name in ("momentum", "low_vol", "pead", "alpha"):
            data[name] = path.sig[name][ordinals].ravel()[flat].astype(np.float64)
        data["fragility_phase"] = path.phase[ordinals].ravel()[flat]
        data["halted"] = path.halted[ordinals].ravel()[flat]
        data["earnings_surprise"] = path.surprise[ordinals].ravel()[flat].astype(np.float64)
        return _mark(pl.DataFrame(data).with_columns(pl.col("earnings_surprise").fill_nan(None)), "signals")

    def true_fragility_events(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Planted fragility events whose onset lies in ``sessions``' span (simulated through its end)."""
        ordinals, days = self._ordinals(sessions)
        schema = {"instrument_id": pl.String(), "onset_date": pl.Date(), "crash_start_date": pl.Date(),
                  "crash_end_date": pl.Date(), "planned_drawdown": pl.Float64(), "realised_drawdown": pl.Float64()}
        if not days:
            return _mark(pl.DataFrame(schema=schema), "fragility_events")
        path = self._ensure(int(ordinals[-1]))
        steps = self._session_steps
        lo, hi = int(steps[ordinals[0]]), int(steps[ordinals[-1]])
        rows = []
        u = self._universe
        for occupant, onset, crash, end, drop in self._state.events:
            if not lo <= onset <= hi or crash < 0:
                continue
            k_on = int(np.searchsorted(steps, onset))
            k_crash = int(np.searchsorted(steps, crash))
            k_end = int(np.searchsorted(steps, end)) if end >= 0 else path.length - 1
            if k_crash >= path.length:
                continue
            s = int(u.slot[occupant])
            window = path.f["adj"][max(k_crash - 1, 0): min(k_end + 1, path.length), s]
            mine = path.occ[max(k_crash - 1, 0): min(k_end + 1, path.length), s] == occupant
            realised = float(window[mine].min() / window[mine][0] - 1.0) if mine.any() else math.nan
            rows.append((u.instrument_ids[occupant], self._ordinal_date(k_on), self._ordinal_date(k_crash),
                         self._ordinal_date(min(k_end, path.length - 1)), float(drop), realised))
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        return _mark(frame, "fragility_events")

    def true_news_sentiment(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Per article: the latent sentiment its tone words were drawn from."""
        art, _ = self._news_rows(sessions)
        frame = pl.DataFrame(
            {"article_id": art["article_id"], "instrument_id": art["instrument_id"],
             "session_date": art["session_date"], "sentiment": art["sentiment"]},
            schema={"article_id": pl.String(), "instrument_id": pl.String(), "session_date": pl.Date(),
                    "sentiment": pl.Float64()},
        )
        return _mark(frame, "news_sentiment")

    def oracle_ics(self, sessions: Sequence[date], horizon: int = IC_HORIZON) -> pl.DataFrame:
        """Realised rank IC of each planted signal against the next ``horizon`` sessions' log return.

        For ``momentum``, ``low_vol`` and ``alpha`` (the sum of the planted drifts):
        the mean over sessions of the cross-sectional Spearman correlation between the value known
        at the session and the log total return over the following ``horizon`` sessions (same
        occupant throughout). For ``pead``: the earnings surprise of the session's announcers
        against their next ``horizon`` sessions (announcement day excluded), pooled per session.
        For ``news_tone``: each article's latent sentiment against its instrument's next
        ``news_forward_sessions`` return z-score. ``target_ic`` is the configured strength.
        """
        cfg = self.config
        ordinals, days = self._ordinals(sessions)
        schema = {"signal": pl.String(), "horizon_sessions": pl.Int32(), "target_ic": pl.Float64(),
                  "oracle_rank_ic": pl.Float64(), "ic_t_stat": pl.Float64(), "n_sessions": pl.Int32(),
                  "first_session": pl.Date(), "last_session": pl.Date()}
        if not days:
            return _mark(pl.DataFrame(schema=schema), "oracle_ics")
        last = int(ordinals[-1])
        path = self._ensure(last + horizon + 1)
        ret = np.nan_to_num(path.f["ret"], nan=0.0)
        cum = np.vstack([np.zeros((1, ret.shape[1])), np.cumsum(ret, axis=0)])
        targets = {"momentum": cfg.momentum_strength, "low_vol": cfg.low_vol_strength, "alpha": None}
        out = []
        for name, target in targets.items():
            ics = []
            for k in ordinals.tolist():
                if k + horizon >= path.length:
                    continue
                same = (path.occ[k] >= 0) & (path.occ[k] == path.occ[k + horizon])
                x = path.sig[name][k].astype(float)
                ok = same & np.isfinite(x) & (x != 0.0)
                if ok.sum() < 10:
                    continue
                fwd = cum[k + horizon + 1] - cum[k + 1]
                ics.append(_spearman(x[ok], fwd[ok]))
            out.append(_ic_row(name, horizon, target, ics, days))
        # Post-earnings drift: surprises of the session's announcers.
        ics = []
        for k in ordinals.tolist():
            if k + horizon >= path.length:
                continue
            s = path.surprise[k].astype(float)
            same = np.isfinite(s) & (path.occ[k] == path.occ[k + horizon])
            if same.sum() < 5:
                continue
            fwd = cum[k + horizon + 1] - cum[k + 1]
            ics.append(_spearman(s[same], fwd[same]))
        out.append(_ic_row("pead", horizon, cfg.pead_strength, ics, days))
        # News tone: latent sentiment against the linked forward return.
        # News tone: every article's latent sentiment against its instrument's forward z, pooled.
        sent = self.true_news_sentiment(days)
        xs, zs = [], []
        for (d,), grp in sent.group_by("session_date"):
            k = int(np.searchsorted(self._world_sessions, np.datetime64(d, "D")))
            z = self._forward_z(k + 1)
            slot_of = {self._universe.instrument_ids[j]: int(self._universe.slot[j]) for j in path.occ[k][path.occ[k] >= 0]}
            zs.extend(z[slot_of[i]] for i in grp["instrument_id"].to_list())
            xs.extend(grp["sentiment"].to_list())
        ic = _spearman(np.array(xs), np.array(zs)) if len(xs) > 10 else math.nan
        t = ic * math.sqrt((len(xs) - 2) / max(1e-12, 1.0 - ic * ic)) if len(xs) > 10 else math.nan
        out.append(("news_tone", cfg.news_forward_sessions, cfg.news_sentiment_link, ic, t, sent["session_date"].n_unique(),
                    days[0], days[-1]))
        return _mark(pl.DataFrame(out, schema=schema, orient="row"), "oracle_ics")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(float)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else 0.0


def _ic_row(name: str, horizon: int, target: float | None, ics: list[float], days: list[date]) -> tuple:
    arr = np.array(ics, dtype=float)
    mean = float(arr.mean()) if arr.size else math.nan
    # Overlapping horizons: the t-stat uses the effective number of independent windows.
    eff = max(arr.size / max(horizon, 1), 1.0)
    t = float(mean / (arr.std(ddof=1) / math.sqrt(eff))) if arr.size > 2 and arr.std(ddof=1) > 0 else math.nan
    return (name, horizon, target, mean, t, int(arr.size), days[0], days[-1])


# ---------------------------------------------------------------------- the Parquet sidecar
def record_truth(market, sessions: Sequence[date], root: Path) -> list[Path]:
    """Write ``market``'s truth for ``sessions`` under ``root`` (one folder per market); return the files.

    Per-session kinds go to ``<kind>/<year>.parquet``: rows of the given sessions replace the
    file's rows of those sessions, others stay, so re-recording a range is idempotent. Static
    kinds (exposures, the fragility events of the recorded span, oracle ICs) are rewritten
    whole. Each file is written to a temporary name and renamed, so a crash leaves the previous
    file.
    """
    root = Path(root)
    days = sorted(set(sessions))
    if not days:
        return []
    frames = {
        "regimes": market.true_regimes(days),
        "factor_returns": market.true_factor_returns(days),
        "signals": market.true_signals(days),
        "news_sentiment": market.true_news_sentiment(days),
    }
    written: list[Path] = []
    for kind, frame in frames.items():
        if frame.height == 0:
            continue
        for (year,), part in frame.group_by(pl.col("session_date").dt.year(), maintain_order=True):
            target = root / kind / f"{year}.parquet"
            if target.exists():
                old = pl.read_parquet(target)
                part = pl.concat([old.filter(~pl.col("session_date").is_in(part["session_date"].unique().implode())), part],
                                 how="vertical_relaxed")
            sort_cols = [c for c in ("session_date", "instrument_id", "factor_id", "article_id") if c in part.columns]
            written.append(_atomic_write(part.sort(sort_cols), target))
    written.append(_atomic_write(market.true_exposures(), root / "exposures.parquet"))
    written.append(_atomic_write(market.true_fragility_events(days), root / "fragility_events.parquet"))
    written.append(_atomic_write(market.oracle_ics(days), root / "oracle_ics.parquet"))
    return written


def read_truth(root: Path, kind: str) -> pl.DataFrame:
    """Read one kind of recorded truth under ``root`` (a market's folder) — tests and benches only."""
    root = Path(root)
    if kind in STATIC_KINDS:
        return pl.read_parquet(root / f"{kind}.parquet")
    if kind not in SESSION_KINDS:
        raise KeyError(f"unknown truth kind {kind!r}; kinds: {', '.join(SESSION_KINDS + STATIC_KINDS)}")
    files = sorted((root / kind).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no recorded {kind} truth under {root}")
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")


def _atomic_write(frame: pl.DataFrame, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, target)
    return target
