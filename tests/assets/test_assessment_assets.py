"""The assessment engine as a strategy's session-partitioned Dagster assets.

A warehouse holds a synthetic market with its dbt panels (built once per backend); the
``assessment`` job runs on a real Dagster instance (walk-forward LightGBM, models in the registry
under the test's PROMETHEUS_HOME) and the tests read the warehouse and the artefacts back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from panel_data import CALENDAR, build_panels, fill_market, synthetic_frames
from providers import build_defs, check_results, make_config_dir, run_range

from prometheus_assets.assets.assessment import ASSESSMENT_TABLES, assessment_key, report_dir
from prometheus_lib.assessment.engine import run_id_of
from prometheus_lib.storage.factory import open_warehouse

pytestmark = pytest.mark.xdist_group("assessment_assets")

STRATEGY = "US_CORE_LONG_EQ"
DATA_START, DATA_END = date(2022, 6, 1), date(2024, 3, 28)
RUN_START, RUN_END = date(2023, 9, 1), date(2024, 3, 28)
SUB_START, SUB_END = date(2024, 1, 2), date(2024, 2, 29)
# Small and permissive: a 40-name market over two years promotes models only with open gates.
ENGINES = {
    "regime": {"min_train_sessions": 126, "refit_every_sessions": 63},
    "assessment": {"min_train_sessions": 126, "refit_every_sessions": 126, "train_window_sessions": 252,
                   "cv_folds": 3, "num_leaves_grid": [7], "n_estimators": 15, "calibration_min_rows": 100,
                   "min_adv_value": 0, "min_price": 0, "gate_min_oos_sharpe": -100.0, "gate_min_hit_rate": 0.0,
                   "gate_no_negative_fold": False, "num_threads": 1},
}


@pytest.fixture(scope="module")
def market(tmp_path_factory, pg_databases):
    """Per backend: a warehouse with 40 synthetic instruments and their panels, as a template."""
    built = {}

    def get(backend: str) -> dict[str, str]:
        if backend not in built:
            tmp = tmp_path_factory.mktemp(f"assessment_{backend}")
            if backend == "duckdb":
                loc = {"backend": "duckdb", "duckdb_path": str(tmp / "template.duckdb")}
            else:
                loc = {"backend": "postgres", "postgres_url": pg_databases.create("prom_assess")}
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
        out = {
            "signals": wh.read_table("signals", scope={"strategy_id": STRATEGY}),
            "instrument_scores": wh.read_table("instrument_scores", scope={"run_id": run_id_of(STRATEGY)}),
            "walk_forward_results": wh.read_table("walk_forward_results"),
            "models": wh.read_table("models"),
            "engine_decisions": wh.read_table("engine_decisions", scope={"run_id": run_id_of(STRATEGY), "mode": "SHARED"}),
        }
    return out


def _stable(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    drop = {"created_at", "trained_at"}
    return {k: v.drop([c for c in v.columns if c in drop]) for k, v in frames.items()}


def _mats(result, key) -> list[dg.DagsterEvent]:
    return [m for m in result.get_asset_materialization_events() if m.asset_key == key]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_assessment_job_writes_signals_scores_models_with_passing_checks_and_a_rerun_trains_nothing(backend, market,
                                                                                                 tmp_path):
    # Arrange
    loc = _copy(market(backend), tmp_path)
    defs = build_defs(make_config_dir(tmp_path, n_instruments=40, engines=ENGINES), loc)
    sessions = [s.isoformat() for s in CALENDAR.sessions(RUN_START, RUN_END)]

    # Act
    with dg.instance_for_test() as instance:
        result = run_range(defs, RUN_START, RUN_END, instance, job_name="assessment")
        tables = _tables(loc)
        again = run_range(defs, SUB_START, SUB_END, instance, job_name="assessment")
        after = _tables(loc)

    # Assert: every asset materialised for every session, every check passed
    assert result.success
    for table in ASSESSMENT_TABLES:
        assert sorted(m.partition for m in _mats(result, assessment_key(STRATEGY, table))) == sessions
    checks = check_results(result)
    assert len(checks) == 4
    for (key, name), evaluation in checks.items():
        assert evaluation.passed, (key, name, evaluation.description)
    signals, scores = tables["signals"], tables["instrument_scores"]
    assert signals["session_date"].min() == RUN_START and signals["session_date"].max() == RUN_END
    assert signals.select(["instrument_id", "session_date"]).is_unique().all()
    assert scores.height > 0 and scores.height <= signals.height
    components = [json.loads(c) for c in signals["components_json"]]
    assert all({"ml", "rsi", "ema_cross", "macd", "ensemble", "probability", "filters", "tradable"} <= set(c)
               for c in components)
    assert any(c["ml"] is not None for c in components)  # a promoted model scored
    # models: registry rows with verified artefacts, and their folds
    models = tables["models"]
    assert models.height >= 2 and set(models["engine_name"]) == {"assessment"}
    for row in models.iter_rows(named=True):
        path = Path(row["artifact_uri"].removeprefix("file://"))
        assert path.is_file() and path.is_relative_to(Path(os.environ["PROMETHEUS_HOME"]).resolve() / "models")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["artifact_sha256"]
        assert row["training_cut"] > row["train_end"]  # every label ended before the cut
    folds = tables["walk_forward_results"]
    assert set(folds["run_id"]) == set(models["model_id"]) and folds.height == 3 * models.height
    decisions = tables["engine_decisions"]
    assert decisions["session_date"].to_list() == sorted(set(signals["session_date"].to_list()))
    assert (report_dir(STRATEGY) / "report.html").is_file()
    # the sub-range re-run reused every model and rewrote identical rows
    assert again.success
    models_mat = _mats(again, assessment_key(STRATEGY, "models"))[-1].materialization
    assert models_mat.metadata["models_trained"].value == 0
    assert models_mat.metadata["models_used"].value > 0
    for name, frame in _stable(tables).items():
        assert _stable(after)[name].sort(frame.columns[:4]).equals(frame.sort(frame.columns[:4])), name


def test_a_strategy_with_score_source_assessment_ranks_its_universe_by_the_assessment_scores(market, tmp_path):
    # Arrange: the default strategy reads the assessment's scores
    loc = _copy(market("duckdb"), tmp_path)
    config_dir = make_config_dir(tmp_path, n_instruments=40, engines=ENGINES)
    strategies = yaml.safe_load((config_dir / "strategies.yaml").read_text())
    strategies["strategies"][0]["baseline"]["score_source"] = "assessment"
    (config_dir / "strategies.yaml").write_text(yaml.safe_dump(strategies, sort_keys=False))
    defs = build_defs(config_dir, loc)
    start, end = date(2024, 2, 1), date(2024, 2, 29)

    # Act
    with dg.instance_for_test() as instance:
        assessed = run_range(defs, start, end, instance, job_name="assessment")
        backtest = run_range(defs, start, end, instance, job_name=f"backtest_{STRATEGY}")

    # Assert: the strategy's scores are the assessment's, for every instrument it scored
    assert assessed.success and backtest.success
    with open_warehouse(**loc) as wh:
        mine = wh.read_table("instrument_scores", start, end, {"strategy_id": STRATEGY})
    assessment = mine.filter(pl.col("run_id") == run_id_of(STRATEGY)).select("instrument_id", "session_date",
                                                                             pl.col("score").alias("assessed"))
    strategy = mine.filter(pl.col("run_id") != run_id_of(STRATEGY)).filter(pl.col("score").is_not_null())
    assert strategy.height > 0
    joined = strategy.join(assessment, on=["instrument_id", "session_date"], how="left")
    assert joined["assessed"].null_count() == 0
    assert (joined["score"] - joined["assessed"]).abs().max() < 1e-12
