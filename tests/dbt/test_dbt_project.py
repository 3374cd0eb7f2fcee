"""The dbt project parses, builds its staging layer on both backends, and its tests can fail.

dbt runs as the virtualenv's own executable, with the profiles that live in the project
(``--profiles-dir dbt_project``) and a target path under the test's tmp folder, so parallel
tests never share a manifest. DuckDB allows one writer process: every warehouse connection is
closed before dbt opens the file. The staging build runs once per backend (the module fixture
``staging``); the failing-test test then adds a bad bar to that warehouse and builds it again.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import polars as pl
import pytest
from sharing import backend_params, new_location

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.data.ingestion import EVENT_TABLES, ingest_events, ingest_prices
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse

if TYPE_CHECKING:
    from conftest import PgDatabases

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).parent / "dbt"
MARKET_ID = "US_EQ"
# Ten sessions that hold rows of every event table (news, filings, calls and a macro release).
FIRST_SESSION, LAST_SESSION = date(2015, 4, 27), date(2015, 5, 8)

# Staging view -> the warehouse table it renames and casts.
STAGING_VIEWS = {
    "stg_market__prices_daily": "historical.prices_daily",
    "stg_market__instruments": "runtime.instruments",
    "stg_market__issuers": "runtime.issuers",
    "stg_market__markets": "runtime.markets",
    "stg_text__news_articles": "historical.news_articles",
    "stg_text__news_links": "historical.news_links",
    "stg_text__filings": "historical.filings",
    "stg_text__earnings_calls": "historical.earnings_calls",
    "stg_text__macro_events": "historical.macro_events",
}
SOURCES = {
    "historical": {"prices_daily", "news_articles", "news_links", "filings", "earnings_calls", "macro_events"},
    "runtime": {"markets", "issuers", "instruments"},
}
CROSS_DB_MACROS = ("safe_ln", "safe_divide", "is_finite")
HIGH_AT_LEAST_LOW = "stg_market__prices_daily_high_at_least_low"
# cautious: only tests whose parents are all selected (the panels' relationship tests also
# point at staging views, but their own models are not built here)
BUILD = ("build", "--select", "staging", "tag:cross_db", "--indirect-selection", "cautious")


# ---------------------------------------------------------------- builders
@functools.cache
def _synthetic_frames() -> dict[str, pl.DataFrame]:
    """Reference rows and ten sessions of prices and events of a 20-instrument synthetic market."""
    calendar = TradingCalendar("XNYS")
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=20, market_id=MARKET_ID), calendar)
    sessions = calendar.sessions(FIRST_SESSION, LAST_SESSION)
    reference = market.reference()
    markets = pl.DataFrame(
        [{
            "market_id": MARKET_ID, "name": "US equities", "calendar_code": "XNYS",
            "timezone": "America/New_York", "currency": "USD", "asset_class": "EQUITY", "region": "US",
            "pre_open_minutes": 60, "post_close_minutes": 60, "is_primary": True,
        }],
        schema=get_table("markets").polars_schema,
    )
    frames = {
        "markets": markets,
        "issuers": reference.issuers,
        "instruments": reference.instruments,
        "prices_daily": ingest_prices(market, sessions).prices,
    }
    frames.update({table: ingest_events(market, table, sessions) for table in EVENT_TABLES})
    return frames


def _fill_warehouse(location: dict[str, str]) -> None:
    """Write the synthetic frames into a fresh warehouse, then close it (dbt opens DuckDB next)."""
    scope = {"market_id": MARKET_ID}
    with open_warehouse(**location) as wh:
        for table, frame in _synthetic_frames().items():
            if get_table(table).partition_column is None:
                wh.replace_table(table, frame, scope if get_table(table).scope_columns else None)
            else:
                wh.write_partition(table, frame, FIRST_SESSION, LAST_SESSION, scope)


def _target_env(backend: str, location: dict[str, str]) -> dict[str, str]:
    """The environment variables that point the project's profile at ``location``."""
    if backend == "duckdb":
        return {"PROMETHEUS_DBT_TARGET": "duckdb", "PROMETHEUS_DUCKDB_PATH": location["duckdb_path"]}
    url = urlsplit(location["postgres_url"])
    return {
        "PROMETHEUS_DBT_TARGET": "postgres",
        "PROMETHEUS_PG_HOST": url.hostname or "127.0.0.1",
        "PROMETHEUS_PG_PORT": str(url.port or 5432),
        "PROMETHEUS_PG_USER": url.username or "postgres",
        "PROMETHEUS_PG_PASSWORD": url.password or "",
        "PROMETHEUS_PG_DBNAME": url.path.lstrip("/"),
    }


def _dbt(args: tuple[str, ...], work: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the venv's dbt on the project with its own profiles and a target path under ``work``."""
    full_env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})}
    return subprocess.run(
        [
            str(DBT), *args,
            "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
        ],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300, check=False,
    )


