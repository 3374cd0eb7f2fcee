"""The market-state engines as session-partitioned Dagster assets: regimes, stability, fragility, soft targets.

A warehouse holds a synthetic market with its dbt panels (built once per backend); the
``market_state`` job runs on a real Dagster instance and the tests read the warehouse back.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from panel_data import CALENDAR, build_panels, fill_market, synthetic_frames
from providers import build_defs, check_results, make_config_dir, run_range

from prometheus_assets.assets.market_state import market_state_key
from prometheus_assets.markets import MarketScope
from prometheus_lib.config import load_config
from prometheus_lib.market_state import SHARED_MODE
from prometheus_lib.storage.catalog import MARKET_STATE_TABLES
from prometheus_lib.storage.factory import open_warehouse

pytestmark = pytest.mark.xdist_group("market_state_assets")

DATA_START, DATA_END = date(2022, 6, 1), date(2024, 3, 28)
RUN_START, RUN_END = date(2023, 9, 1), date(2024, 3, 28)
SUB_START, SUB_END = date(2023, 12, 1), date(2024, 1, 31)
ENGINES = {
    "regime": {"min_train_sessions": 126, "refit_every_sessions": 42},
    "fragility": {"min_train_sessions": 126, "refit_every_sessions": 42},
}
PRIMARY = MarketScope("US_EQ", is_primary=True)


@pytest.fixture(scope="module")
def market(tmp_path_factory, pg_databases):
    """Per backend: a warehouse with 40 synthetic instruments and their panels, as a template."""
    built = {}

    def get(backend: str) -> dict[str, str]:
        if backend not in built:
            tmp = tmp_path_factory.mktemp(f"market_state_{backend}")
            if backend == "duckdb":
                loc = {"backend": "duckdb", "duckdb_path": str(tmp / "template.duckdb")}
            else:
                loc = {"backend": "postgres", "postgres_url": pg_databases.create("prom_mstate")}
            fill_market(loc, synthetic_frames(40, DATA_START, DATA_END, seed=5), DATA_START, DATA_END)
            run = build_panels(loc, DATA_START, DATA_END, select="prometheus", command="run")
            assert run.returncode == 0, run.stdout[-3000:]
            built[backend] = loc
        return built[backend]

    return get


def _copy(loc: dict[str, str], tmp_path: Path) -> dict[str, str]:
    if loc["backend"] == "duckdb":
        path = tmp_path / "wh.duckdb"
        shutil.copy(loc["duckdb_path"], path)
        return {"backend": "duckdb", "duckdb_path": str(path)}
    return loc


def _tables(loc) -> dict[str, pl.DataFrame]:
    with open_warehouse(**loc) as wh:
        out = {t: wh.read_table(t, scope={"market_id": "US_EQ"}) for t in MARKET_STATE_TABLES}
        out["engine_decisions"] = wh.read_table("engine_decisions", scope={"mode": SHARED_MODE})
        out["engine_configs"] = wh.read_table("engine_configs")
    return {k: v.drop([c for c in ("created_at",) if c in v.columns]).sort(v.columns[:3]) for k, v in out.items()}


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_market_state_job_materialises_the_four_assets_with_decisions_configs_and_passing_checks(backend, market, tmp_path):
    # Arrange
    loc = _copy(market(backend), tmp_path)
    config_dir = make_config_dir(tmp_path, n_instruments=40, engines=ENGINES)
    defs = build_defs(config_dir, loc)
    config = load_config(str(config_dir))
    sessions = [s.isoformat() for s in CALENDAR.sessions(RUN_START, RUN_END)]

    # Act
    with dg.instance_for_test() as instance:
        result = run_range(defs, RUN_START, RUN_END, instance, job_name="market_state")

    # Assert: one run, every asset materialised for every session of the range
    assert result.success
    mats = result.get_asset_materialization_events()
    for table in MARKET_STATE_TABLES:
        key = market_state_key(PRIMARY, table)
        assert sorted(m.partition for m in mats if m.asset_key == key) == sessions
    # every check ran and passed (validity blocking, coverage)
    checks = check_results(result)
    for table in MARKET_STATE_TABLES:
        key = market_state_key(PRIMARY, table).to_user_string()
        assert checks[(key, f"{table}_valid")].passed, checks[(key, f"{table}_valid")].description
        assert checks[(key, "coverage")].passed, checks[(key, "coverage")].description
    tables = _tables(loc)
    regimes = tables["regimes"]
    assert regimes.height > 0 and regimes["session_date"].is_unique().all()
    assert set(regimes["region"]) == {"US"}
    assert regimes["session_date"].max() == RUN_END
    for table in ("stability_vectors", "fragility_measures", "soft_target_classes"):
        frame = tables[table]
        assert frame.height > 20 * regimes.height // 2, table  # most instruments, most sessions
        assert frame["session_date"].min() >= RUN_START
    probs = [json.loads(p) for p in regimes["probabilities_json"]]
    assert all(set(p) == set(config.engines.regime.state_names) for p in probs)
    # decisions: one per engine per session with output, the engine's config hash, shared mode
    decisions = tables["engine_decisions"]
    hashes = {
        "regime": config.engines.regime.config_hash(), "stability": config.engines.stability.config_hash(),
        "fragility": config.engines.fragility.config_hash(), "soft_target": config.engines.stability.config_hash(),
    }
    for engine, config_hash in hashes.items():
        mine = decisions.filter(pl.col("engine_name") == engine)
        assert mine.height > 0 and mine["session_date"].is_unique().all(), engine
        assert set(mine["config_hash"]) == {config_hash}
        assert set(mine["run_id"]) == {f"{engine}/US_EQ"}
    assert decisions.filter(pl.col("engine_name") == "regime")["session_date"].to_list() == regimes["session_date"].to_list()
    configs = tables["engine_configs"]
    assert {(r["engine_name"], r["config_hash"]) for r in configs.iter_rows(named=True)} == set(hashes.items())


def test_rerunning_a_sub_range_replaces_exactly_those_rows_with_identical_values(market, tmp_path):
    # Arrange: the whole range once
    loc = _copy(market("duckdb"), tmp_path)
    defs = build_defs(make_config_dir(tmp_path, n_instruments=40, engines=ENGINES), loc)
    with dg.instance_for_test() as instance:
        assert run_range(defs, RUN_START, RUN_END, instance, job_name="market_state").success
        before = _tables(loc)

        # Act: a sub-range again (its outputs depend on the history before it only)
        again = run_range(defs, SUB_START, SUB_END, instance, job_name="market_state")

    # Assert: every table identical (created_at aside), no row duplicated or lost
    assert again.success
    after = _tables(loc)
    for name, frame in before.items():
        assert after[name].equals(frame), name


def test_market_state_job_before_the_first_fit_writes_no_regime_or_fragility_and_fails_no_check(market, tmp_path):
    # Arrange: the range ends before the first walk-forward fit (126 sessions after the data start)
    loc = _copy(market("duckdb"), tmp_path)
    defs = build_defs(make_config_dir(tmp_path, n_instruments=40, engines=ENGINES), loc)
    early_end = CALENDAR.session_offset(DATA_START, 60)

    # Act
    with dg.instance_for_test() as instance:
        result = run_range(defs, DATA_START, early_end, instance, job_name="market_state")

    # Assert
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    tables = _tables(loc)
    assert tables["regimes"].height == 0 and tables["fragility_measures"].height == 0
    # stability needs no fit (21 returns of history): it and the soft targets (from stability alone) have rows
    assert tables["stability_vectors"].height > 0
    assert tables["soft_target_classes"].height == tables["stability_vectors"].height
