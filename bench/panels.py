"""Panel benchmark: all dbt panels for the synthetic market, 500 instruments x 10 years.

    .venv/bin/python bench/panels.py [--instruments 500] [--years 10] [--backends duckdb,postgres]
                                     [--repeat 3] [--full-repeat 1] [--skip-tests] [--reuse DIR]

dbt runs the way the platform runs it: in-process (prometheus_lib.storage.dbt.run_dbt, the
DbtSession the Dagster panel asset also uses), the project parsed once per process and
warehouse. For each backend: load prices (not timed), then time
  full         `dbt run` of every model over the whole history (the window covers all
               sessions), each time on the filled warehouse whose panels were never built
  incremental  one new session appended to prices, then `dbt run` for that session only:
               warm  in this process, whose session already holds the manifest (the full build
                     parsed it) - what a long-lived process or a Dagster run after its first
                     panel build pays;
               cold  a new Python process: interpreter start, importing dbt-core, loading the
                     project from its partial parse, then the same run (a Dagster run process
                     imports dbt-core anyway when it loads the code location: it pays the
                     parse and the run).
               build `dbt build` of that session, warm: the models and then every data test (over
                     whole tables) and unit test, which is what the Dagster panel asset runs.
  tests        `dbt test` over the built panels
Wall seconds are from the call to its return (the rows are committed then); "models s" sums
dbt's per-node execution times (marts, staging and intermediate views); dbt's own overhead is
the difference. Each step runs --repeat times (the full build --full-repeat times) and the
median is printed with the spread: the machine has 2 cores and is shared, so single figures
are noisy. Goals on the 2-core machine: DuckDB full < 30 s, one-session incremental < 5 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.config.home import REPO_ROOT
from prometheus_lib.data.ingestion import ingest_prices, reference_frames
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.storage.dbt import DbtRun, dbt_target_env, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

PANELS = ("returns_daily", "volatility_daily", "factors_daily", "instrument_factors_daily", "correlation_panels")
MARKET = "US_EQ"

# A cold incremental: a new interpreter that asks for the one-session build, reporting its phases.
COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from datetime import date
from prometheus_lib.storage.dbt import dbt_session, panel_env
import dbt.cli.main
t1 = time.perf_counter()
target, work, day, market = json.loads(sys.argv[1])
session = dbt_session(target, work)
session.manifest()
t2 = time.perf_counter()
run = session.invoke(["run"], panel_env(date.fromisoformat(day), date.fromisoformat(day), market))
t3 = time.perf_counter()
models = sum(r["execution_time"] for r in run.results.values())
print(json.dumps({"returncode": run.returncode, "import": t1 - t0, "parse": t2 - t1, "run": t3 - t2,
                  "models": models, "tail": run.stdout[-2000:] + run.stderr[-2000:]}))
"""


def _fill(location: dict, frames: dict, sessions: list) -> None:
    with open_warehouse(**location) as wh:
        wh.replace_table("markets", frames["markets"])
        wh.replace_table("issuers", frames["issuers"], {"market_id": MARKET})
        wh.replace_table("instruments", frames["instruments"], {"market_id": MARKET})
        prices = frames["prices_daily"].filter(pl.col("session_date") <= sessions[-1])
        wh.write_partition("prices_daily", prices, sessions[0], sessions[-1], {"market_id": MARKET})


def _fresh_copies(location: dict[str, str], dbname: str, pg_url: str) -> Iterator[None]:
    """Put the filled, not yet built warehouse back at ``location`` at each ``next()`` (untimed).

    DuckDB: a copy of the file; PostgreSQL: the database recreated from a template of it.
    """
    if location["backend"] == "duckdb":
        path = Path(location["duckdb_path"])
        filled = path.with_name(path.stem + "_filled.duckdb")
        shutil.copyfile(path, filled)
        try:
            while True:
                shutil.copyfile(filled, path)
                yield
        finally:
            filled.unlink(missing_ok=True)
    template = f"{dbname}_filled"
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{template}" TEMPLATE "{dbname}"')
    try:
        while True:
            with psycopg.connect(pg_url, autocommit=True) as con:
                con.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
                con.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
            yield
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


def _models_seconds(run: DbtRun, prefixes: tuple[str, ...] = ("stg_", "int_")) -> float:
    return sum(r.get("execution_time", 0.0) for k, r in run.results.items() if k in PANELS or k.startswith(prefixes))


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], list[Any]]:
    seconds, outs = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        outs.append(fn())
        seconds.append(time.perf_counter() - t0)
    return seconds, outs