def _results(work: Path) -> dict[str, dict[str, Any]]:
    """run_results.json of the last dbt command in ``work``, keyed by node name."""
    run = json.loads((work / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[2]: r for r in run["results"]}


def _count(wh: Warehouse, relation: str) -> int:
    return int(wh.query(f"select count(*) as n from {relation}")["n"][0])


def _views_in(wh: Warehouse, schema: str) -> set[str]:
    rows = wh.query(
        "select table_name from information_schema.tables "
        f"where table_schema = {wh.placeholder} and table_type = 'VIEW'",
        [schema],
    )
    return set(rows["table_name"].to_list())


@dataclass(frozen=True)
class StagingBuild:
    backend: str
    location: dict[str, str]
    work: Path  # dbt's target and logs: a later build here keeps the partial parse
    proc: subprocess.CompletedProcess[str]
    results: dict[str, dict[str, Any]]  # of this build (a later build overwrites the file)


@pytest.fixture(scope="module", params=backend_params("dbt_project"))
def staging(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            pg_databases: PgDatabases) -> StagingBuild:
    """The synthetic frames in a fresh warehouse of each backend and the staging layer built once."""
    backend, work = request.param, tmp_path_factory.mktemp("staging")
    location = new_location(backend, work, pg_databases)
    _fill_warehouse(location)
    proc = _dbt(BUILD, work, _target_env(backend, location))
    results = _results(work) if (work / "target" / "run_results.json").exists() else {}
    return StagingBuild(backend, location, work, proc, results)


# ---------------------------------------------------------------- tests
def test_parse_with_project_profiles_lists_staging_models_sources_and_macros(tmp_path: Path) -> None:
    # Act
    proc = _dbt(("parse",), tmp_path)

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert set(STAGING_VIEWS) <= set(models)
    for name in STAGING_VIEWS:
        assert models[name]["schema"] == "staging", f"{name} goes to {models[name]['schema']!r}"
        assert models[name]["config"]["materialized"] == "view"
        assert models[name]["description"].startswith("One row per"), f"{name} states no grain"
    sources = {(s["source_name"], s["name"]): s for s in manifest["sources"].values()}
    assert {(src, t) for src, tables in SOURCES.items() for t in tables} == set(sources)
    assert sources[("historical", "prices_daily")]["schema"] == "historical"
    assert sources[("historical", "prices_daily")]["loaded_at_field"] == "ingested_at"
    assert sources[("runtime", "instruments")]["schema"] == "runtime"
    macros = {m["name"] for m in manifest["macros"].values() if m["package_name"] == "prometheus"}
    for macro in CROSS_DB_MACROS:
        assert {macro, f"default__{macro}", f"duckdb__{macro}", f"postgres__{macro}"} <= macros
    assert {"test_unique_combination", "test_expression_is_true", "generate_schema_name"} <= macros
    tests = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    grain_tests = {
        n["attached_node"] for n in tests.values()
        if n.get("test_metadata", {}).get("name") == "unique_combination"
    }
    # every staging view and every panel states its grain with a unique_combination test
    with_grain = {f"model.prometheus.{name}" for name in models if not name.startswith("int_")}
    assert with_grain == grain_tests
    assert HIGH_AT_LEAST_LOW in tests


def test_build_staging_with_synthetic_warehouse_passes_and_mirrors_sources(staging: StagingBuild) -> None:
    # Arrange, Act: the fixture filled the warehouse and built its staging layer
    proc, warehouse_location = staging.proc, staging.location

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = staging.results
    not_passed = {name: r["status"] for name, r in results.items() if r["status"] not in ("pass", "success")}
    assert not not_passed, not_passed
    tests_run = [name for name, r in results.items() if r["unique_id"].startswith("test.")]
    assert len(tests_run) >= 40
    assert {f"assert_{macro}_matches_expected" for macro in CROSS_DB_MACROS} <= set(tests_run)
    with open_warehouse(**warehouse_location) as wh:
        assert set(STAGING_VIEWS) <= _views_in(wh, "staging")
        for view, table in STAGING_VIEWS.items():
            source_rows = _count(wh, table)
            assert source_rows > 0, f"fixture left {table} empty"
            assert _count(wh, f"staging.{view}") == source_rows, view
        columns = set(wh.query("select * from staging.stg_market__prices_daily limit 0").columns)
    assert {"volume_shares", "high", "low", "close"} <= columns
    assert "volume" not in columns


def test_build_staging_with_high_below_low_fails_that_test(staging: StagingBuild) -> None:
    # Arrange: the fixture's synthetic warehouse, and one bar whose high is below its low, on a
    # session after the others.
    with open_warehouse(**staging.location) as wh:
        p = wh.placeholder
        wh.execute(
            "insert into historical.prices_daily "
            "(instrument_id, session_date, market_id, open, high, low, close, volume, currency, source, ingested_at) "
            f"values ({p}, {p}, {p}, 10.0, 9.0, 11.0, 10.0, 100.0, 'USD', 'test', current_timestamp)",
            ["SYN0001", date(2015, 5, 11), MARKET_ID],
        )

    # Act
    proc = _dbt(BUILD, staging.work, _target_env(staging.backend, staging.location))

    # Assert
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = _results(staging.work)
    assert results[HIGH_AT_LEAST_LOW]["status"] == "fail"
    assert results[HIGH_AT_LEAST_LOW]["failures"] == 1
    others_failed = {name for name, r in results.items() if r["status"] not in ("pass", "success") and name != HIGH_AT_LEAST_LOW}
    assert not others_failed, others_failed
