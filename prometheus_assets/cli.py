"""The ``prometheus`` command: run the main job, ingest a range, open the cockpit, migrate.

    prometheus main [--start D] [--end D] [--markets US_EQ,EU_EQ]
                                              per market with data: reference + 2 years of ingestion
                                              and panels in one run on its own sessions, checks;
                                              then the default strategy's backtest; a summary
    prometheus ingest --start D --end D [--market M]   one single-run backfill of a market's ingestion assets
    prometheus panels --start D --end D [--market M]   one single-run backfill of a market's dbt panels
    prometheus backtest --strategy S --start D --end D [--run-id R]
                                              backtest = one single-run backfill of the strategy's
                                              assets; prints the tear sheet, writes an HTML/PNG report
    prometheus ui [--port 3000]               the Dagster webserver + daemon on localhost
    prometheus migrate                        apply warehouse migrations
    prometheus instance                       print where things live
    prometheus gc [--keep-days N] [--drop-latest] [--dry-run]
                                              delete finished Dagster runs past the retention (not
                                              those holding an asset partition's latest
                                              materialisation), VACUUM, print sizes before/after

Every command first marks failed the runs of this host whose process died (see run_hygiene).

On DuckDB a command that writes holds the warehouse lock from start to end
(``prometheus_lib.storage.lock``): a second one is refused before anything starts, in one line
naming the first (pid, command, since when), or with ``--wait SECONDS`` (``PROMETHEUS_LOCK_WAIT``)
waits that long for it. PostgreSQL takes no lock: runs of different run ids go side by side.

Runs go through the persistent Dagster instance under ``$DAGSTER_HOME`` (default
``$PROMETHEUS_HOME/dagster``), so they show in the UI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from prometheus_assets.runs import (
    DEBUG_ENV,
    PG_ENV,
    configure_event_bookkeeping,
    dagster_home,
    default_range,
    failure_lines,
    run_range,
    validate_range,
)
from prometheus_assets.runs import open_instance as _instance
from prometheus_lib.config.home import REPO_ROOT, prometheus_home, scoped_environment
from prometheus_lib.errors import PrometheusError

ALLOW_EMPTY_HELP = ("let a source that yields no rows for the range (or drops an instrument that has rows there) "
                    "replace the stored rows; refused otherwise")


@dataclass(frozen=True)
class MarketRun:
    """One market's data run: its job, session range, result and wall time."""

    market_id: str
    job_name: str
    start: date
    end: date
    result: Any
    seconds: float

    @property
    def checks(self) -> tuple[int, list, list]:
        """Checks passed, and the failed ERROR and WARN evaluations."""
        evals = self.result.get_asset_check_evaluations()
        failed_error = [e for e in evals if not e.passed and e.severity.value == "ERROR"]
        failed_warn = [e for e in evals if not e.passed and e.severity.value == "WARN"]
        return sum(e.passed for e in evals), failed_error, failed_warn

    @property
    def healthy(self) -> bool:
        """The run succeeded and no ERROR check failed."""
        return bool(self.result.success) and not self.checks[1]

    def headline(self) -> str:
        """One line: job, outcome, wall time, market, run and sessions."""
        r = self.result
        return (f"Prometheus {r.dagster_run.job_name} job: {'succeeded' if r.success else 'FAILED'} in {self.seconds:.1f} s "
                f"({self.market_id}, run {r.run_id[:8]}, sessions {self.start}..{self.end})")


def _row_counts(wh, market_ids: list[str]) -> list[tuple[str, list[int] | int]]:
    """Rows per catalogue table: per market where the table has a market_id, else in total."""
    from prometheus_lib.storage.catalog import catalogue_tables

    rows: list[tuple[str, list[int] | int]] = []
    for t in catalogue_tables():
        if t.name == "schema_migrations":
            continue
        total = wh.row_count(t.name)
        if not total:
            continue
        if "market_id" in t.column_names and t.name not in ("markets",):
            rows.append((t.qualified_name, [wh.row_count(t.name, scope={"market_id": m}) for m in market_ids]))
        else:
            rows.append((t.qualified_name, total))
    return rows


