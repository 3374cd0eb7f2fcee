"""``prometheus backtest``: run a strategy's backtest job over a session range, print the tear
sheet and write the HTML/PNG report to ``$PROMETHEUS_HOME/reports/<run id>/``.

A re-run replaces the run id's rows and report only once the new run is complete
(``prometheus_lib.backtest.rerun``)."""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import date

from prometheus_assets.runs import failure_lines, run_range
from prometheus_lib.config.home import prometheus_home


def backtest_run_id(strategy_id: str, start: date, end: date) -> str:
    """The run id ``prometheus backtest`` uses when none is given: strategy, range and config hash."""
    from prometheus_assets.assets.strategy import default_run_id
    from prometheus_lib.config import load_config

    return f"{default_run_id(load_config().strategy(strategy_id))}-{start:%Y%m%d}-{end:%Y%m%d}"


def run_backtest_command(strategy_id: str, start: date, end: date, run_id: str | None) -> int:
    """Backtest ``strategy_id`` over ``start..end`` as one Dagster run and replace run ``run_id``'s
    result with it only once it is complete (``prometheus_lib.backtest.rerun``).

    The job runs under a staging id; a failed run is discarded, a killed one leaves a staging set
    that this command discards at the next run of the id. On success the report is written to a
    version folder of its own, the rows are promoted in one warehouse transaction, then
    ``reports/<run id>`` is pointed at the new report in one rename.
    """
    from prometheus_lib.backtest import rerun

    if run_id is not None:
        rerun.check_run_id(run_id)  # before anything is loaded: a bad --run-id fails at once

    from prometheus_assets.assets.strategy import RUN_ID_TAG, STAGING_RUN_ID_TAG, run_performance
    from prometheus_assets.definitions import backtest_job_name, defs, open_defs_warehouse
    from prometheus_lib.analytics import format_tear_sheet, write_report
    from prometheus_lib.config import load_config

    config = load_config()
    try:
        strategy = config.strategy(strategy_id)
    except KeyError as e:
        raise SystemExit(f"prometheus: --strategy: {e.args[0]}") from None
    run_id = rerun.check_run_id(run_id or backtest_run_id(strategy_id, start, end))
    reports = prometheus_home() / "reports"
    # What an earlier run of this id left when it was killed: its staging rows, and a report
    # version written but not yet published (rolled forward if its rows were promoted).
    with open_defs_warehouse(defs) as wh:
        discarded = rerun.discard_staging(wh, run_id)
        rerun.settle_reports(reports, run_id, rerun.committed_version(wh, run_id))
    staging = rerun.staging_run_id(run_id)
    promoted = version = None
    t0 = time.perf_counter()
    try:
        result, _ = run_range(backtest_job_name(strategy_id), start, end,
                              tags={RUN_ID_TAG: run_id, STAGING_RUN_ID_TAG: staging, "prometheus/command": "backtest"})
        seconds = time.perf_counter() - t0
        if not result.success:
            for line in failure_lines(result):
                print(f"prometheus: {line}", file=sys.stderr)
            print(f"prometheus: backtest run {result.run_id} FAILED after {seconds:.1f} s; run id {run_id} "
                  "keeps its earlier result, if any", file=sys.stderr)
            return 1
        version = result.run_id
        with open_defs_warehouse(defs) as wh:
            dates, curve, bench_curve, metrics = run_performance(wh, strategy, staging)
            counts = {t: wh.row_count(t, scope={"run_id": staging}) for t in ("orders", "fills", "backtest_trades")}
        folder = rerun.stage_report(reports, run_id, version)
        write_report(folder / "report", dates=dates, equity=curve[1:],
                     benchmark_equity=bench_curve[1:] if bench_curve is not None else None,
                     metrics=metrics, title=f"{strategy_id} backtest {dates[0]}..{dates[-1]}")
        with open_defs_warehouse(defs) as wh:
            promoted = rerun.promote_run(wh, staging, run_id)
        published = rerun.publish_report(reports, run_id, version)
    finally:
        if promoted is None:  # failed or interrupted before the promotion: the earlier result stays
            with contextlib.suppress(Exception), open_defs_warehouse(defs) as wh:
                rerun.discard_staging(wh, run_id, staging)
            if version is not None:
                with contextlib.suppress(Exception):
                    rerun.discard_report(reports, run_id, version)
    extra = {
        "Run id": run_id,
        "Dagster run": result.run_id,
        "Wall time": f"{seconds:.1f} s ({len(dates)} sessions, 2 assets)",
        "Orders / fills": f"{counts['orders']:,} / {counts['fills']:,}",
        "Final equity": f"{curve[-1]:,.0f} (from {curve[0]:,.0f})",
        "Benchmark": strategy.benchmark_factor,
    }
    if promoted.replaced_rows:
        extra["Replaced"] = f"{promoted.replaced_rows:,} rows of an earlier run with this id"
    if discarded:
        extra["Discarded"] = f"{discarded:,} rows of an interrupted earlier run with this id"
    print(format_tear_sheet(metrics, title=f"{strategy_id} backtest", start=dates[0], end=dates[-1],
                            sessions=len(dates), extra=extra))
    paths = [published / "report.png", published / "report.html"]
    print("Report: " + ", ".join(str(p) for p in paths))
    return 0
