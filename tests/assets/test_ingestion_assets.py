"""The ingestion assets and their checks, run through real Dagster on both warehouse backends."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import pytest
from providers import build_defs, check_results, make_config_dir, run_range, write_csv

from prometheus_assets.definitions import INGEST_JOB, build_definitions, open_defs_warehouse, sessions_partitions_def
from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.storage.factory import open_warehouse

JAN_START, JAN_END = date(2024, 1, 2), date(2024, 1, 12)  # 9 sessions
INGESTION_TABLES = ("prices_daily", "news_articles", "news_links", "filings", "earnings_calls", "macro_events")


def _counts(location: dict[str, str], start: date | None = None, end: date | None = None) -> dict[str, int]:
    with open_warehouse(**location) as wh:
        counts = {t: wh.row_count(t, start, end) for t in INGESTION_TABLES}
        counts["instruments"] = wh.row_count("instruments")
        return counts


# ------------------------------------------------------------------ definitions and partitions
def test_load_definitions_with_repository_configs_succeeds():
    # Arrange / Act
    from prometheus_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    # the asset graph is acyclic (a backfill orders its assets by it; validate_loadable does not check)
    assert len(graph.toposorted_asset_keys) == len(graph.get_all_asset_keys())

    # Assert
    for table in INGESTION_TABLES:
        assert f"historical/{table}" in keys
    for table in ("markets", "issuers", "instruments", "strategies", "portfolios"):
        assert f"runtime/{table}" in keys
    assert defs.resolve_job_def(INGEST_JOB).partitions_def is not None
    check_keys = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert ("historical/prices_daily", "ohlc_consistency") in check_keys
    assert ("historical/prices_daily", "freshness") in check_keys


def test_partition_keys_with_xnys_primary_market_equal_calendar_sessions():
    # Arrange
    config = load_config()
    partitions = sessions_partitions_def(config)
    calendar = TradingCalendar("XNYS")

    # Act
    keys = partitions.get_partition_keys()

    # Assert: from the configured start to the current session, exactly the calendar's sessions
    first, last = date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])
    assert [date.fromisoformat(k) for k in keys] == calendar.sessions(first, last)
    assert first == date(2015, 1, 2)
    assert sum(k.startswith("2024-") for k in keys) == 252
    assert "2024-07-04" not in keys and "2024-01-06" not in keys


@pytest.mark.parametrize("year", [2015, 2016, 2018, 2020, 2022, 2023, 2025])
def test_partition_keys_with_each_year_match_sessions_of_that_year(year: int):
    partitions = sessions_partitions_def(load_config())
    calendar = TradingCalendar("XNYS")
    keys = [k for k in partitions.get_partition_keys() if k.startswith(f"{year}-")]
    assert keys == [d.isoformat() for d in calendar.sessions(date(year, 1, 1), date(year, 12, 31))]


# ------------------------------------------------------------------ materialisation on both backends
def test_ingest_job_with_session_range_writes_every_table_in_one_run(tmp_path, warehouse_location):
    # Arrange
    defs = build_defs(make_config_dir(tmp_path), warehouse_location)

    # Act
    result = run_range(defs, JAN_START, JAN_END)

    # Assert
    assert result.success
    counts = _counts(warehouse_location)
    reference = defs.resources["platform"].market_data().reference().instruments
    assert counts["instruments"] == reference.height >= 12  # 12 slots, and the companies that replace delisted ones
    assert counts["prices_daily"] == _listed_cells(defs, JAN_START, JAN_END)
    assert counts["news_articles"] > 0 and counts["news_links"] >= counts["news_articles"]
    checks = check_results(result)
    errors = [k for k, e in checks.items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert errors == []
    assert checks[("historical/prices_daily", "ohlc_consistency")].passed
    assert checks[("historical/prices_daily", "sessions")].passed
    # one run, every ingestion asset materialised for all 9 sessions
    mats = result.get_asset_materialization_events()
    prices = {m.partition for m in mats if m.asset_key == dg.AssetKey(["historical", "prices_daily"])}
    assert len(prices) == 9


def _listed_cells(defs: dg.Definitions, start: date, end: date) -> int:
    """(instrument, session) cells inside each instrument's listing .. delisting span."""
    platform = defs.resources["platform"]
    ref = platform.market_data().reference().instruments
    sessions = platform.calendar().sessions(start, end)
    spans = list(zip(ref["listing_date"].to_list(), ref["delisting_date"].to_list(), strict=True))
    return sum(1 for d in sessions for lst, dl in spans if (lst is None or lst <= d) and (dl is None or d <= dl))


