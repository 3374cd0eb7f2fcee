"""Market-state engines benchmark: regime (3 regions), stability, fragility, soft targets over 500 x 10 years.

    .venv/bin/python bench/engines.py [--instruments 500] [--years 10] [--regions US,EU,JP]
                                      [--work DIR] [--repeat 1]

Per region a synthetic market (tests/market_state_data.py: ``market_config``, on the shared world
seed, so the regions' regime paths are linked as in configs/markets.yaml) is written into a
DuckDB warehouse with every dbt panel (cached under ``--work``, default a folder in the temp
dir, so re-runs skip the build), then read back as a ``MarketPanel`` exactly as the Dagster
assets do. The window is the last ``--years`` years ending 2023-12-29.

Timed, one after the other in this process (walk-forward fits included), each with its peak
traced memory (tracemalloc: Python and numpy allocations; LightGBM's own buffers are not
traced, the process's max RSS is printed too):
  regime       RegimeEngine per region, and the naive trailing-vol baseline
  stability    StabilityEngine on the first region's market
  fragility    FragilityAlphaEngine (with that market's regimes), and the naive trailing-vol score
  soft_target  SoftTargetClassifier on the stability and fragility rows

Scored against the synthetic market's ground truth (read here, never by the engines), on the
sessions the engine has output for (after its first walk-forward fit):
  regime       balanced accuracy of the filtered state vs the latent regime; mean detection lag
               (sessions from a true switch to the engine showing the new state, within 21
               sessions and before the next switch) and switches missed; beside the naive rule
  fragility    out-of-sample ROC AUC of the fragility probability for "a planted crash starts
               within the next N sessions" (rows in a crash left out); beside the naive score
  stability    ROC AUC of (1 - overall stability) for planted precursor phases vs normal rows

Goals (issue 12): regime balanced accuracy >= 0.80 with mean detection lag <= 5 sessions per
region; fragility AUC >= 0.70; all three engines over 500 x 10 years in under 2 minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
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

from market_state_data import (  # noqa: E402
    balanced_accuracy,
    build_warehouse,
    detection_lags,
    fragility_labels,
    market_config,
    roc_auc,
)

from prometheus_lib.calendars import TradingCalendar  # noqa: E402
from prometheus_lib.config import load_config  # noqa: E402
from prometheus_lib.data.synthetic import SyntheticMarket  # noqa: E402
from prometheus_lib.fragility import FragilityAlphaEngine, naive_fragility_scores  # noqa: E402
from prometheus_lib.market_state import load_market_panel  # noqa: E402
from prometheus_lib.regime import RegimeEngine, naive_regime_states  # noqa: E402
from prometheus_lib.stability import SoftTargetClassifier, StabilityEngine  # noqa: E402
from prometheus_lib.storage.factory import open_warehouse  # noqa: E402

END = date(2023, 12, 29)


def _timed(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 2**20


def _panel(region: str, n: int, years: int, work: Path):
    config = market_config(region, n, history_start=date(END.year - years + 1, 1, 2))
    path = work / f"{region}_{n}_{years}y.duckdb"
    cal = TradingCalendar(config.calendar_code)
    sessions = cal.sessions(config.history_start, END)
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".building.duckdb")
        tmp.unlink(missing_ok=True)
        build_warehouse(tmp, config, END)
        tmp.rename(path)
        print(f"  built {region}: {n} instruments x {len(sessions)} sessions with dbt panels in "
              f"{time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    (panel, seconds, peak) = _timed(lambda: _load(path, config, sessions))
    return panel, SyntheticMarket(config, cal), seconds


def _load(path, config, sessions):
    with open_warehouse(backend="duckdb", duckdb_path=str(path)) as wh:
        return load_market_panel(wh, config.market_id, config.region, sessions)


def _regime_scores(market, panel, sessions, states, naive_states):
    truth = market.true_regimes(panel.session_dates())
    true_of = dict(zip(truth["session_date"].to_list(), truth["regime"].to_list()))
    idx = {d: k for k, d in enumerate(panel.session_dates())}
    true = [true_of[s] for s in sessions]
    naive = [naive_states[idx[s]] or "calm" for s in sessions]
    out = {}
    for name, pred in (("engine", states), ("naive", naive)):
        lags, missed = detection_lags(true, pred)
        out[name] = {"balanced_accuracy": balanced_accuracy(true, pred),
                     "mean_lag": statistics.fmean(lags) if lags else float("nan"),
                     "median_lag": statistics.median(lags) if lags else float("nan"),
                     "switches": len(lags) + missed, "missed": missed}
    return out


def _fragility_scores(market, panel, measures, horizon):
    labels = fragility_labels(market, panel, horizon).filter(~pl.col("in_crash"))
    scored = measures.select(pl.col("entity_id").alias("instrument_id"), "session_date", "fragility_score")
    rows = labels.join(scored, on=["instrument_id", "session_date"], how="inner")
    naive = naive_fragility_scores(panel)
    ids = {i: k for k, i in enumerate(panel.instrument_ids)}
    days = {d: k for k, d in enumerate(panel.session_dates())}
    nv = np.array([naive[days[d], ids[i]] for i, d in zip(rows["instrument_id"], rows["session_date"])])
    ok = np.isfinite(nv)
    y = rows["event"].to_numpy()
    return {"engine": roc_auc(y, rows["fragility_score"].to_numpy()), "naive": roc_auc(y[ok], nv[ok]),
            "rows": rows.height, "positives": int(y.sum())}


def _stability_auc(market, panel, vectors):
    phase = market.true_signals(panel.session_dates()).select("instrument_id", "session_date", "fragility_phase")
    rows = vectors.select(pl.col("entity_id").alias("instrument_id"), "session_date", "overall_score").join(
        phase, on=["instrument_id", "session_date"], how="inner").filter(pl.col("fragility_phase").is_in([0, 1]))
    return roc_auc((rows["fragility_phase"] == 1).to_numpy(), 1.0 - rows["overall_score"].to_numpy())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instruments", type=int, default=500)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--regions", default="US,EU,JP")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "prometheus_bench_engines")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    engines = load_config().engines
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    print(f"bench/engines.py {date.today()}: {args.instruments} instruments x {args.years} years, regions {regions}, "
          f"repeat {args.repeat}", flush=True)

    report: dict = {"regions": {}, "timings": {}}
    timings: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}

    def record(name, seconds, peak):
        timings.setdefault(name, []).append(seconds)
        peaks[name] = max(peaks.get(name, 0.0), peak)

    first = None
    for region in regions:
        panel, market, load_s = _panel(region, args.instruments, args.years, args.work)
        record(f"load panel {region}", load_s, 0.0)
        start, end = panel.session_dates()[0], panel.session_dates()[-1]
        for _ in range(args.repeat):
            result, s, peak = _timed(lambda: RegimeEngine(engines.regime).run(panel, start, end))
            record(f"regime {region}", s, peak)
            naive_states, s, peak = _timed(lambda: naive_regime_states(panel, engines.regime))
            record(f"naive regime {region}", s, peak)
        scores = _regime_scores(market, panel, result.sessions, result.states, naive_states)
        report["regions"][region] = {"sessions_scored": len(result.sessions), **scores}
        if first is None:
            first = (region, panel, market, result)

    region, panel, market, regime_result = first
    start, end = panel.session_dates()[0], panel.session_dates()[-1]
    for _ in range(args.repeat):
        stability, s, peak = _timed(lambda: StabilityEngine(engines.stability).run(panel, start, end))
        record(f"stability {region}", s, peak)
        fragility, s, peak = _timed(lambda: FragilityAlphaEngine(engines.fragility).run(
            panel, start, end, regimes=regime_result.regimes))
        record(f"fragility {region}", s, peak)
        _, s, peak = _timed(lambda: naive_fragility_scores(panel))
        record(f"naive fragility {region}", s, peak)
        classes, s, peak = _timed(lambda: SoftTargetClassifier(engines.stability).run(
            panel.market_id, stability.vectors, fragility.measures, regime_result.regimes))
        record(f"soft_target {region}", s, peak)
    report["fragility"] = _fragility_scores(market, panel, fragility.measures, engines.fragility.horizon_sessions)
    report["stability_precursor_auc"] = _stability_auc(market, panel, stability.vectors)
    counts = classes.classes.group_by("soft_target_class").agg(pl.len()).sort("soft_target_class")
    report["soft_target_counts"] = dict(counts.iter_rows())

    print("\nTimings (seconds; median of the repeats, every run in brackets; peak traced MiB):")
    for name, runs in timings.items():
        print(f"  {name:<24} {statistics.median(runs):8.2f}  [{', '.join(f'{r:.2f}' for r in runs)}]  "
              f"{peaks[name]:8.0f} MiB")
    engine_total = sum(statistics.median(v) for k, v in timings.items()
                       if k.split()[0] in ("regime", "stability", "fragility", "soft_target"))
    print(f"  {'all engines':<24} {engine_total:8.2f}   (goal < 120 s)")
    print(f"  process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    print("\nRegime vs the latent regime (filtered state, sessions after the first fit):")
    print(f"  {'region':<6} {'sessions':>8} {'bal.acc':>8} {'mean lag':>9} {'med lag':>8} {'switches':>9} {'missed':>7}"
          f"   | naive: {'bal.acc':>7} {'mean lag':>9} {'missed':>7}")
    for region, r in report["regions"].items():
        e, n = r["engine"], r["naive"]
        print(f"  {region:<6} {r['sessions_scored']:>8} {e['balanced_accuracy']:>8.3f} {e['mean_lag']:>9.2f} "
              f"{e['median_lag']:>8.1f} {e['switches']:>9} {e['missed']:>7}   |        {n['balanced_accuracy']:>7.3f} "
              f"{n['mean_lag']:>9.2f} {n['missed']:>7}")
    f = report["fragility"]
    print(f"\nFragility ROC AUC (planted crash within {engines.fragility.horizon_sessions} sessions, {f['rows']:,} rows, "
          f"{f['positives']:,} positive): engine {f['engine']:.3f}, naive trailing vol {f['naive']:.3f}  (goal >= 0.70)")
    print(f"Stability: ROC AUC of (1 - overall) for precursor phases vs normal rows: {report['stability_precursor_auc']:.3f}")
    print(f"Soft-target classes (all rows): {report['soft_target_counts']}")
    report["timings"] = {k: v for k, v in timings.items()}
    print("\nJSON " + json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
