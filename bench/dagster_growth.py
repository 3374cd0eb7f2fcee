"""Growth of Dagster's embedded storage per run, and what `prometheus gc` takes back.

On a fresh PROMETHEUS_HOME (a temporary folder; a small synthetic US_EQ market), runs the main
job of the primary market over ``--start..--end`` as one run, ``--runs`` times (the same range:
each later run supersedes the earlier ones), the way ``prometheus main`` does (the CLI's
``run_range``), and prints after each run the size of every Dagster file and of the tables in
``index.db`` (SQLite's ``dbstat``), per run and per session. Then applies the retention
(``collect_garbage`` with ``--keep-days 0``: every superseded run goes, the runs holding the
latest materialisations stay) and prints the sizes before and after.

``--event-log dagster`` runs the same with Dagster's own ``SqliteEventLogStorage`` (one
planned check-execution row per partition carrying the whole event); ``both`` (the default)
runs each in its own process and prints them one after the other.

    .venv/bin/python bench/dagster_growth.py                       # one year, 2 runs, both event logs
    .venv/bin/python bench/dagster_growth.py --start 2024-01-02 --end 2024-03-28 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _config_dir(target: Path, n_instruments: int) -> Path:
    shutil.copytree(ROOT / "configs", target)
    markets = yaml.safe_load((target / "markets.yaml").read_text())
    for m in markets["markets"]:
        synthetic = (m.get("data_source") or {}).get("synthetic")
        if synthetic is not None:
            synthetic["n_instruments"] = n_instruments
    (target / "markets.yaml").write_text(yaml.safe_dump(markets, sort_keys=False))
    return target


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _tables(index: Path) -> dict[str, int]:
    con = sqlite3.connect(str(index))
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = con.execute("select name, sum(pgsize) from dbstat group by name").fetchall()
    finally:
        con.close()
    out: dict[str, int] = {}
    for name, size in rows:
        table = "asset_check_executions" if "asset_check_executions" in name else (
            "event_logs" if name == "event_logs" or name.startswith("idx_events") or name == "idx_step_key" else name)
        out[table] = out.get(table, 0) + int(size)
    return out


def _planned(index: Path) -> tuple[int, float, float]:
    con = sqlite3.connect(str(index))
    try:
        n, total = con.execute("select count(*), coalesce(sum(length(evaluation_event)), 0) from asset_check_executions "
                               "where execution_status = 'PLANNED'").fetchone()
        dbstat = con.execute("select coalesce(sum(pgsize), 0) from dbstat where name like '%asset_check_executions%'").fetchone()[0]
        rows = con.execute("select count(*) from asset_check_executions").fetchone()[0]
    finally:
        con.close()
    return n, (total / n if n else 0.0), (dbstat / rows if rows else 0.0)


def _checkpoint(path: Path) -> None:
    con = sqlite3.connect(str(path), timeout=30)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def _snapshot(home: Path) -> dict[str, int]:
    """Bytes per part, after checkpointing every WAL into its database (what stays on disk)."""
    runs_dir = home / "history" / "runs"
    shards = [p for p in runs_dir.glob("*.db") if p.name != "index.db"]
    for path in [runs_dir / "index.db", home / "history" / "runs.db", *shards]:
        if path.exists():
            _checkpoint(path)
    return {
        "index.db": _size(runs_dir / "index.db"),
        "per-run event logs": sum(_size(p) for p in shards),
        "runs.db": _size(home / "history" / "runs.db"),
        "compute logs": sum(p.stat().st_size for p in (home / "storage").rglob("*") if p.is_file()) if (home / "storage").exists() else 0,
    }


def _mb(n: float) -> str:
    return f"{n / 1e6:8.2f} MB"


def measure(event_log: str, start: date, end: date, runs: int, n_instruments: int, keep: bool) -> None:
    """Run the measurement in this process (see the module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="dagster_growth_"))
    os.environ.update(PROMETHEUS_HOME=str(tmp / "home"), DAGSTER_HOME=str(tmp / "home" / "dagster"),
                      PROMETHEUS_CONFIG_DIR=str(_config_dir(tmp / "configs", n_instruments)))
    for var in ("PROMETHEUS_WAREHOUSE_URL", "DAGSTER_PG_HOST"):
        os.environ.pop(var, None)
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from prometheus_assets import cli
    from prometheus_assets.run_hygiene import collect_garbage
    from prometheus_lib.config import load_config
    from prometheus_lib.data.ingestion import market_calendar

    home = cli.dagster_home()
    cli.configure_event_bookkeeping()
    if event_log == "dagster":
        settings = yaml.safe_load((home / "dagster.yaml").read_text())
        settings["event_log_storage"].update(module="dagster._core.storage.event_log", class_="SqliteEventLogStorage")
        settings["event_log_storage"]["class"] = settings["event_log_storage"].pop("class_")
        (home / "dagster.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    config = load_config()
    sessions = market_calendar(config.market(config.primary_market)).sessions(start, end)
    start, end = sessions[0], sessions[-1]
    print(f"\n=== event log: {event_log} ({'PrometheusSqliteEventLogStorage' if event_log == 'prometheus' else 'Dagster SqliteEventLogStorage'}); "
          f"job main over {start}..{end} ({len(sessions)} sessions), {runs} run(s); home {tmp}", flush=True)
    instance = dg.DagsterInstance.from_config(str(home))
    index = home / "history" / "runs" / "index.db"
    before = _snapshot(home) if index.exists() else dict.fromkeys(("index.db", "per-run event logs", "runs.db", "compute logs"), 0)
    tables_before: dict[str, int] = {}
    for i in range(runs):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # dbt's node lines
            result, _ = cli.run_range("main", start, end, instance=instance, tags={"prometheus/command": "bench"})
        seconds = time.perf_counter() - t0
        after = _snapshot(home)
        tables = _tables(index)
        n_planned, planned_event, row_bytes = _planned(index)
        print(f"run {i + 1}: {'succeeded' if result.success else 'FAILED'} in {seconds:.1f} s", flush=True)
        for name in after:
            grow = after[name] - before.get(name, 0)
            print(f"  {name:<20} {_mb(after[name])}  +{_mb(grow)} this run  ({grow / len(sessions) / 1e3:7.1f} KB per session)")
        for name in ("asset_check_executions", "event_logs", "asset_keys"):
            grow = tables.get(name, 0) - tables_before.get(name, 0)
            print(f"    index table {name:<24} {_mb(tables.get(name, 0))}  +{_mb(grow)} this run")
        print(f"    planned check-execution rows: {n_planned:,}; stored event {planned_event / 1e3:.2f} KB per row; "
              f"table incl. indexes {row_bytes / 1e3:.2f} KB per row", flush=True)
        before, tables_before = after, tables
    report = collect_garbage(instance, 0.0, progress=print)
    print("gc --keep-days 0 (superseded runs go, runs holding the latest materialisations stay):")
    print("\n".join("  " + line for line in report.lines()))
    instance.dispose()
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 2))
    p.add_argument("--end", type=date.fromisoformat, default=date(2024, 12, 31))
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--instruments", type=int, default=20)
    p.add_argument("--event-log", choices=("prometheus", "dagster", "both"), default="both")
    p.add_argument("--keep-home", action="store_true", help="leave the temporary home for inspection")
    args = p.parse_args()
    if args.event_log != "both":
        measure(args.event_log, args.start, args.end, args.runs, args.instruments, args.keep_home)
        return 0
    for kind in ("dagster", "prometheus"):  # each in a fresh process: DAGSTER_HOME and env are per process
        cmd = [sys.executable, __file__, "--event-log", kind, "--start", str(args.start), "--end", str(args.end),
               "--runs", str(args.runs), "--instruments", str(args.instruments), *(["--keep-home"] if args.keep_home else [])]
        rc = subprocess.call(cmd, cwd=ROOT)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