def _market_state_lines(wh, market_ids: list[str]) -> list[str]:
    """The latest regime per market (its region) and soft-target class counts, from the warehouse."""
    import json

    import polars as pl

    from prometheus_lib.config import load_config

    states = load_config().engines.regime.state_names
    lines: list[str] = []
    for market_id in market_ids:
        regimes = wh.read_table("regimes", scope={"market_id": market_id})
        if regimes.is_empty():
            continue
        last = regimes.sort("session_date").row(-1, named=True)
        probs = json.loads(last["probabilities_json"] or "{}")
        shown = ", ".join(f"{k} {probs[k]:.2f}" for k in states if k in probs)
        duration = last["expected_duration_sessions"]
        line = (f"  {market_id:<8} region {last['region']:<4} {last['session_date']}: {last['regime_label'].upper()} "
                f"(p {last['confidence']:.2f}; {shown}; expected stay {duration:.0f} sessions)")
        classes = wh.read_table("soft_target_classes", last["session_date"], last["session_date"], {"market_id": market_id})
        if classes.height:
            counts = classes.group_by("soft_target_class").agg(pl.len()).sort("soft_target_class")
            line += "\n" + " " * 11 + "soft targets: " + ", ".join(
                f"{c} {n}" for c, n in counts.iter_rows())
        lines.append(line)
    return ["", "Market state (current regime per region, filtered):", *lines] if lines else []


def _assessment_lines(wh, market_ids: list[str]) -> list[str]:
    """Per strategy of the markets run: the ensemble's OOS Rank IC (its report) and the promoted model."""
    import json

    from prometheus_assets.assets.assessment import report_dir
    from prometheus_lib.assessment.engine import run_id_of
    from prometheus_lib.config import load_config

    lines: list[str] = []
    for strategy in (s for s in load_config().strategies if s.market_id in market_ids):
        sid = strategy.strategy_id
        decisions = wh.read_table("engine_decisions", scope={"run_id": run_id_of(sid), "mode": "SHARED"},
                                  columns=["session_date", "decision_json"])
        if decisions.is_empty():
            continue
        last = decisions.sort("session_date").row(-1, named=True)
        decision = json.loads(last["decision_json"])
        model = decision.get("model_id") or "none (alphas only)"
        line = f"  {sid}: {last['session_date']}: scoring model {model}"
        if decision.get("latest_model") and decision.get("latest_model") != decision.get("model_id"):
            line += f"\n    latest model {decision['latest_model']} not promoted: {'; '.join(decision.get('latest_gate_reasons') or [])}"
        path = report_dir(sid) / "report.json"
        if path.exists():
            rep = json.loads(path.read_text())
            ics = {name: s.get("ic", {}).get("rank_ic_mean") for name, s in rep.get("scores", {}).items()}
            sample = rep.get("sample", {})
            shown = ", ".join(f"{k} {v:+.4f}" for k, v in ics.items() if v is not None)
            line += (f"\n    OOS Rank IC ({sample.get('first_session')}..{sample.get('last_session')}, "
                     f"{sample.get('n_sessions')} sessions): {shown}\n    report: {path.with_name('report.html')}")
        lines.append(line)
    return ["", "Assessment (walk-forward, out of sample):", *lines] if lines else []


def summarise(runs: list[MarketRun]) -> tuple[str, bool]:
    """Return a text summary of the markets' runs and whether all are healthy (no ERROR check failed).

    Rows per table per market, checks passed/failed per market, where the warehouse and the
    synthetic truth files are, and how to open the UI.
    """
    from prometheus_assets.assets.ingestion import truth_root
    from prometheus_assets.definitions import defs, open_defs_warehouse

    market_ids = [r.market_id for r in runs]
    lines = [r.headline() for r in runs]
    lines += [f"  {line}" for r in runs for line in failure_lines(r.result)]
    with open_defs_warehouse(defs) as wh:
        location = wh.location
        counts = _row_counts(wh, market_ids)
        state = _market_state_lines(wh, market_ids) + _assessment_lines(wh, market_ids)
    width = max([34, *(len(name) for name, _ in counts)])
    lines += ["", "Rows per table:" if len(runs) == 1 else "Rows per table and market:",
              f"  {'':<{width}} " + " ".join(f"{m:>12}" for m in market_ids)]
    for name, n in counts:
        cells = " ".join(f"{v:>12,}" for v in n) if isinstance(n, list) else f"{n:>12,}  (all markets)"
        lines.append(f"  {name:<{width}} {cells}")
    lines += ["", "Checks:"]
    for r in runs:
        passed, failed_error, failed_warn = r.checks
        lines.append(f"  {r.market_id:<8} {passed} passed, {len(failed_error)} failed (ERROR), {len(failed_warn)} failed (WARN)")
        for e in failed_error + failed_warn:
            lines.append(f"    FAILED {e.severity.value:<5} {e.asset_key.to_user_string()}:{e.check_name}: {e.description}")
    lines += state
    truth = [(r.market_id, truth_root(r.market_id)) for r in runs]
    truth = [(m, p, sorted(p.rglob("*.parquet"))) for m, p in truth if p.exists()]
    if truth:
        lines += ["", "Synthetic ground truth (for evaluations; engines never read it):"]
        lines += [f"  {m:<8} {p} ({len(files)} Parquet files)" for m, p, files in truth]
    lines += [
        "",
        f"Warehouse: {location}",
        f"Dagster home: {os.environ.get('DAGSTER_HOME')}",
        "Open the cockpit (Dagster UI): ./prom ui   then browse http://127.0.0.1:3000",
    ]
    return "\n".join(lines), all(r.healthy for r in runs)


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, was {value!r}") from None