def _median(xs: list[float]) -> str:
    """Median, and the spread when there is more than one figure."""
    m = statistics.median(xs)
    return f"{m:.2f}" if len(xs) == 1 else f"{m:.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def _cold_run(target: dict[str, str], work: Path, day: date) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", COLD_SCRIPT, json.dumps([target, str(work), day.isoformat(), MARKET])],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cold incremental failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["returncode"] != 0:
        raise SystemExit(f"cold incremental dbt run failed:\n{out['tail']}")
    return {**out, "wall": wall}


def _row(backend: str, step: str, seconds: list[float], models: list[float] | None, rows: int, goal: str) -> None:
    med = statistics.median(seconds)
    m = f"{statistics.median(models):.2f}" if models else ""
    print(f"{backend:<9}{step:<17}{_median(seconds):>20}{m:>10}{rows:>12,}{rows / med:>12,.0f}  {goal}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instruments", type=int, default=500)
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--backends", default="duckdb,postgres")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--repeat", type=int, default=3, help="runs of each incremental/test step (median printed)")
    p.add_argument("--full-repeat", type=int, default=1, help="runs of the full build (median printed)")
    p.add_argument("--skip-tests", action="store_true", help="do not time `dbt test`")
    p.add_argument("--reuse", type=Path, default=None,
                   help="DuckDB only: keep the fully built warehouse in this folder and start from it "
                        "on later runs with the same --instruments/--years (the full build is then not timed)")
    args = p.parse_args()
    if args.repeat < 1 or args.full_repeat < 1:
        raise SystemExit(f"--repeat and --full-repeat must be >= 1, were {args.repeat} and {args.full_repeat}")

    cal = TradingCalendar("XNYS")
    last = cal.previous_session(cal.last_session - timedelta(days=400))
    sessions = cal.sessions(last - timedelta(days=round(365.25 * args.years)), last)
    history, new_session = sessions[:-1], sessions[-1]
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=args.instruments, history_start=sessions[0]), cal)
    ref = market.reference()
    frames = {"markets": reference_frames(load_config())["markets"], "issuers": ref.issuers,
              "instruments": ref.instruments, "prices_daily": ingest_prices(market, sessions).prices}
    n_prices = frames["prices_daily"].filter(pl.col("session_date") < new_session).height
    print(f"synthetic market: {args.instruments} instruments, {len(history)} sessions "
          f"({history[0]}..{history[-1]}), {n_prices:,} price rows; incremental session {new_session}\n")

    tmp = Path(tempfile.mkdtemp(prefix="prom_bench_panels_"))
    dbname = f"prom_bench_{uuid.uuid4().hex[:8]}"
    print("dbt runs in this process (prometheus_lib.storage.dbt, as in the Dagster asset). incr. warm: the process\n"
          "already holds the parsed project (needs a warm process: a long-lived one, or a Dagster run after its\n"
          "first panel build); incr. cold: a new Python process importing dbt-core and loading the project first.\n")
    print(f"{'backend':<9}{'step':<17}{'wall s: median [range]':>20}{'models s':>10}{'rows':>12}{'rows/s':>12}  goal")
    for backend in args.backends.split(","):
        pristine, reused = None, False
        if backend == "duckdb":
            location = {"backend": "duckdb", "duckdb_path": str(tmp / "bench.duckdb")}
            if args.reuse:
                pristine = args.reuse / f"panels_{args.instruments}x{args.years}y.duckdb"
        elif backend == "postgres":
            with psycopg.connect(args.pg_url, autocommit=True) as con:
                con.execute(f'CREATE DATABASE "{dbname}"')
            location = {"backend": "postgres", "postgres_url": args.pg_url.rsplit("/", 1)[0] + f"/{dbname}"}
        else:
            raise SystemExit(f"--backends: unknown backend {backend!r} (duckdb, postgres)")
        target = dbt_target_env(backend, location.get("duckdb_path"), location.get("postgres_url"))
        work = tmp / backend
        try:
            if pristine is not None and pristine.exists():
                reused = True
                shutil.copyfile(pristine, location["duckdb_path"])
                print(f"{backend:<9}{'full':<17}{'(reused ' + str(pristine) + ')':>20}")
            else:
                _fill(location, frames, history)
                full_env = panel_env(history[0], history[-1], MARKET)
                run_dbt(["parse"], target, work)  # parse once, untimed: the timed runs start warm
                fresh = _fresh_copies(location, dbname, args.pg_url)
                seconds, runs = [], []
                for _ in range(args.full_repeat):  # each on the filled, never built warehouse
                    next(fresh)
                    took, done = _timed(lambda: run_dbt(["run"], target, work, full_env), 1)
                    seconds += took
                    runs += done
                fresh.close()
                assert all(r.returncode == 0 for r in runs), runs[-1].stdout[-3000:]
                with open_warehouse(**location, migrate=False) as wh:
                    rows = sum(wh.row_count(t) for t in PANELS)
                goal = "< 30 s" if backend == "duckdb" else "(report)"
                _row(backend, "full", seconds, [_models_seconds(r) for r in runs], rows, goal)
                if pristine is not None:
                    pristine.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(location["duckdb_path"], pristine)
            with open_warehouse(**location, migrate=False) as wh:
                counts = {t: wh.row_count(t) for t in PANELS}
                new = frames["prices_daily"].filter(pl.col("session_date") == new_session)
                wh.write_partition("prices_daily", new, new_session, new_session, {"market_id": MARKET})

            # Warm: this process's session (parsed by the full build, or by a first run here).
            inc_env = panel_env(new_session, new_session, MARKET)
            if reused:
                run_dbt(["parse"], target, work)  # the reused warehouse had no build in this process
            seconds, runs = _timed(lambda: run_dbt(["run"], target, work, inc_env), args.repeat)
            assert all(r.returncode == 0 for r in runs), runs[-1].stdout[-3000:]
            with open_warehouse(**location, migrate=False) as wh:
                inc_rows = sum(wh.row_count(t, new_session, new_session) for t in PANELS)
            goal = "< 5 s" if backend == "duckdb" else "(report)"
            _row(backend, "incr. warm", seconds, [_models_seconds(r) for r in runs], inc_rows, goal)
            marts = [_models_seconds(r, ()) for r in runs]
            views = [_models_seconds(r) - m for r, m in zip(runs, marts, strict=True)]
            overhead = statistics.median([s - _models_seconds(r) for s, r in zip(seconds, runs, strict=True)])
            # dbt's own time is wall minus node time only when nodes run one at a time (DuckDB)
            dbt_own = f"dbt's own {overhead:.2f} s" if overhead >= 0 else "nodes overlap (threads > 1)"
            print(f"{'':<9}{'':<17}node seconds: marts {statistics.median(marts):.2f}, views {statistics.median(views):.2f}; "
                  f"{dbt_own}; per mart: "
                  + ", ".join(f"{t} {statistics.median([r.results[t]['execution_time'] for r in runs]):.2f}" for t in PANELS))

            # What the Dagster panel asset runs for a session: `dbt build` (models, then the data
            # tests as asset checks over the whole tables, and the unit tests), same session.
            seconds, builds = _timed(lambda: run_dbt(["build"], target, work, inc_env), args.repeat)
            assert all(r.returncode == 0 for r in builds), builds[-1].failed or builds[-1].stdout[-3000:]
            tests_s = [sum(r["execution_time"] for r in b.results.values() if r["unique_id"].startswith(("test.", "unit_test.")))
                       for b in builds]
            _row(backend, "incr. build", seconds, [_models_seconds(b) for b in builds], inc_rows,
                 f"(report) dbt build as the Dagster asset runs it: + {len(builds[-1].results) - len(runs[-1].results)} "
                 f"data/unit tests, {statistics.median(tests_s):.2f} s of them")

            colds = [_cold_run(target, work, new_session) for _ in range(args.repeat)]
            _row(backend, "incr. cold", [c["wall"] for c in colds], [c["models"] for c in colds], inc_rows, goal + " (new process)")
            phase = {k: statistics.median([c[k] for c in colds]) for k in ("import", "parse", "run")}
            start = statistics.median([c["wall"] - c["import"] - c["parse"] - c["run"] for c in colds])
            print(f"{'':<9}{'':<17}of which python start {start:.2f} s, imports (dbt-core) {phase['import']:.2f} s, "
                  f"project load {phase['parse']:.2f} s, run {phase['run']:.2f} s")

            if not args.skip_tests:
                test_env = panel_env(history[0], new_session, MARKET)
                seconds, tests = _timed(lambda: run_dbt(["test"], target, work, test_env), args.repeat)
                t = tests[-1]
                print(f"{backend:<9}{'tests':<17}{_median(seconds):>20}{'':>10}{len(t.results):>12,}{'':>12}  "
                      f"{'all passed' if t.returncode == 0 else 'FAILED: ' + str(t.failed)}", flush=True)
            print(f"{'':<9}rows per panel: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
        finally:
            if backend == "postgres":
                with psycopg.connect(args.pg_url, autocommit=True) as con:
                    con.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
