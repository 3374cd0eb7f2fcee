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
  build        what the Dagster panel asset runs for that session: `dbt build` with the asset's
               selection (prometheus_lib.storage.dbt.panel_build_args: the models, then their
               data tests, scoped to the session window; no unit tests, no text staging views):
               warm  in this process, as above;
               cold  a new Python process, as above: a process whose only work is the daily
                     panel step. A Dagster run process has imported dbt-core with the code
                     location; its panel op pays the project load and the build.
  dagster      the panel step as Dagster runs it, in a new Python process that does what a run
               worker does: import the code location (prometheus_assets.definitions, whose `defs`
               are built from configs/ with PROMETHEUS_HOME and PROMETHEUS_WAREHOUSE_URL pointing
               at the bench's warehouse, so the dbt resource's work folder is the one the steps
               above use and its op loads the project from their partial parse), then execute the
               "panels" job for one session partition on an ephemeral DagsterInstance (console
               logging at WARNING, as `prometheus panels` runs it). Before each repeat a new
               session, one after the last appended, goes into prices (untimed), so each run
               builds a session whose panels do not exist yet. Wall: the process, from start to
               exit (imports, definitions, the run); op: the dbt_panels step, STEP_START to
               STEP_SUCCESS in the run's event log (project load, dbt build, the asset events);
               run: RUN_START to RUN_SUCCESS. The dbt manifest the code location reads
               (dbt_project/target) is refreshed beforehand if stale, as a deployment ships it.
  tests        `dbt test` over the built panels (through the last session built)
Wall seconds are from the call to its return (the rows are committed then); "models s" sums
dbt's per-node execution times (marts, staging and intermediate views); dbt's own overhead is
the difference. Each step runs --repeat times (the full build --full-repeat times) and the
median is printed with the spread: the machine has 2 cores and is shared, so single figures
are noisy. Goals on the 2-core machine: DuckDB full < 30 s, one-session incremental < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
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

from prometheus_assets.assets.panels import ensure_manifest, warehouse_work_dir
from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.config.home import REPO_ROOT
from prometheus_lib.data.ingestion import ingest_prices, reference_frames
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.storage.dbt import DbtRun, dbt_target_env, panel_build_args, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

PANELS = ("returns_daily", "volatility_daily", "factors_daily", "instrument_factors_daily", "correlation_panels")
MARKET = "US_EQ"

# A cold incremental: a new interpreter that runs one dbt command for one session, reporting its phases.
COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from datetime import date
from prometheus_lib.storage.dbt import dbt_session, panel_env
import dbt.cli.main
t1 = time.perf_counter()
target, work, day, market, args = json.loads(sys.argv[1])
session = dbt_session(target, work)
session.manifest()
t2 = time.perf_counter()
run = session.invoke(args, panel_env(date.fromisoformat(day), date.fromisoformat(day), market))
t3 = time.perf_counter()
models = sum(r["execution_time"] for k, r in run.results.items() if r["unique_id"].startswith("model."))
tests = [r["execution_time"] for r in run.results.values() if r["unique_id"].startswith(("test.", "unit_test."))]
n_unit = sum(r["unique_id"].startswith("unit_test.") for r in run.results.values())
print(json.dumps({"returncode": run.returncode, "import": t1 - t0, "parse": t2 - t1, "run": t3 - t2,
                  "models": models, "n_tests": f"{len(tests) - n_unit} data + {n_unit} unit tests", "tests": sum(tests),
                  "failed": run.failed,
                  "tail": run.stdout[-2000:] + run.stderr[-2000:]}))
