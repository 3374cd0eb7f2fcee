"""A strategy's decisions and book as session-partitioned Dagster assets: a range run is a backtest.

The warehouse holds a synthetic market with its dbt panels (built once per backend); the
backtest job runs on a real Dagster instance and the tests read the warehouse back.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from panel_data import CALENDAR, build_panels, fill_market, synthetic_frames
from providers import build_defs, make_config_dir

from prometheus_assets.assets.strategy import RUN_ID_TAG, strategy_keys
from prometheus_assets.definitions import backtest_job_name
from prometheus_lib.storage.factory import open_warehouse

# One xdist worker runs the whole module, so the module's market is built once per backend.
pytestmark = pytest.mark.xdist_group("strategy_assets")

DATA_START, DATA_END = date(2023, 1, 3), date(2024, 3, 28)
BT_START, BT_MID, BT_END = date(2024, 2, 1), date(2024, 2, 15), date(2024, 3, 15)
STRATEGY = "US_CORE_LONG_EQ"
JOB = backtest_job_name(STRATEGY)
DECISIONS, BOOK = strategy_keys(STRATEGY)


def _config_dir(tmp: Path) -> Path:
    target = make_config_dir(tmp, n_instruments=40)
    doc = yaml.safe_load((target / "strategies.yaml").read_text())
    doc["strategies"][0]["universe_size"] = 10
    doc["strategies"][0]["max_position_weight"] = 0.15
    (target / "strategies.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def market(request, tmp_path_factory, pg_databases):
    """Per backend: a warehouse with 40 synthetic instruments and their panels, as a template."""
    built = {}

    def get(backend: str) -> dict[str, str]:
        if backend not in built:
            tmp = tmp_path_factory.mktemp(f"strategy_{backend}")
            if backend == "duckdb":
                loc = {"backend": "duckdb", "duckdb_path": str(tmp / "template.duckdb")}
            else:
                loc = {"backend": "postgres", "postgres_url": pg_databases.create("prom_strat")}
            fill_market(loc, synthetic_frames(40, DATA_START, DATA_END, seed=11), DATA_START, DATA_END)
            run = build_panels(loc, DATA_START, DATA_END, select="prometheus", command="run")
            assert run.returncode == 0, run.stdout[-3000:]
            built[backend] = loc
        return built[backend]

    return get


def _copy(market_loc: dict[str, str], tmp_path: Path) -> dict[str, str]:
    if market_loc["backend"] == "duckdb":
        path = tmp_path / "wh.duckdb"
        shutil.copy(market_loc["duckdb_path"], path)
        return {"backend": "duckdb", "duckdb_path": str(path)}
    return market_loc  # PostgreSQL: one database per module; tests use distinct run ids


def _run(defs, start, end, run_id, instance):
    job = defs.resolve_job_def(JOB)
    return job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
              RUN_ID_TAG: run_id},
        raise_on_error=False,
    )


def _rows(loc, table, run_id) -> pl.DataFrame:
    with open_warehouse(**loc) as wh:
        frame = wh.read_table(table, scope={"run_id": run_id})
    drop = [c for c in ("created_at", "dagster_run_id") if c in frame.columns]
    return frame.drop(drop).sort(frame.columns[: min(3, len(frame.columns))])


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_backtest_job_with_range_materialises_every_session_and_writes_run_tables(backend, market, tmp_path):
    # Arrange
    loc = _copy(market(backend), tmp_path)
    defs = build_defs(_config_dir(tmp_path), loc)
    run_id = f"bt-{backend}-full"

    # Act
    with dg.instance_for_test() as instance:
        result = _run(defs, BT_START, BT_END, run_id, instance)
        sessions = CALENDAR.sessions(BT_START, BT_END)

        # Assert: one run, a materialisation per asset per session (lineage per session)
        assert result.success
        mats = result.get_asset_materialization_events()
        for key in (DECISIONS, BOOK):
            parts = sorted(m.partition for m in mats if m.asset_key == key)
            assert parts == [s.isoformat() for s in sessions]
        status = instance.get_status_by_partition(BOOK, [s.isoformat() for s in sessions], defs.resolve_job_def(JOB).partitions_def)
        assert status is None or all(v.value == "MATERIALIZED" for v in status.values())
    eq = _rows(loc, "backtest_daily_equity", run_id)
    assert eq["session_date"].to_list() == sessions
    assert (eq["equity"] > 0).all()
    for table in ("orders", "fills", "positions_snapshots", "executed_actions", "backtest_trades",
                  "instrument_scores", "universes", "universe_members", "target_portfolios",
                  "portfolio_risk_reports", "engine_decisions", "decision_outcomes"):
        frame = _rows(loc, table, run_id)
        assert frame.height > 0, table
    orders = _rows(loc, "orders", run_id)
    assert set(orders["mode"].to_list()) == {"BACKTEST"}
    with open_warehouse(**loc) as wh:
        run = wh.read_table("backtest_runs", scope={"run_id": run_id})
    assert run.height == 1 and run["start_date"][0] == BT_START and run["end_date"][0] == BT_END
    checks = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    assert checks[(DECISIONS, "targets_valid")].passed and checks[(BOOK, "book_reconciles")].passed
    metrics = json.loads(run["metrics_json"][0])
    assert metrics["final_equity"] == pytest.approx(eq["equity"][-1])
    assert {"sharpe_ratio", "max_drawdown", "var_95", "es_99", "beta", "turnover"} <= set(metrics)


def test_backtest_rerun_with_same_run_id_replaces_rows_and_other_ids_coexist(market, tmp_path):
    # Arrange
    loc = _copy(market("duckdb"), tmp_path)
    defs = build_defs(_config_dir(tmp_path), loc)
    with dg.instance_for_test() as instance:
        assert _run(defs, BT_START, BT_END, "bt-a", instance).success
        first = {t: _rows(loc, t, "bt-a") for t in ("orders", "fills", "backtest_daily_equity", "target_portfolios")}

        # Act
        assert _run(defs, BT_START, BT_END, "bt-a", instance).success
        assert _run(defs, BT_START, BT_MID, "bt-b", instance).success

    # Assert: identical rows for bt-a (no duplicates), bt-b alongside
    for table, frame in first.items():
        again = _rows(loc, table, "bt-a")
        assert again.height == frame.height
        assert again.equals(frame), table
    assert _rows(loc, "backtest_daily_equity", "bt-b").height == len(CALENDAR.sessions(BT_START, BT_MID))
    with open_warehouse(**loc) as wh:
        assert sorted(wh.read_table("backtest_runs")["run_id"].to_list()) == ["bt-a", "bt-b"]


def test_backtest_in_two_runs_with_book_carried_equals_one_run(market, tmp_path):
    # Arrange: the book of the session before the second range is read back from the warehouse
    loc = _copy(market("duckdb"), tmp_path)
    defs = build_defs(_config_dir(tmp_path), loc)
    second = CALENDAR.next_session(BT_MID)

    # Act
    with dg.instance_for_test() as instance:
        assert _run(defs, BT_START, BT_END, "one", instance).success
        assert _run(defs, BT_START, BT_MID, "two", instance).success
        assert _run(defs, second, BT_END, "two", instance).success

    # Assert
    for table, cols in (("backtest_daily_equity", ["session_date", "equity", "cash", "drawdown"]),
                        ("fills", ["session_date", "instrument_id", "side", "quantity", "price", "commission"]),
                        ("positions_snapshots", ["session_date", "instrument_id", "quantity", "avg_cost"])):
        one = _rows(loc, table, "one").select(cols).sort(cols[:2])
        two = _rows(loc, table, "two").select(cols).sort(cols[:2])
        assert one.height == two.height > 0
        for c in cols:
            if one[c].dtype == pl.Float64:
                assert (one[c] - two[c]).abs().max() <= 1e-6 * max(1.0, one[c].abs().max()), (table, c)
            else:
                assert one[c].to_list() == two[c].to_list(), (table, c)


def test_backtest_with_gap_before_range_fails_naming_the_missing_session(market, tmp_path):
    # Arrange: the run's book stops at BT_MID; a later range skips sessions
    loc = _copy(market("duckdb"), tmp_path)
    defs = build_defs(_config_dir(tmp_path), loc)
    later = CALENDAR.session_offset(BT_MID, 5)

    # Act
    with dg.instance_for_test() as instance:
        assert _run(defs, BT_START, BT_MID, "gap", instance).success
        result = _run(defs, later, BT_END, "gap", instance)

    # Assert
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert str(BT_MID) in message and str(CALENDAR.next_session(BT_MID)) in message and "materialise" in message