def test_rematerialise_with_same_range_replaces_rows_exactly(tmp_path, warehouse_location):
    # Arrange
    defs = build_defs(make_config_dir(tmp_path), warehouse_location)
    assert run_range(defs, JAN_START, JAN_END).success
    first = _counts(warehouse_location)
    with open_warehouse(**warehouse_location) as wh:
        before = wh.read_table("prices_daily").drop("ingested_at")

    # Act: the same range twice more, and an overlapping sub-range
    assert run_range(defs, JAN_START, JAN_END).success
    assert run_range(defs, date(2024, 1, 5), date(2024, 1, 9)).success

    # Assert: no duplicates, no gaps, identical values
    assert _counts(warehouse_location) == first
    with open_warehouse(**warehouse_location) as wh:
        after = wh.read_table("prices_daily").drop("ingested_at")
    assert after.equals(before)


def test_ingest_with_disjoint_ranges_keeps_earlier_sessions(tmp_path, warehouse_location):
    defs = build_defs(make_config_dir(tmp_path), warehouse_location)
    assert run_range(defs, date(2024, 1, 2), date(2024, 1, 5)).success
    early = _counts(warehouse_location, date(2024, 1, 2), date(2024, 1, 5))["prices_daily"]
    assert run_range(defs, date(2024, 1, 8), date(2024, 1, 12)).success
    assert _counts(warehouse_location, date(2024, 1, 2), date(2024, 1, 5))["prices_daily"] == early
    assert _counts(warehouse_location, date(2024, 1, 8), date(2024, 1, 12))["prices_daily"] > 0


# ------------------------------------------------------------------ bad files: quarantine, never silently dropped
def _bad_file_config(tmp_path):
    rows = []
    for d in ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"):
        rows += [f"{d},AAA,10,11,9.5,10.5,1000", f"{d},BBB,20,21,19,20.5,2000"]
    rows += [
        "2024-01-03,CCC,5,6,4,-5.5,100",    # line 12: non-positive close
        "2024-01-04,CCC,5,4,6,5,100",       # line 13: high < low
        "2024-01-06,AAA,10,11,9,10,100",    # line 14: a Saturday
        "2024-01-02,AAA,10,11,9.5,10.5,7",  # line 15: duplicate key (with line 2)
        "not-a-date,BBB,1,1,1,1,1",         # line 16: unparseable date
    ]
    path = write_csv(tmp_path / "imports" / "prices.csv", rows)
    return make_config_dir(tmp_path, data_source={"kind": "file", "paths": [str(path)]}), path