def _parse_markets(value: str) -> list[str]:
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(f"expected market ids separated by commas (e.g. US_EQ,EU_EQ), was {value!r}")
    return ids


def _run_market(market_id: str, base_job: str, start: date, end: date, allow_empty: bool = False) -> MarketRun:
    from prometheus_assets.assets.ingestion import ALLOW_EMPTY_TAG
    from prometheus_assets.definitions import market_job_name
    from prometheus_lib.config import load_config

    job_name = market_job_name(load_config(), base_job, market_id)
    tags = {"prometheus/command": base_job, **({ALLOW_EMPTY_TAG: "1"} if allow_empty else {})}
    t0 = time.perf_counter()
    result, _ = run_range(job_name, start, end, tags=tags)
    return MarketRun(market_id, job_name, start, end, result, time.perf_counter() - t0)


def _run_and_report(base_job: str, start: date, end: date, market_id: str | None = None, allow_empty: bool = False) -> int:
    """Run a market's ``base_job`` over the range, print the summary; exit 1 if the run or an ERROR check failed."""
    from prometheus_lib.config import load_config

    config = load_config()
    market_id = market_id or config.primary_market
    _check_markets(config, [market_id], "--market")
    text, healthy = summarise([_run_market(market_id, base_job, start, end, allow_empty)])
    print(text)
    return 0 if healthy else 1


def _check_markets(config, market_ids: list[str], option: str):
    from prometheus_assets.markets import select_markets

    try:
        return select_markets(config, market_ids)
    except ValueError as e:
        raise SystemExit(f"prometheus: {option}: {e}") from None


def cmd_main(args: argparse.Namespace) -> int:
    from prometheus_assets.definitions import market_job_name
    from prometheus_lib.config import load_config
    from prometheus_lib.data.ingestion import market_calendar

    config = load_config()
    markets = _check_markets(config, args.markets, "--markets")
    start, end = default_range(args.years)
    start, end = args.start or start, args.end or end
    # --start/--end are sessions of the primary market, as ever; every market runs its own
    # sessions between those dates, on its own partitions.
    validate_range(market_job_name(config, "main"), start, end)
    where = os.environ.get("PROMETHEUS_WAREHOUSE_URL") and "PostgreSQL" or "the embedded DuckDB warehouse"
    print(f"Running the main job of {', '.join(m.market_id for m in markets)} over {start}..{end} on {where} ...", flush=True)
    # The primary market runs last: its main job also builds the text staging views and tests
    # them over whole tables, so those tests see every market's text.
    ordered = sorted(markets, key=lambda m: m.market_id == config.primary_market)
    runs = []
    for market in ordered:
        sessions = market_calendar(market).sessions(start, end)
        if not sessions:
            print(f"  {market.market_id}: no {market.calendar} session in {start}..{end}, skipped", flush=True)
            continue
        run = _run_market(market.market_id, "main", sessions[0], sessions[-1], args.allow_empty)
        print(f"  {run.headline()}", flush=True)
        runs.append(run)
    runs.sort(key=lambda r: r.market_id != config.primary_market)  # the summary lists the primary first
    text, healthy = summarise(runs)
    print("\n" + text)
    code = 0 if healthy else 1
    strategy = config.strategy(config.default_strategy)
    primary_ok = any(r.market_id == strategy.market_id and r.healthy for r in runs)
    if args.no_backtest or not primary_ok:
        return code
    # The backtest starts once the strategy has the history its windows need (12-1 momentum,
    # a 252-session risk window), inside the range the main job just built.
    from prometheus_lib.strategies.baseline import lookback_sessions

    warmup = lookback_sessions(strategy)
    cal = market_calendar(config.market(strategy.market_id))
    sessions = cal.sessions(start, end)
    if len(sessions) <= warmup + 20:
        print(f"\nNo backtest: {len(sessions)} sessions is not enough for the strategy's {warmup}-session warm-up.")
        return code
    print(f"\nBacktesting {strategy.strategy_id} over {sessions[warmup]}..{end} (after a {warmup}-session warm-up) ...", flush=True)
    from prometheus_assets.backtest_command import run_backtest_command

    return run_backtest_command(strategy.strategy_id, sessions[warmup], end, None) or code


