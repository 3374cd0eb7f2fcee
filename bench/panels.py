"""Panel benchmark: all dbt panels for the synthetic market, 500 instruments x 10 years.

    .venv/bin/python bench/panels.py [--instruments 500] [--years 10] [--backends duckdb,postgres]

For each backend: load prices (not timed), then time
  full         `dbt run` of every model over the whole history (vars cover all sessions)
  incremental  one new session appended to prices, then `dbt run` for that session only
  tests        `dbt test` over the built panels
and print wall seconds, the models' own seconds (from run_results.json; the rest is dbt's
start-up and parse), and rows/s. Goals on the 2-core machine: DuckDB full < 30 s, one-session
incremental < 5 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import polars as pl
import psycopg

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.data.ingestion import ingest_prices, reference_frames
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.storage.dbt import dbt_target_env, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

PANELS = ("returns_daily", "volatility_daily", "factors_daily", "instrument_factors_daily", "correlation_panels")
MARKET = "US_EQ"


def _fill(location: dict, frames: dict, sessions: list) -> None:
    with open_warehouse(**location) as wh:
        wh.replace_table("markets", frames["markets"])
        wh.replace_table("issuers", frames["issuers"], {"market_id": MARKET})
        wh.replace_table("instruments", frames["instruments"], {"market_id": MARKET})
        prices = frames["prices_daily"].filter(pl.col("session_date") <= sessions[-1])
        wh.write_partition("prices_daily", prices, sessions[0], sessions[-1], {"market_id": MARKET})


def _models_seconds(run) -> float:
    return sum(r.get("execution_time", 0.0) for k, r in run.results.items() if k in PANELS or k.startswith(("int_", "stg_")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instruments", type=int, default=500)
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--backends", default="duckdb,postgres")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args()

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
    print(f"{'backend':<9}{'step':<13}{'wall s':>8}{'models s':>10}{'rows':>12}{'rows/s':>12}  goal")
    for backend in args.backends.split(","):
        if backend == "duckdb":
            location = {"backend": "duckdb", "duckdb_path": str(tmp / "bench.duckdb")}
        else:
            with psycopg.connect(args.pg_url, autocommit=True) as con:
                con.execute(f'CREATE DATABASE "{dbname}"')
            location = {"backend": "postgres", "postgres_url": args.pg_url.rsplit("/", 1)[0] + f"/{dbname}"}
        env = dbt_target_env(backend, location.get("duckdb_path"), location.get("postgres_url"))
        try:
            _fill(location, frames, history)
            # parse once so the timed runs measure what a warm project costs
            run_dbt(["parse"], env, tmp / backend, panel_env(history[0], history[-1], MARKET))
            t0 = time.perf_counter()
            full = run_dbt(["run"], env, tmp / backend, panel_env(history[0], history[-1], MARKET))
            full_s = time.perf_counter() - t0
            assert full.returncode == 0, full.stdout[-3000:]
            with open_warehouse(**location, migrate=False) as wh:
                rows = sum(wh.row_count(t) for t in PANELS)
                counts = {t: wh.row_count(t) for t in PANELS}
                new = frames["prices_daily"].filter(pl.col("session_date") == new_session)
                wh.write_partition("prices_daily", new, new_session, new_session, {"market_id": MARKET})
            goal = "< 30 s" if backend == "duckdb" else "(report)"
            print(f"{backend:<9}{'full':<13}{full_s:>8.1f}{_models_seconds(full):>10.1f}{rows:>12,}{rows / full_s:>12,.0f}  {goal}")
            t0 = time.perf_counter()
            inc = run_dbt(["run"], env, tmp / backend, panel_env(new_session, new_session, MARKET))
            inc_s = time.perf_counter() - t0
            assert inc.returncode == 0, inc.stdout[-3000:]
            with open_warehouse(**location, migrate=False) as wh:
                inc_rows = sum(wh.row_count(t, new_session, new_session) for t in PANELS)
            goal = "< 5 s" if backend == "duckdb" else "(report)"
            print(f"{backend:<9}{'incremental':<13}{inc_s:>8.1f}{_models_seconds(inc):>10.1f}{inc_rows:>12,}{inc_rows / inc_s:>12,.0f}  {goal}")
            t0 = time.perf_counter()
            tests = run_dbt(["test"], env, tmp / backend, panel_env(history[0], new_session, MARKET))
            test_s = time.perf_counter() - t0
            print(f"{backend:<9}{'tests':<13}{test_s:>8.1f}{'':>10}{len(tests.results):>12,}{'':>12}  "
                  f"{'all passed' if tests.returncode == 0 else 'FAILED: ' + str(tests.failed)}")
            print(f"{'':<9}rows per panel: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
        finally:
            if backend == "postgres":
                with psycopg.connect(args.pg_url, autocommit=True) as con:
                    con.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
