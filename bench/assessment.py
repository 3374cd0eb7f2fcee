"""Assessment engine benchmark: features, walk-forward LightGBM, ensemble and calibration over 500 x 10 years.

    .venv/bin/python bench/assessment.py [--instruments 500] [--years 10] [--work DIR] [--repeat 1]
                                         [--report DIR] [--no-memory]

A synthetic US market (tests/market_state_data.py: ``market_config``, on the shared world seed)
is written into a DuckDB warehouse with every dbt panel (cached under ``--work``, by default the
folder bench/engines.py uses, so the two benches share a market and re-runs skip the build), then
read back as a ``MarketPanel`` exactly as the Dagster assets do. The window is the last
``--years`` years ending 2023-12-29. The earnings calls are the synthetic market's
``earnings_calls`` over the window's sessions (cached as Parquet beside the warehouse).

Timed, one after the other in this process, untraced (every run is printed, the summary is the
median of ``--repeat`` runs); then, unless ``--no-memory``, a separate untimed pass measures each
step's peak traced memory (tracemalloc: Python and numpy allocations; it slows the engine's
Python-heavy steps several-fold, the output frames about 7x, hence not timed; LightGBM's own
buffers are not traced, the process's max RSS is printed too):
  market_state_inputs  ``market_state_arrays``: the regime and stability engines over the panel
  assessment (train)   ``AssessmentEngine(AssessmentConfig(), ...).run`` over the whole window with
                       a fresh ``MemoryModelStore`` (every walk-forward model is trained), split by
                       the engine's own timings: features, as_of_check (the leakage canary),
                       training (purged CV + refit at every cut), scoring, ensemble (alphas, vote,
                       regime filter, calibration, filters) and frames (the output tables)
  assessment (reuse)   the same run again with the same store: it must train 0 models (a re-run
                       of a range reuses the stored models)
  naive                the baseline strategy's score from the panel

Scored against the synthetic market's ground truth (read here, never by the engine), with
``report.evaluate`` on the walk-forward out-of-sample rows (a promoted model scored them: ``ml``
not null) and the 21-session label, for each component (ml, rsi, ema_cross, macd), the ensemble
and the naive baseline: Rank IC, Rank ICIR, the overlap-corrected (Hansen-Hodrick) t-stat, and
the long-short Sharpe (non-overlapping periods). Beside them the oracle: the realised Rank IC of
the planted signals over the same sessions (``SyntheticMarket.oracle_ics``; ``alpha`` is the sum
of every planted drift, the planted expected return and the oracle to beat; momentum, low_vol and
pead are its parts).
The naive baseline is the baseline strategy's ``z(12-1 momentum) - z(63-session vol)``, here as
cross-sectional ranks: the sum of log returns over T-251..T-21 ranked minus vol_63 ranked.
Also: models trained and promoted, the last promoted model, the mean CV OOS Rank IC, and the
Brier score of the calibrated probability against the base rate's.

Goals (issue 13): ensemble OOS Rank IC >= 0.5 x the oracle's ``alpha`` Rank IC (recovery
ratio); the whole walk-forward (features, training, scoring, calibration: one engine run) over
500 x 10 years in under 5 minutes (300 s) with LightGBM on ``AssessmentConfig.num_threads``
threads; a re-run of the range trains 0 models.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from market_state_data import build_warehouse, market_config  # noqa: E402

from prometheus_lib.assessment import report  # noqa: E402
from prometheus_lib.assessment.engine import AssessmentEngine  # noqa: E402
from prometheus_lib.assessment.ml.features import (  # noqa: E402
    AssessmentInputs, cross_sectional_rank, market_state_arrays)
from prometheus_lib.assessment.ml.walk_forward import MemoryModelStore  # noqa: E402
from prometheus_lib.calendars import TradingCalendar  # noqa: E402
from prometheus_lib.config.models import AssessmentConfig, RegimeConfig, StabilityConfig  # noqa: E402
from prometheus_lib.data.synthetic import SyntheticMarket  # noqa: E402
from prometheus_lib.market_state import load_market_panel  # noqa: E402
from prometheus_lib.storage.factory import open_warehouse  # noqa: E402

END = date(2023, 12, 29)
REGION = "US"
STRATEGY = "BENCH"
HORIZON = 21
SCORES = ["ml", "rsi", "ema_cross", "macd", "ensemble", "naive"]
PARTS = ("features", "as_of_check", "training", "scoring", "ensemble", "frames")
ORACLE_SIGNALS = ("alpha", "momentum", "low_vol", "pead")


def _timed(fn):
    """``(fn(), seconds)``, untraced: tracemalloc slows the engine's Python-heavy steps several-fold."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _traced(fn) -> float:
    """Peak traced MiB of ``fn()`` (tracemalloc: Python and numpy allocations)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _panel(n: int, years: int, work: Path):
    config = market_config(REGION, n, history_start=date(END.year - years + 1, 1, 2))
    path = work / f"{REGION}_{n}_{years}y.duckdb"
    cal = TradingCalendar(config.calendar_code)
    sessions = cal.sessions(config.history_start, END)
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".building.duckdb")
        tmp.unlink(missing_ok=True)
        build_warehouse(tmp, config, END)
        tmp.rename(path)
        print(f"  built {REGION}: {n} instruments x {len(sessions)} sessions with dbt panels in "
              f"{time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    panel, seconds = _timed(lambda: _load(path, config, sessions))
    return panel, SyntheticMarket(config, cal), seconds


def _load(path, config, sessions):
    with open_warehouse(backend="duckdb", duckdb_path=str(path)) as wh:
        return load_market_panel(wh, config.market_id, config.region, sessions)


def _trailing_sum(x: np.ndarray, near: int, far: int, min_count: int) -> np.ndarray:
    """Per column, the sum of rows T-far..T-near skipping NaN; NaN under ``min_count`` values."""
    finite = np.isfinite(x)
    cs = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(np.where(finite, x, 0.0), axis=0)])
    cn = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(finite, axis=0)])
    t = np.arange(x.shape[0])
    hi, lo = np.clip(t - near + 1, 0, None), np.clip(t - far, 0, None)
    valid = ((cn[hi] - cn[lo]) >= min_count) & (t - far >= 0)[:, None]
    return np.where(valid, cs[hi] - cs[lo], np.nan)


def naive_scores(panel) -> np.ndarray:
    """The baseline strategy's score: rank(12-1 momentum) - rank(vol_63), over the listed names at T."""
    listed = panel.listed
    mom = np.where(listed, _trailing_sum(panel.log_return, 21, 251, 200), np.nan)
    vol = np.where(listed, panel.vol_63, np.nan)
    return cross_sectional_rank(mom) - cross_sectional_rank(vol)


