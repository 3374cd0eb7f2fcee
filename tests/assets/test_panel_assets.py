"""The dbt panels as Dagster assets: one partitioned run builds them for its range, dbt tests
are asset checks, and a failing error-severity test blocks what is downstream of it. The text
staging views are not part of the panel runs: they are unpartitioned assets of their own, which
the main job builds once per run.

The main job runs once per backend (the module fixture ``main_run``); the blocking test then
corrupts one bar of that warehouse and runs the panels job over the same range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg
import pytest
from providers import build_defs, check_results, make_config_dir, run_range
from sharing import backend_params, new_location

from prometheus_assets.assets.panels import build_text_staging_assets
from prometheus_assets.constants import TEXT_STAGING
from prometheus_assets.definitions import MAIN_JOB, PANELS_JOB
from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.storage.dbt import panel_build_args
from prometheus_lib.storage.factory import open_warehouse

if TYPE_CHECKING:
    from conftest import PgDatabases

START, END = date(2024, 1, 2), date(2024, 2, 29)
PANEL_KEYS = [dg.AssetKey(["historical", t]) for t in
              ("returns_daily", "volatility_daily", "factors_daily", "instrument_factors_daily", "correlation_panels")]


@dataclass(frozen=True)
class MainRun:
    location: dict[str, str]
    defs: dg.Definitions
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module", params=backend_params("panel_assets"))
def main_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             pg_databases: PgDatabases) -> MainRun:
    """The main job over START..END, as one run, on a fresh warehouse of each backend."""
    folder = tmp_path_factory.mktemp("panel_assets")
    location = new_location(request.param, folder, pg_databases)
    defs = build_defs(make_config_dir(folder), location)
    return MainRun(location, defs, run_range(defs, START, END, job_name=MAIN_JOB))


def test_main_job_with_range_builds_panels_for_every_session(main_run: MainRun):
    # Arrange, Act: the fixture's main job over the range
    result, warehouse_location = main_run.result, main_run.location

    # Assert
    assert result.success
    mats = result.get_asset_materialization_events()
    materialised = {m.asset_key for m in mats}
    for key in PANEL_KEYS:
        assert key in materialised, key
    sessions = {m.partition for m in mats if m.asset_key == dg.AssetKey(["historical", "returns_daily"])}
    assert len(sessions) == len(TradingCalendar("XNYS").sessions(START, END))  # every session of the range
    with open_warehouse(**warehouse_location) as wh:
        assert wh.row_count("returns_daily") == wh.row_count("prices_daily")
    checks = check_results(result)
    dbt_checks = {k: e for k, e in checks.items() if k[0] == "historical/returns_daily"}
    assert dbt_checks and all(e.passed for e in dbt_checks.values())
    assert any(name.startswith("unique_combination") for _, name in dbt_checks)


def test_panels_job_again_in_same_process_builds_on_the_parsed_project(main_run: MainRun):
    # Arrange: the fixture's main job parsed the project for this warehouse in this process
    instance = dg.DagsterInstance.ephemeral()
    start = date(2024, 2, 26)

    # Act: the last sessions again, as the daily schedule would
    result = run_range(main_run.defs, start, END, instance=instance, job_name=PANELS_JOB)

    # Assert: dbt ran in this process on the manifest already in memory, every panel and
    # every session of the range was materialised and the dbt checks passed
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("in this process" in m and "manifest in memory" in m for m in messages), messages
    # with the selection the benchmark times (prometheus_lib.storage.dbt.panel_build_args)
    assert any(f"dbt {' '.join(panel_build_args())} in this process" in m for m in messages), messages
    mats = result.get_asset_materialization_events()
    for key in PANEL_KEYS:
        partitions = {m.partition for m in mats if m.asset_key == key}
        assert len(partitions) == len(TradingCalendar("XNYS").sessions(start, END)), key
    checks = check_results(result)
    assert checks and all(e.passed for e in checks.values())
    # the panel run leaves the text staging views alone (no materialization, no check)
    assert not [m for m in mats if m.asset_key.path[-1].startswith("stg_text__")]
    assert not [k for k in checks if "stg_text__" in k[0]]


def test_panels_job_with_one_panel_selected_builds_it_without_unit_tests(main_run: MainRun):
    # Arrange: the fixture's main job built every panel and staging view
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey(["historical", "returns_daily"])
    job = main_run.defs.resolve_job_def(PANELS_JOB)

    # Act: a subset run (dagster-dbt selects the model by name) of the last session
    result = job.execute_in_process(instance=instance, partition_key=END.isoformat(), asset_selection=[key],
                                    raise_on_error=False)

    # Assert: only that panel, its checks passed, and the asset's exclusions still applied
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} == {key}
    checks = check_results(result)
    assert checks and all(e.passed for e in checks.values())
    assert {k[0] for k in checks} == {"historical/returns_daily"}
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"--exclude {panel_build_args()[-1]} in this process" in m for m in messages), messages


def test_panels_job_with_failing_dbt_test_blocks_downstream_panels(main_run: MainRun):
    # Arrange: ingested cleanly (the fixture's main job), then a bar with high < low reaches the
    # table behind the checks' back
    defs, warehouse_location = main_run.defs, main_run.location
    assert main_run.result.success
    with open_warehouse(**warehouse_location) as wh:
        wh.execute("UPDATE historical.prices_daily SET high = low * 0.5 "
                   f"WHERE session_date = {wh.placeholder} AND instrument_id = {wh.placeholder}",
                   [date(2024, 2, 1), "SYN0001"])

    # Act
    result = run_range(defs, START, END, job_name=PANELS_JOB)

    # Assert: the staging test fails with ERROR severity and the panels were not rebuilt
    checks = check_results(result)
    failed = [(k, e) for k, e in checks.items() if not e.passed]
    assert any("high_at_least_low" in k[1] for k, _ in failed), failed
    assert all(e.severity == dg.AssetCheckSeverity.ERROR for _, e in failed)
    materialised = {m.asset_key for m in result.get_asset_materialization_events()}
    for key in PANEL_KEYS:
        assert key not in materialised, key


def test_text_staging_assets_are_built_once_by_the_main_job_and_on_their_own(main_run: MainRun):
    # Arrange: the fixture's main job ingested the text tables over a session range
    defs = main_run.defs
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.get_all_asset_keys() if k.path[-1].startswith("stg_text__")}
    assert len(keys) == 5
    assert {graph.get(k).group_name for k in keys} == {TEXT_STAGING}
    assert all(graph.get(k).partitions_def is None for k in keys)

    # Assert: the main run built each view once (unpartitioned) and its tests passed
    in_main = [m.asset_key for m in main_run.result.get_asset_materialization_events() if m.asset_key in keys]
    assert sorted(in_main) == sorted(keys)
    names = {k.to_user_string() for k in keys}
    main_checks = {k: e for k, e in check_results(main_run.result).items() if k[0] in names}
    assert main_checks and all(e.passed for e in main_checks.values())

    # Act: they also materialise on their own
    result = dg.materialize([build_text_staging_assets()], resources=defs.resources, raise_on_error=False)

    # Assert
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} == keys
    checks = check_results(result)
    assert checks and all(e.passed for e in checks.values())