def cmd_backtest(args: argparse.Namespace) -> int:
    from prometheus_assets.backtest_command import run_backtest_command

    return run_backtest_command(args.strategy, args.start, args.end, args.run_id)


def cmd_ingest(args: argparse.Namespace) -> int:
    return _run_and_report("ingest", args.start, args.end, args.market, args.allow_empty)


def cmd_panels(args: argparse.Namespace) -> int:
    return _run_and_report("panels", args.start, args.end, args.market)


def cmd_ui(args: argparse.Namespace) -> int:
    home = dagster_home()
    exe = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    cmd = [exe, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={home}\nOpen http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    return subprocess.call(cmd, cwd=REPO_ROOT)


def cmd_migrate(args: argparse.Namespace) -> int:
    from prometheus_assets.definitions import defs, open_defs_warehouse
    from prometheus_lib.storage.migrations import applied_versions

    with open_defs_warehouse(defs) as wh:
        print(f"Warehouse {wh.location}: migrations applied {sorted(applied_versions(wh))}")
    return 0


def cmd_instance(args: argparse.Namespace) -> int:
    from prometheus_assets.definitions import defs

    home = dagster_home()
    wh = defs.resources["warehouse"]
    print(f"PROMETHEUS_HOME={prometheus_home()}\nDAGSTER_HOME={home}\nwarehouse backend={wh.backend}"
          f"\ndagster storage={'postgres' if os.environ.get(PG_ENV) else 'sqlite'}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from prometheus_assets.run_hygiene import check_keep_days, collect_garbage, retention_days

    from dagster._core.storage.dagster_run import RunsFilter

    from prometheus_assets.run_hygiene import LIVE_STATUSES

    keep_days = retention_days() if args.keep_days is None else check_keep_days(args.keep_days)
    instance = _instance()
    try:
        # VACUUM holds SQLite's write lock for as long as it takes (longer than Dagster's busy
        # timeout on a large index.db): never while a run is writing its events.
        live = instance.get_runs_count(RunsFilter(statuses=list(LIVE_STATUSES)))
        if live:
            print(f"{live} run(s) in progress: runs are collected, VACUUM is left for a later gc", flush=True)
        report = collect_garbage(instance, keep_days, drop_latest=args.drop_latest, dry_run=args.dry_run,
                                 vacuum=not live, progress=lambda line: print(line, flush=True))
    finally:
        instance.dispose()
    print("\n".join(report.lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``prometheus`` command."""
    p = argparse.ArgumentParser(prog="prometheus", description="Prometheus trading platform")
    p.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("main", help="run the main job of every market with data, backtest, print a summary")
    m.add_argument("--start", type=_parse_date)
    m.add_argument("--end", type=_parse_date)
    m.add_argument("--years", type=int, default=2)
    m.add_argument("--no-backtest", action="store_true", help="stop after the data runs")
    m.add_argument("--allow-empty", action="store_true", help=ALLOW_EMPTY_HELP)
    m.add_argument("--markets", type=_parse_markets, default=None,
                   help="markets to run, comma-separated (default: every market with data, e.g. US_EQ,EU_EQ,JP_EQ)")
    m.set_defaults(fn=cmd_main)
    b = sub.add_parser("backtest", help="backtest a strategy over a session range as one Dagster run")
    b.add_argument("--strategy", required=True)
    b.add_argument("--start", type=_parse_date, required=True)
    b.add_argument("--end", type=_parse_date, required=True)
    b.add_argument("--run-id", help="backtest run id (default: strategy, config hash and range); its rows are replaced")
    b.set_defaults(fn=cmd_backtest)
    i = sub.add_parser("ingest", help="ingest a session range as one run")
    i.add_argument("--start", type=_parse_date, required=True)
    i.add_argument("--end", type=_parse_date, required=True)
    i.add_argument("--market", help="market with data (default: the primary market); dates are its sessions")
    i.add_argument("--allow-empty", action="store_true", help=ALLOW_EMPTY_HELP)
    i.set_defaults(fn=cmd_ingest)
    pn = sub.add_parser("panels", help="rebuild the dbt panels of a session range as one run")
    pn.add_argument("--start", type=_parse_date, required=True)
    pn.add_argument("--end", type=_parse_date, required=True)
    pn.add_argument("--market", help="market with data (default: the primary market); dates are its sessions")
    pn.set_defaults(fn=cmd_panels)
    u = sub.add_parser("ui", help="open the cockpit: Dagster webserver and daemon on localhost")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(fn=cmd_ui)
    sub.add_parser("migrate", help="apply warehouse migrations").set_defaults(fn=cmd_migrate)
    sub.add_parser("instance", help="print where things live").set_defaults(fn=cmd_instance)
    g = sub.add_parser("gc", help="delete finished Dagster runs past the retention, VACUUM, print sizes")
    g.add_argument("--keep-days", metavar="N", default=None,
                   help="keep runs that ended in the last N days (default: prometheus.run_retention_days in dagster.yaml)")
    g.add_argument("--drop-latest", action="store_true",
                   help="also delete old runs holding the latest materialisation of an asset partition "
                        "(the UI then loses those partitions' status)")
    g.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    g.set_defaults(fn=cmd_gc)
    for name, command in sub.choices.items():
        if name not in LOCK_FREE_COMMANDS:
            command.add_argument("--wait", metavar="SECONDS", default=None,
                                 help="DuckDB: wait up to SECONDS for another command holding the warehouse "
                                      "(default: PROMETHEUS_LOCK_WAIT, else 0: refuse at once)")
    return p


# Commands that never open the warehouse; every other one holds it (DuckDB) while it runs.
LOCK_FREE_COMMANDS = frozenset({"ui", "instance", "gc"})


def warehouse_command_lock(args: argparse.Namespace, argv: list[str]):
    """The DuckDB warehouse lock for a whole writing command (``prometheus_lib.storage.lock``).

    Taken before anything starts, so a second command is refused (or waits ``--wait`` seconds,
    saying for whom) rather than failing at a random step; nothing on PostgreSQL, where runs
    of different run ids go side by side.
    """
    import contextlib

    if args.command in LOCK_FREE_COMMANDS:
        return contextlib.nullcontext()
    from prometheus_lib.config import load_config
    from prometheus_lib.storage.factory import command_lock
    from prometheus_lib.storage.lock import LOCK_WAIT_ENV, lock_wait_seconds

    wait = lock_wait_seconds(args.wait)
    os.environ[LOCK_WAIT_ENV] = f"{wait:g}"  # the bound of every open inside the command, too
    return command_lock(load_config().warehouse, " ".join(["prometheus", *argv]), wait,
                        on_wait=lambda line: print(f"prometheus: {line}", file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prometheus`` console script."""
    import warnings

    import dagster as dg

    # Single-run backfill policies and partitioned checks are marked beta/preview in 1.13; the
    # platform relies on them deliberately, so the CLI does not repeat the notice on every run.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    # --debug is accepted anywhere on the line (before or after the sub-command).
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    from prometheus_lib.storage.lock import LOCK_WAIT_ENV

    # The command's own settings travel to the code it calls in environment variables; an
    # in-process caller (a test, a notebook) gets its environment back afterwards.
    with scoped_environment({DEBUG_ENV: "1"} if args.debug else {}, keep=(DEBUG_ENV, LOCK_WAIT_ENV)):
        return _run_command(args, argv)


def _run_command(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the parsed command: Dagster home, dead-run reaper, warehouse lock; user errors in one line."""
    try:
        dagster_home()
        configure_event_bookkeeping()
        # Runs of this host whose process died (kill -9, OOM) are marked failed before anything
        # else (not by a dry run, which changes nothing).
        from prometheus_assets.run_hygiene import reap_at_start

        if not getattr(args, "dry_run", False):
            reap_at_start(_instance)
        with warehouse_command_lock(args, [a for a in argv if a != "--debug"]):
            return int(args.fn(args) or 0)
    except PrometheusError as e:
        # A user error (config, argument, missing data, lock held): one line naming the
        # culprit, no traceback unless --debug.
        if args.debug:
            raise
        for line in error_lines(e):
            print(f"prometheus: {line}", file=sys.stderr)
        return 2


def error_lines(error: BaseException, limit: int = 10) -> list[str]:
    """A user error as lines of one culprit each (a config file with three bad keys gives three
    lines), at most ``limit`` of them."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()] or [type(error).__name__]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