def test_ingest_with_bad_file_quarantines_bad_rows_and_loads_the_rest(tmp_path, warehouse_location):
    # Arrange
    config_dir, path = _bad_file_config(tmp_path)
    defs = build_defs(config_dir, warehouse_location)

    # Act
    result = run_range(defs, date(2024, 1, 2), date(2024, 1, 8))

    # Assert: valid rows loaded, every bad line kept with its file, line and reason
    assert result.success
    with open_warehouse(**warehouse_location) as wh:
        prices = wh.read_table("prices_daily")
        quarantine = wh.read_table("quarantine_rows")
    assert prices.height == 9  # 10 good rows minus AAA 2024-01-02, whose key is duplicated
    assert set(quarantine["source_file"]) == {str(path)}
    by_line = quarantine.group_by("line_number").agg(pl.col("reason")).sort("line_number")
    lines = dict(zip(by_line["line_number"].to_list(), by_line["reason"].to_list()))
    assert set(lines) == {2, 12, 13, 14, 15, 16}
    assert any("duplicate" in r for r in lines[2]) and any("duplicate" in r for r in lines[15])
    assert any("close" in r for r in lines[12])
    assert any("high < low" in r for r in lines[13])
    assert any("session" in r for r in lines[14])
    assert any("date" in r for r in lines[16])
    # reported in the materialisation's metadata and on the checks dashboard (WARN, not blocking)
    mat = next(m for m in result.get_asset_materialization_events()
               if m.asset_key == dg.AssetKey(["historical", "prices_daily"]))
    assert mat.materialization.metadata["rows_quarantined"].value == quarantine.height
    check = check_results(result)[("historical/prices_daily_quarantine", "no_rejected_rows")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def test_reingest_with_bad_file_does_not_duplicate_quarantine_rows(tmp_path, warehouse_location):
    config_dir, _ = _bad_file_config(tmp_path)
    defs = build_defs(config_dir, warehouse_location)
    assert run_range(defs, date(2024, 1, 2), date(2024, 1, 8)).success
    with open_warehouse(**warehouse_location) as wh:
        first = wh.row_count("quarantine_rows")
    assert first >= 6  # one row per (line, reason): six bad lines, some with several reasons
    assert run_range(defs, date(2024, 1, 2), date(2024, 1, 8)).success
    with open_warehouse(**warehouse_location) as wh:
        assert wh.row_count("quarantine_rows") == first


# ------------------------------------------------------------------ blocking: ERROR blocks downstream, WARN does not
def _downstream(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(key=["test", "consumer"], deps=[dg.AssetKey(["historical", "prices_daily"])],
              partitions_def=partitions_def, backfill_policy=dg.BackfillPolicy.single_run(), group_name="ingestion")
    def consumer() -> None:
        """A downstream consumer of prices_daily."""

    return consumer


def _file_defs(tmp_path, warehouse_location, rows):
    path = write_csv(tmp_path / "imports" / "p.csv", rows)
    config_dir = make_config_dir(tmp_path, data_source={"kind": "file", "paths": [str(path)]})
    partitions = sessions_partitions_def(load_config(config_dir))
    return build_defs(config_dir, warehouse_location, extra_assets=[_downstream(partitions)])


def _messages(error) -> str:
    """The messages of an error and of its causes."""
    out = []
    while error is not None:
        out.append(error.message)
        error = error.cause
    return " ".join(out)


def test_downstream_with_missing_session_in_source_is_blocked(tmp_path, warehouse_location):
    # Arrange: the file has no rows at all for 2024-01-04, a session
    rows = [f"{d},AAA,10,11,9,10,100" for d in ("2024-01-02", "2024-01-03", "2024-01-05")]
    defs = _file_defs(tmp_path, warehouse_location, rows)

    # Act
    result = run_range(defs, date(2024, 1, 2), date(2024, 1, 5))

    # Assert: the ERROR rule ran on the frame before the write (validate before replacing):
    # prices_daily was not written, and the downstream asset did not run
    errors = " ".join(_messages(e.step_failure_data.error) for e in result.get_step_failure_events())
    assert "rule 'sessions' failed" in errors and "2024-01-04" in errors
    materialised = {m.asset_key for m in result.get_asset_materialization_events()}
    assert dg.AssetKey(["test", "consumer"]) not in materialised
    assert dg.AssetKey(["historical", "prices_daily"]) not in materialised
    with open_warehouse(**warehouse_location) as wh:
        assert wh.row_count("prices_daily") == 0


def test_downstream_with_only_warn_failures_still_runs(tmp_path, warehouse_location):
    # Arrange: every session has rows, but BBB misses one session (an instrument gap: WARN)
    rows = [f"{d},AAA,10,11,9,10,100" for d in ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")]
    rows += [f"{d},BBB,10,11,9,10,100" for d in ("2024-01-02", "2024-01-03", "2024-01-05")]
    defs = _file_defs(tmp_path, warehouse_location, rows)

    # Act
    result = run_range(defs, date(2024, 1, 2), date(2024, 1, 5))

    # Assert
    check = check_results(result)[("historical/prices_daily", "sessions")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["missing_cells"].value == 1
    assert result.success
    materialised = {m.asset_key for m in result.get_asset_materialization_events()}
    assert dg.AssetKey(["test", "consumer"]) in materialised


def test_freshness_with_old_range_warns_without_blocking(tmp_path, warehouse_location):
    defs = build_defs(make_config_dir(tmp_path), warehouse_location)
    result = run_range(defs, JAN_START, JAN_END)
    check = check_results(result)[("historical/prices_daily", "freshness")]
    assert result.success
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["latest_session"].value == "2024-01-12"


def test_build_definitions_with_postgres_url_env_selects_postgres(monkeypatch, pg_url):
    monkeypatch.setenv("PROMETHEUS_WAREHOUSE_URL", pg_url)
    defs = build_definitions()
    assert defs.resources["warehouse"].backend == "postgres"
    with open_defs_warehouse(defs) as wh:
        assert wh.dialect == "postgres"
        assert wh.location == pg_url