"""

# The panel step as Dagster runs it: a new interpreter that loads the code location and executes
# the panels job for one session partition, as a run worker would, reporting its phases and events.
DAGSTER_SCRIPT = """
import json, sys, time
t0, started = time.perf_counter(), time.time()
from prometheus_assets.cli import configure_event_bookkeeping
configure_event_bookkeeping()  # as `prometheus ui` sets it for the runs it launches
import dagster as dg
from prometheus_assets.assets.panels import warehouse_work_dir
from prometheus_assets.constants import DBT, WAREHOUSE
from prometheus_assets.definitions import PANELS_JOB, defs
from prometheus_lib.security import redact_text
from prometheus_lib.storage.dbt import DbtSession, dbt_target_env, target_secrets
t1 = time.perf_counter()
parses = []  # observe (not change) the op's project load: its seconds, and whether dbt parsed it all again
_parse = DbtSession.parse
def observed_parse(self, *args, **kwargs):
    t = time.perf_counter()
    run = _parse(self, *args, **kwargs)
    parses.append({"seconds": time.perf_counter() - t, "full": "Unable to do partial parsing" in run.stdout,
                   "why": [ln for ln in run.stdout.splitlines() if "partial pars" in ln]})
    return run
DbtSession.parse = observed_parse
expected_target, expected_work, day, log_level = json.loads(sys.argv[1])
with dg.build_resources({"w": defs.resources[WAREHOUSE]}) as res:
    w = res.w
target = dbt_target_env(w.backend, w.duckdb_path, w.postgres_url)
work = str(warehouse_work_dir(target, defs.resources[DBT].work_root))
if (target, work) != (expected_target, expected_work):
    sys.exit(f"the code location is not on the bench's warehouse: {redact_text(str(target), target_secrets(target))} "
             f"{work} != {expected_work}")
instance = dg.DagsterInstance.ephemeral()
t2 = time.perf_counter()
result = defs.resolve_job_def(PANELS_JOB).execute_in_process(
    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    instance=instance, partition_key=day, raise_on_error=False)
t3 = time.perf_counter()
first = {}
for entry in instance.all_logs(result.run_id):
    if entry.dagster_event is not None:
        first.setdefault((entry.dagster_event.event_type_value, entry.dagster_event.step_key), entry.timestamp)
def span(start, end, step=None):
    start, end = start.value, end.value  # e.g. RUN_START's value is "PIPELINE_START"
    return first[(end, step)] - first[(start, step)] if (start, step) in first and (end, step) in first else None
mats = result.get_asset_materialization_events()
checks = result.get_asset_check_evaluations()
durations = [m.materialization.metadata.get("Execution Duration") for m in mats]
messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
out = {"success": result.success, "import": t1 - t0, "instance": t2 - t1, "execute": t3 - t2,
       "op": span(dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, "dbt_panels"),
       "run": span(dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS),
       "models": sum(d.value for d in durations if d is not None), "n_mats": len(mats),
       "n_checks": len(checks), "n_passed": sum(c.passed for c in checks),
       "failed": [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed],
       "parsed_first": any("parsing the project first" in m for m in messages), "parses": parses,
       "tail": messages[-20:]}
out["started"], out["ended"] = started, time.time()
print("BENCH_RESULT " + json.dumps(out), flush=True)
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