def _naive_frame(panel, naive: np.ndarray) -> pl.DataFrame:
    ri, ci = np.nonzero(np.isfinite(naive))
    dates = panel.session_dates()
    return pl.DataFrame({"session_date": [dates[r] for r in ri.tolist()],
                         "instrument_id": [panel.instrument_ids[c] for c in ci.tolist()],
                         "naive": naive[ri, ci]})


def _revision() -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return head + ("+dirty" if dirty else "")


def _fmt(x, digits=4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instruments", type=int, default=500)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "prometheus_bench_engines")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--report", type=Path, default=None, help="also write the HTML report into this folder")
    ap.add_argument("--no-memory", action="store_true", help="skip the traced memory pass")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    args.work.mkdir(parents=True, exist_ok=True)
    config = AssessmentConfig()
    print(f"bench/assessment.py {date.today()} at {_revision()}: {args.instruments} instruments x {args.years} years, "
          f"region {REGION}, repeat {args.repeat}, LightGBM num_threads {config.num_threads}", flush=True)

    load0 = os.getloadavg()
    timings: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}

    def record(name, seconds):
        timings.setdefault(name, []).append(seconds)

    panel, market, load_s = _panel(args.instruments, args.years, args.work)
    record("load panel", load_s)
    dates = panel.session_dates()
    start, end = dates[0], dates[-1]
    print(f"  panel: {panel.n_instruments} instruments x {panel.n_sessions} sessions, {start} .. {end}", flush=True)
    calls_path = args.work / f"{REGION}_{args.instruments}_{args.years}y_earnings_calls.parquet"
    if not calls_path.exists():
        calls, s = _timed(lambda: market.earnings_calls(dates))
        record("earnings_calls (synthetic)", s)
        calls.write_parquet(calls_path.with_suffix(".building.parquet"))
        calls_path.with_suffix(".building.parquet").rename(calls_path)
    calls = pl.read_parquet(calls_path)
    (probs, states, stab), s = _timed(lambda: market_state_arrays(panel, RegimeConfig(), StabilityConfig()))
    record("market_state_inputs", s)
    inputs = AssessmentInputs(panel, calls, probs, states, stab)

    runs: list[dict] = []
    result = None
    for k in range(args.repeat):
        store = MemoryModelStore()
        engine = AssessmentEngine(config, STRATEGY, store=store)
        result, s = _timed(lambda: engine.run(inputs, start, end))
        record("assessment (train)", s)
        for part in PARTS:
            record(f"  train: {part}", result.timings.get(part, 0.0))
        trained = len(result.trained)
        again, s2 = _timed(lambda: AssessmentEngine(config, STRATEGY, store=store).run(inputs, start, end))
        record("assessment (reuse)", s2)
        for part in PARTS:
            record(f"  reuse: {part}", again.timings.get(part, 0.0))
        same = again.signals.equals(result.signals)
        runs.append({"run": k + 1, "train_s": s, "trained": trained, "reuse_s": s2, "reuse_trained": len(again.trained),
                     "reuse_identical_signals": same})
        print(f"  run {k + 1}: train {s:.1f} s ({trained} models trained); reuse {s2:.1f} s "
              f"({len(again.trained)} trained, signals identical: {same})", flush=True)
        del again
    naive, s = _timed(lambda: naive_scores(panel))
    record("naive", s)
    load1 = os.getloadavg()
    if not args.no_memory:
        print("  memory pass (under tracemalloc, not timed) ...", flush=True)
        peaks["market_state_inputs"] = _traced(lambda: market_state_arrays(panel, RegimeConfig(), StabilityConfig()))
        peaks["assessment (reuse)"] = _traced(
            lambda: AssessmentEngine(config, STRATEGY, store=store).run(inputs, start, end))
        peaks["naive"] = _traced(lambda: naive_scores(panel))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print("\nTimings (seconds, untraced; median of the repeats, every run in brackets; peak traced MiB from the "
          "memory pass):")
    for name, runs_s in timings.items():
        mib = f"{peaks[name]:8.0f} MiB" if name in peaks else ""
        print(f"  {name:<28} {statistics.median(runs_s):8.2f}  [{', '.join(f'{r:.2f}' for r in runs_s)}]  {mib}")
    walk_forward = statistics.median(timings["assessment (train)"])
    core = sum(statistics.median(timings[f"  train: {p}"]) for p in ("features", "training", "scoring", "ensemble"))
    print(f"  whole walk-forward (one engine run, end to end): {walk_forward:.1f} s; of which features + training + "
          f"scoring + ensemble/calibration {core:.1f} s   (goal < 300 s)  -> "
          f"{'met' if walk_forward < 300 else 'NOT met'}")
    print(f"  LightGBM num_threads {config.num_threads}; {os.cpu_count()} CPUs, load average (1 min) {load0[0]:.2f} at "
          f"the start, {load1[0]:.2f} after the timed runs")
    print(f"  memory: process max RSS {rss:.0f} MiB"
          + ("" if args.no_memory else f"; peak traced {peaks['assessment (reuse)']:.0f} MiB for an engine run (the "
             "reuse path: all but the per-cut training matrices, whose LightGBM buffers are untraced anyway)"))

    # ---------------------------------------------------------------- models
    promoted = [r for r in result.records if result.promotion[r.model_id][0]]
    cv_ics = [r.oos.get("rank_ic") for r in result.records]
    cv_ics = [x for x in cv_ics if x is not None and np.isfinite(x)]
    mean_cv = statistics.fmean(cv_ics) if cv_ics else float("nan")
    print(f"\nModels: {len(result.records)} walk-forward cuts, {len(result.trained)} trained, {len(promoted)} promoted; "
          f"mean CV OOS Rank IC {_fmt(mean_cv)}")
    print(f"  last promoted: {promoted[-1].model_id if promoted else None} (scoring the last session: "
          f"{result.promoted_model})")
    print(f"  reuse run trained {runs[-1]['reuse_trained']} models (goal 0): "
          f"{'met' if all(r['reuse_trained'] == 0 for r in runs) else 'NOT met'}")

    # ---------------------------------------------------------------- quality
    ev = result.evaluation.filter(pl.col("ml").is_not_null())
    ev = ev.join(_naive_frame(panel, naive), on=["session_date", "instrument_id"], how="left")
    out = report.evaluate(ev, SCORES, horizon_sessions=HORIZON)
    labelled = sorted(set(ev.filter(pl.col("forward_return").is_not_null())["session_date"].to_list()))
    oracle, s = _timed(lambda: market.oracle_ics(labelled, horizon=HORIZON))
    record("oracle_ics (truth)", s)
    oracle_of = {r["signal"]: r for r in oracle.drop(oracle.columns[0]).to_dicts()}
    sample = out["sample"]
    print(f"\nOut-of-sample quality ({sample['first_session']} .. {sample['last_session']}: {sample['n_sessions']} "
          f"sessions, {sample['n_rows']:,} rows, {sample['n_labelled']:,} labelled; {HORIZON}-session log return):")
    print(f"  {'score':<10} {'Rank IC':>8} {'ICIR':>7} {'t (HH)':>7} {'hit':>6} {'LS Sharpe':>10} {'LS ann.':>8} "
          f"{'turnover':>9}")
    for name in SCORES:
        ic, q = out["scores"][name]["ic"], out["scores"][name]["quantiles"]
        print(f"  {name:<10} {_fmt(ic['rank_ic_mean']):>8} {_fmt(ic['rank_icir'], 3):>7} {_fmt(ic['rank_ic_t_stat'], 2):>7} "
              f"{_fmt(ic['rank_ic_hit_rate'], 3):>6} {_fmt(q['long_short_sharpe'], 2):>10} "
              f"{_fmt(q['long_short_ann_return'], 3):>8} {_fmt(out['scores'][name]['turnover']['top_quantile'], 3):>9}")
    print(f"\nOracle (planted signals' realised Rank IC over the same {len(labelled)} labelled sessions; "
          f"computed in {s:.1f} s):")
    for name in ORACLE_SIGNALS:
        r = oracle_of.get(name, {})
        print(f"  {name:<10} {_fmt(r.get('oracle_rank_ic')):>8}   t {_fmt(r.get('ic_t_stat'), 2):>6}   "
              f"target {_fmt(r.get('target_ic'), 3)}")
    ens_ic = out["scores"]["ensemble"]["ic"]["rank_ic_mean"]
    naive_ic = out["scores"]["naive"]["ic"]["rank_ic_mean"]
    alpha_ic = oracle_of.get("alpha", {}).get("oracle_rank_ic")
    ratio = ens_ic / alpha_ic if ens_ic is not None and alpha_ic else float("nan")
    naive_ratio = naive_ic / alpha_ic if naive_ic is not None and alpha_ic else float("nan")
    print(f"  recovery: ensemble Rank IC / oracle alpha Rank IC = {_fmt(ratio, 3)}  (goal >= 0.5) -> "
          f"{'met' if np.isfinite(ratio) and ratio >= 0.5 else 'NOT met'};  naive / oracle = {_fmt(naive_ratio, 3)}")

    cal = out["calibration"] or {}
    print(f"\nCalibration of P(forward return > 0) on {cal.get('n', 0):,} rows: Brier {_fmt(cal.get('brier'))} vs base rate "
          f"{_fmt(cal.get('brier_reference'))} (base rate {_fmt(cal.get('base_rate'), 3)}; skill "
          f"{_fmt(cal.get('brier_skill'), 4)}; ECE {_fmt(cal.get('ece'))})")

    if args.report is not None:
        paths = report.write_report(out, args.report, title=(
            f"Assessment bench: synthetic {REGION}, {args.instruments} instruments x {args.years} years, "
            f"walk-forward OOS"), oracle=[oracle_of[k] for k in oracle_of])
        print(f"\nReport: {paths['html']}")

    summary = {
        "instruments": args.instruments, "years": args.years, "sessions": panel.n_sessions,
        "num_threads": config.num_threads, "runs": runs,
        "timings": timings, "peak_traced_mib": peaks, "max_rss_mib": rss, "load_average": [load0[0], load1[0]],
        "walk_forward_s": walk_forward,
        "models": {"cuts": len(result.records), "trained": len(result.trained), "promoted": len(promoted),
                   "last_promoted": promoted[-1].model_id if promoted else None, "mean_cv_oos_rank_ic": mean_cv},
        "oos": {name: {"rank_ic": out["scores"][name]["ic"]["rank_ic_mean"],
                       "rank_icir": out["scores"][name]["ic"]["rank_icir"],
                       "t_stat": out["scores"][name]["ic"]["rank_ic_t_stat"],
                       "long_short_sharpe": out["scores"][name]["quantiles"]["long_short_sharpe"]} for name in SCORES},
        "oracle": {k: oracle_of.get(k, {}).get("oracle_rank_ic") for k in ORACLE_SIGNALS},
        "recovery_ratio": ratio,
        "calibration": {k: cal.get(k) for k in ("n", "brier", "brier_reference", "brier_skill", "ece")},
    }
    print("\nJSON " + json.dumps(summary, default=lambda x: None if x is None else float(x)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