def _cold_run(target: dict[str, str], work: Path, day: date, args: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", COLD_SCRIPT, json.dumps([target, str(work), day.isoformat(), MARKET, args])],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cold {args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["returncode"] != 0:
        raise SystemExit(f"cold dbt {args[0]} failed ({out['failed']}):\n{out['tail']}")
    return {**out, "wall": wall}


def _dagster_run(backend: str, location: dict[str, str], target: dict[str, str], work: Path, home: Path,
                 day: date) -> dict[str, Any]:
    """Run the panels job for ``day`` in a new process that loads the code location (DAGSTER_SCRIPT)."""
    env = {**os.environ, "PROMETHEUS_HOME": str(home)}
    url_env = load_config().warehouse.postgres.url_env  # the variable the code location reads
    if backend == "postgres":
        env[url_env] = location["postgres_url"]
    else:  # the embedded file under PROMETHEUS_HOME, where the bench keeps it
        env.pop(url_env, None)
    spec = json.dumps([target, str(work), day.isoformat(), os.environ.get("PROMETHEUS_LOG_LEVEL", "WARNING")])
    t0, launched = time.perf_counter(), time.time()
    proc = subprocess.run([sys.executable, "-c", DAGSTER_SCRIPT, spec], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False)
    wall, exited = time.perf_counter() - t0, time.time()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"dagster panels run failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    if not out["success"] or out["op"] is None or out["run"] is None:
        raise SystemExit(f"dagster panels run for {day} failed (success {out['success']}, op {out['op']}, run {out['run']}, "
                         f"checks failed: {out['failed']}):\n"
                         + "\n".join(out["tail"]) + f"\n{proc.stderr[-3000:]}")
    return {**out, "wall": wall, "start": out["started"] - launched, "exit": exited - out["ended"]}


def _test_counts(results: dict[str, dict[str, Any]]) -> str:
    data = sum(r["unique_id"].startswith("test.") for r in results.values())
    unit = sum(r["unique_id"].startswith("unit_test.") for r in results.values())
    return f"{data} data + {unit} unit tests"


def _phases(colds: list[dict[str, Any]]) -> str:
    """Where a cold process's seconds went (medians)."""
    phase = {k: statistics.median([c[k] for c in colds]) for k in ("import", "parse", "run")}
    start = statistics.median([c["wall"] - c["import"] - c["parse"] - c["run"] for c in colds])
    return (f"of which python start and exit {start:.2f} s, imports (dbt-core, prometheus_lib) {phase['import']:.2f} s, "
            f"project load {phase['parse']:.2f} s, dbt command {phase['run']:.2f} s")


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
    # one more new session per repeat of the dagster step, each after the last appended
    dagster_sessions = [cal.next_session(last)]
    while len(dagster_sessions) < args.repeat:
        dagster_sessions.append(cal.next_session(dagster_sessions[-1]))
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=args.instruments, history_start=sessions[0]), cal)
    ref = market.reference()
    frames = {"markets": reference_frames(load_config())["markets"], "issuers": ref.issuers,
              "instruments": ref.instruments, "prices_daily": ingest_prices(market, [*sessions, *dagster_sessions]).prices}
    n_prices = frames["prices_daily"].filter(pl.col("session_date") < new_session).height
    print(f"synthetic market: {args.instruments} instruments, {len(history)} sessions "
          f"({history[0]}..{history[-1]}), {n_prices:,} price rows; incremental session {new_session}\n")

    tmp = Path(tempfile.mkdtemp(prefix="prom_bench_panels_"))
    # The bench's deployment: its PROMETHEUS_HOME holds the DuckDB warehouse where the code
    # location's config puts it, and the dbt work folders where the Dagster dbt resource puts them.
    home = tmp / "home"
    os.environ["PROMETHEUS_HOME"] = str(home)
    dbname = f"prom_bench_{uuid.uuid4().hex[:8]}"
    print("dbt runs in this process (prometheus_lib.storage.dbt, as in the Dagster asset). incr. warm: the process\n"
          "already holds the parsed project (needs a warm process: a long-lived one, or a Dagster run after its\n"
          "first panel build); incr. cold: a new Python process importing dbt-core and loading the project first.\n"
          "build warm / build cold: the same, running the Dagster panel asset's `dbt build` (models + window-scoped data\n"
          "tests); build cold is what a Dagster run's daily panel step costs. dagster: a new process loading the code\n"
          "location and running the panels job for one new session (ephemeral instance); wall = the whole process.\n")
    print(f"{'backend':<9}{'step':<17}{'wall s: median [range]':>20}{'models s':>10}{'rows':>12}{'rows/s':>12}  goal")
    for backend in args.backends.split(","):
        pristine, reused = None, False
        if backend == "duckdb":
            duckdb_path = home / load_config().warehouse.duckdb.path
            if not duckdb_path.resolve().is_relative_to(home.resolve()):  # never the real warehouse
                raise SystemExit(f"the configured DuckDB path {duckdb_path} is not under the bench's home {home}")
            duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            location = {"backend": "duckdb", "duckdb_path": str(duckdb_path)}
            if args.reuse:
                pristine = args.reuse / f"panels_{args.instruments}x{args.years}y.duckdb"
        elif backend == "postgres":
            with psycopg.connect(args.pg_url, autocommit=True) as con:
                con.execute(f'CREATE DATABASE "{dbname}"')
            location = {"backend": "postgres", "postgres_url": args.pg_url.rsplit("/", 1)[0] + f"/{dbname}"}
        else:
            raise SystemExit(f"--backends: unknown backend {backend!r} (duckdb, postgres)")
        target = dbt_target_env(backend, location.get("duckdb_path"), location.get("postgres_url"))
        work = warehouse_work_dir(target, home / "dbt")  # the Dagster dbt resource's folder for it
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

            # What the Dagster panel asset runs for a session: `dbt build` with its selection
            # (models, then their data tests as asset checks, scoped to the session window).
            build_args = panel_build_args()
            seconds, builds = _timed(lambda: run_dbt(build_args, target, work, inc_env), args.repeat)
            assert all(r.returncode == 0 for r in builds), builds[-1].failed or builds[-1].stdout[-3000:]
            tests_s = [sum(r["execution_time"] for r in b.results.values() if r["unique_id"].startswith(("test.", "unit_test.")))
                       for b in builds]
            _row(backend, "build warm", seconds, [_models_seconds(b) for b in builds], inc_rows,
                 f"(report) as the Dagster asset runs it: {_test_counts(builds[-1].results)}, "
                 f"{statistics.median(tests_s):.2f} s of them")

            colds = [_cold_run(target, work, new_session, ["run"]) for _ in range(args.repeat)]
            _row(backend, "incr. cold", [c["wall"] for c in colds], [c["models"] for c in colds], inc_rows, goal + " (new process)")
            print(f"{'':<9}{'':<17}{_phases(colds)}")

            colds = [_cold_run(target, work, new_session, build_args) for _ in range(args.repeat)]
            _row(backend, "build cold", [c["wall"] for c in colds], [c["models"] for c in colds], inc_rows,
                 "(report) new process, the Dagster asset's dbt build for one session")
            print(f"{'':<9}{'':<17}{_phases(colds)}; {colds[-1]['n_tests']}, "
                  f"{statistics.median([c['tests'] for c in colds]):.2f} s of them")

            # The panel step as a Dagster run worker runs it, a new session each time.
            ensure_manifest()  # the code location's manifest, fresh as a deployment ships it (untimed)
            dagsters, dagster_rows = [], []
            for day in dagster_sessions:
                with open_warehouse(**location, migrate=False) as wh:
                    new = frames["prices_daily"].filter(pl.col("session_date") == day)
                    wh.write_partition("prices_daily", new, day, day, {"market_id": MARKET})
                dagsters.append(_dagster_run(backend, location, target, work, home, day))
                with open_warehouse(**location, migrate=False) as wh:
                    dagster_rows.append(sum(wh.row_count(t, day, day) for t in PANELS))
            d = dagsters[-1]
            _row(backend, "dagster", [c["wall"] for c in dagsters], [c["models"] for c in dagsters],
                 round(statistics.median(dagster_rows)),
                 "(report) new process: code location + panels job for one new session; the op is the daily panel step")
            load = statistics.median([sum(x["seconds"] for x in c["parses"]) for c in dagsters])
            full = [w for c in dagsters for x in c["parses"] if x["full"] for w in x["why"]]
            print(f"{'':<9}{'':<17}op dbt_panels {_median([c['op'] for c in dagsters])} s (of which project load {load:.2f} s), "
                  f"run {_median([c['run'] for c in dagsters])} s (event log); process: python start "
                  f"{statistics.median([c['start'] for c in dagsters]):.2f} s, imports + code location "
                  f"{statistics.median([c['import'] for c in dagsters]):.2f} s, execute_in_process "
                  f"{statistics.median([c['execute'] for c in dagsters]):.2f} s, exit "
                  f"{statistics.median([c['exit'] for c in dagsters]):.2f} s; "
                  f"{d['n_checks']} check evaluations ({d['n_passed']} passed), {d['n_mats']} materialisations"
                  + (f"; NOTE: full parse, not partial: {full[0]}" if full else "")
                  + ("" if all(c["parsed_first"] and c["parses"] for c in dagsters) else "; NOTE: an op did not load the project"))

            if not args.skip_tests:
                test_env = panel_env(history[0], dagster_sessions[-1], MARKET)
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
