"""Several markets in one code location: each market with data has its own session partitions
(its exchange's calendar), its own reference, ingestion and panel assets and checks, and its own
jobs; a run of one market writes that market's rows only. Also the corporate_actions asset, its
checks, and the synthetic ground truth written beside the prices."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from providers import build_defs, check_results, make_config_dir, run_range, write_csv

from prometheus_assets.assets.ingestion import truth_root
from prometheus_assets.checks import corporate_action_rule, known_instruments
from prometheus_assets.definitions import build_definitions, market_job_name, sessions_partitions_def
from prometheus_assets.markets import MarketScope, data_markets, select_markets
from prometheus_assets.resources import PlatformResource
from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.data.providers import provider_schema
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.factory import open_warehouse

MARKETS = ("US_EQ", "EU_EQ", "JP_EQ")
# Tables a market's main job writes, each scoped by market_id.
MARKET_TABLES = ("prices_daily", "quarantine_rows", "news_articles", "news_links", "filings", "earnings_calls",
                 "macro_events", "corporate_actions", "issuers", "instruments", "returns_daily", "volatility_daily",
                 "factors_daily", "instrument_factors_daily", "correlation_panels")


def _config_dir(tmp_path: Path, us_source: dict | None = None, eu_instruments: int = 8) -> Path:
    """The repository's configs with a small US market (or another US data source) and a small EU market."""
    folder = make_config_dir(tmp_path, data_source=us_source)
    path = folder / "markets.yaml"
    markets = yaml.safe_load(path.read_text())
    for m in markets["markets"]:
        if m["market_id"] in ("EU_EQ", "JP_EQ"):
            m["data_source"]["synthetic"]["n_instruments"] = eu_instruments
    path.write_text(yaml.safe_dump(markets, sort_keys=False))
    return folder


# ------------------------------------------------------------------ definitions: per-market partitions, keys, jobs
@pytest.fixture(scope="module")
def repo_defs() -> dg.Definitions:
    from prometheus_assets.definitions import defs

    return defs


def test_markets_with_repository_configs_are_those_with_a_data_source():
    config = load_config()
    assert [m.market_id for m in data_markets(config)] == list(MARKETS)  # US_FUT and FX_GLOB have no data
    eu, jp = config.market("EU_EQ").data_source.synthetic, config.market("JP_EQ").data_source.synthetic
    us = config.market("US_EQ").data_source.synthetic
    assert (eu.calendar_code, eu.currency, eu.region) == ("XETR", "EUR", "EU")
    assert (jp.calendar_code, jp.currency, jp.region) == ("XTKS", "JPY", "JP")
    assert us.world_seed == eu.world_seed == jp.world_seed  # one world: the regions are linked
    assert len({us.seed, eu.seed, jp.seed}) == 3
    assert us.n_instruments == 100


def test_select_markets_with_unknown_market_names_the_culprit():
    with pytest.raises(ValueError, match=r"US_FUT.*|.*'US_FUT'"):
        select_markets(load_config(), ["EU_EQ", "US_FUT"])
    assert [m.market_id for m in select_markets(load_config(), ["JP_EQ", "US_EQ"])] == ["US_EQ", "JP_EQ"]


@pytest.mark.parametrize(
    ("market_id", "calendar", "holiday"),
    [
        ("EU_EQ", "XETR", date(2024, 5, 1)),    # Labour Day: Xetra closed, NYSE open
        ("JP_EQ", "XTKS", date(2024, 5, 3)),    # Constitution Memorial Day: Tokyo closed, NYSE and Xetra open
        ("US_EQ", "XNYS", date(2024, 7, 4)),    # Independence Day: NYSE closed, Xetra and Tokyo open
    ],
)
def test_partitions_with_each_market_are_its_exchange_sessions(repo_defs, market_id, calendar, holiday):
    # Arrange
    config = load_config()
    market = MarketScope.of(config, market_id)
    others = [m for m in MARKETS if m != market_id]

    # Act: the partitions of the market's main job and of its prices asset
    keys = repo_defs.resolve_job_def(market_job_name(config, "main", market_id)).partitions_def.get_partition_keys()
    asset_keys = repo_defs.resolve_asset_graph().get(market.key("historical", "prices_daily")).partitions_def.get_partition_keys()

    # Assert: exactly the exchange's sessions of 2024; the holiday is no key of this market, but is one of the others'
    assert asset_keys == keys
    sessions_2024 = [k for k in keys if k.startswith("2024-")]
    assert sessions_2024 == [d.isoformat() for d in TradingCalendar(calendar).sessions(date(2024, 1, 1), date(2024, 12, 31))]
    assert holiday.isoformat() not in keys
    for other in others:
        assert holiday.isoformat() in sessions_partitions_def(config, other).get_partition_keys()


def test_definitions_with_three_markets_keep_keys_groups_and_jobs_apart(repo_defs):
    # Arrange
    graph = repo_defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}

    # Assert: the graph is acyclic and complete (a backfill orders its assets by it)
    assert len(graph.toposorted_asset_keys) == len(graph.get_all_asset_keys())
    # the primary market keeps its keys; the others live under their market id
    tables = ("prices_daily", "corporate_actions", "news_articles", "returns_daily", "factors_daily", "correlation_panels")
    for table in tables:
        assert f"historical/{table}" in keys
        assert f"EU_EQ/historical/{table}" in keys and f"JP_EQ/historical/{table}" in keys
    for market_id in ("EU_EQ", "JP_EQ"):
        assert f"{market_id}/runtime/instruments" in keys and f"{market_id}/intermediate/int_sessions" in keys
        assert graph.get(dg.AssetKey([market_id, "historical", "prices_daily"])).group_name == f"ingestion_{market_id.lower()}"
        assert graph.get(dg.AssetKey([market_id, "historical", "returns_daily"])).group_name == f"panels_{market_id.lower()}"
    assert not any(k.startswith(("US_FUT/", "FX_GLOB/")) for k in keys)
    # the config tables are shared, once: every market's panels read the same runtime/markets
    assert "runtime/markets" in keys and "EU_EQ/runtime/markets" not in keys
    eu_panels = graph.get(dg.AssetKey(["EU_EQ", "staging", "stg_market__markets"]))
    assert dg.AssetKey(["runtime", "markets"]) in eu_panels.parent_keys
    eu_prices_view = graph.get(dg.AssetKey(["EU_EQ", "staging", "stg_market__prices_daily"]))
    assert eu_prices_view.parent_keys == {dg.AssetKey(["EU_EQ", "historical", "prices_daily"])}
    # one ingest/panels/main job per market, each over that market's partitions
    jobs = {j.name for j in repo_defs.resolve_all_job_defs()}
    for base in ("ingest", "panels", "main"):
        assert {base, f"{base}_EU_EQ", f"{base}_JP_EQ"} <= jobs
    assert "backtest_US_CORE_LONG_EQ" in jobs
    eu_main = repo_defs.resolve_job_def("main_EU_EQ")
    selected = {k.to_user_string() for k in eu_main.asset_layer.selected_asset_keys}
    assert "EU_EQ/historical/corporate_actions" in selected and "EU_EQ/historical/returns_daily" in selected
    assert "runtime/markets" in selected
    assert not [k for k in selected if k.startswith(("historical/", "JP_EQ/", "staging/", "intermediate/"))]
    # checks per market, on that market's keys
    check_keys = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for prefix in ("", "EU_EQ/", "JP_EQ/"):
        assert (f"{prefix}historical/prices_daily", "ohlc_consistency") in check_keys
        for name in ("unique_key", "split_ratio_positive", "amount_non_negative", "instrument_known", "sessions", "schema"):
            assert (f"{prefix}historical/corporate_actions", name) in check_keys


def test_panel_assets_of_two_markets_select_the_same_models_for_their_own_market(repo_defs):
    # Arrange
    graph = repo_defs.resolve_asset_graph()
    us = graph.get(dg.AssetKey(["historical", "returns_daily"])).assets_def
    eu = graph.get(dg.AssetKey(["EU_EQ", "historical", "returns_daily"])).assets_def

    # Assert: two dbt ops, the same dbt selection, disjoint keys and checks
    assert us.op.name == "dbt_panels" and eu.op.name == "eu_eq__dbt_panels"
    assert us.op.tags["dagster_dbt/select"] == eu.op.tags["dagster_dbt/select"]
    assert us.op.tags["dagster_dbt/exclude"] == eu.op.tags["dagster_dbt/exclude"]
    assert len(us.keys) == len(eu.keys) and not us.keys & eu.keys
    assert {k.path[0] for k in eu.keys} == {"EU_EQ"}
    assert len(us.check_keys) == len(eu.check_keys) and not us.check_keys & eu.check_keys


# ------------------------------------------------------------------ one market's run writes its rows only
def _market_rows(location: dict[str, str]) -> dict[str, pl.DataFrame]:
    with open_warehouse(**location) as wh:
        return {t: wh.read_table(t).sort(list(get_table(t).primary_key)) for t in MARKET_TABLES}


def test_eu_main_job_with_one_session_writes_eu_rows_and_leaves_us_rows_untouched(tmp_path, warehouse_location):
    # Arrange: US_EQ ingested and its panels built from a file (tickers AAA, BBB) over four sessions
    days = ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")
    rows = [f"{d},{t},{10 + i},{11 + i},{9 + i},{10.5 + i},{1000 * (i + 1)}" for i, d in enumerate(days) for t in ("AAA", "BBB")]
    path = write_csv(tmp_path / "imports" / "prices.csv", rows)
    defs = build_defs(_config_dir(tmp_path, us_source={"kind": "file", "paths": [str(path)]}), warehouse_location)
    assert run_range(defs, date(2024, 1, 2), date(2024, 1, 5), job_name="main").success
    before = _market_rows(warehouse_location)
    assert before["returns_daily"].height == 8 and set(before["returns_daily"]["market_id"]) == {"US_EQ"}
    session = date(2024, 1, 3)

    # Act: EU_EQ's main job (reference, ingestion, checks, panels) over one XETR session
    result = run_range(defs, session, session, job_name="main_EU_EQ")

    # Assert: the run succeeded with every check passing but freshness, on EU keys only
    assert result.success
    checks = check_results(result)
    assert checks and all(k[0].startswith("EU_EQ/") for k in checks)
    assert [k for k, e in checks.items() if not e.passed and k[1] != "freshness"] == []
    mats = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert {"EU_EQ/historical/prices_daily", "EU_EQ/historical/corporate_actions", "EU_EQ/historical/returns_daily",
            "EU_EQ/historical/factors_daily", "EU_EQ/runtime/instruments"} <= mats
    assert not [k for k in mats if k.startswith(("historical/", "staging/", "JP_EQ/"))]
    # every row the run added is an EU_EQ row of that session; every US_EQ row is exactly as it was
    after = _market_rows(warehouse_location)
    for table in MARKET_TABLES:
        us_after = after[table].filter(pl.col("market_id") == "US_EQ")
        assert us_after.equals(before[table]), table
        added = after[table].filter(pl.col("market_id") != "US_EQ")
        assert set(added["market_id"]) <= {"EU_EQ"}, table
        if "session_date" in added.columns and table != "quarantine_rows":
            assert set(added["session_date"]) <= {session}, table
    # (no factors_daily row yet: a factor sorts on the previous session's characteristics)
    for table in ("prices_daily", "instruments", "returns_daily", "volatility_daily", "instrument_factors_daily"):
        assert after[table].filter(pl.col("market_id") == "EU_EQ").height > 0, table
    assert after["prices_daily"].filter(pl.col("market_id") == "EU_EQ")["currency"].unique().to_list() == ["EUR"]


def test_eu_ingest_job_with_jp_only_holiday_runs_on_xetr_sessions(tmp_path):
    # Arrange: 2024-05-03 is a Xetra session and a Tokyo holiday
    location = {"backend": "duckdb", "duckdb_path": str(tmp_path / "warehouse.duckdb")}
    defs = build_defs(_config_dir(tmp_path, eu_instruments=4), location)
    day = date(2024, 5, 3)
    assert day.isoformat() not in defs.resolve_job_def("ingest_JP_EQ").partitions_def.get_partition_keys()

    # Act
    result = run_range(defs, day, day, job_name="ingest_EU_EQ")

    # Assert
    assert result.success
    with open_warehouse(**location) as wh:
        prices = wh.read_table("prices_daily")
    assert set(prices["market_id"]) == {"EU_EQ"} and set(prices["session_date"]) == {day}


# ------------------------------------------------------------------ corporate actions and the synthetic truth
def _actions(rows: list[tuple]) -> pl.DataFrame:
    cols = ("action_id", "instrument_id", "session_date", "market_id", "action_type", "ratio", "amount", "currency", "source")
    return pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows], schema=provider_schema("corporate_actions"))


GOOD_ACTIONS = [
    ("CA-1", "SYN0001", date(2024, 1, 3), "US_EQ", "SPLIT", 2.0, None, None, "test"),
    ("CA-2", "SYN0002", date(2024, 1, 4), "US_EQ", "DIVIDEND", None, 0.25, "USD", "test"),
    ("CA-3", "SYN0003", date(2024, 1, 4), "US_EQ", "DELISTING", None, 0.0, "USD", "test"),
]


class _WithActions:
    """A market's real provider plus the two optional methods of a synthetic world: corporate actions and truth."""

    def __init__(self, inner, actions: pl.DataFrame):
        self._inner, self._actions = inner, actions

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def corporate_actions(self, sessions):
        return self._actions.filter(pl.col("session_date").is_in(list(sessions)))

    def record_truth(self, sessions, root: Path) -> list[Path]:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "regimes.parquet"
        pl.DataFrame({"session_date": list(sessions), "regime": ["calm"] * len(sessions)}).write_parquet(path)
        return [path]


class PlantedActionsPlatform(PlatformResource):
    """The platform resource, its US_EQ provider given planted corporate actions (JSON rows)."""

    actions_json: str = "[]"

    def market_data(self, market_id: str | None = None):
        inner = super().market_data(market_id)
        rows = [(*r[:2], date.fromisoformat(r[2]), *r[3:]) for r in json.loads(self.actions_json)]
        return _WithActions(inner, _actions(rows)) if (market_id or self.config.primary_market) == "US_EQ" else inner


def _planted_defs(config_dir: Path, location: dict[str, str], rows: list[tuple]) -> dg.Definitions:
    defs = build_defs(config_dir, location)
    platform = PlantedActionsPlatform(config_dir=str(config_dir), actions_json=json.dumps(rows, default=str))
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          resources={**defs.resources, "platform": platform}, executor=defs.executor)


def test_corporate_actions_with_provider_support_are_written_checked_and_truth_recorded(tmp_path, warehouse_location):
    # Arrange
    defs = _planted_defs(make_config_dir(tmp_path), warehouse_location, GOOD_ACTIONS)

    # Act
    result = run_range(defs, date(2024, 1, 2), date(2024, 1, 5))

    # Assert: the actions are in the catalogue table, scoped to the market, and every check passed
    assert result.success
    with open_warehouse(**warehouse_location) as wh:
        stored = wh.read_table("corporate_actions").sort("action_id")
    assert stored["action_id"].to_list() == ["CA-1", "CA-2", "CA-3"]
    assert set(stored["market_id"]) == {"US_EQ"} and stored["ingested_at"].null_count() == 0
    checks = {k[1]: e for k, e in check_results(result).items() if k[0] == "historical/corporate_actions"}
    assert set(checks) == {"schema", "unique_key", "sessions", "split_ratio_positive", "amount_non_negative",
                           "action_type_known", "instrument_known"}
    assert all(e.passed for e in checks.values()), {k: e.description for k, e in checks.items()}
    # the synthetic truth of the same sessions, under $PROMETHEUS_HOME/synthetic_truth/US_EQ, named in the metadata
    mat = next(m for m in result.get_asset_materialization_events()
               if m.asset_key == dg.AssetKey(["historical", "prices_daily"]))
    files = mat.materialization.metadata["truth_files"].value
    assert files == [str(truth_root("US_EQ") / "regimes.parquet")]
    assert truth_root("US_EQ").parent.name == "synthetic_truth"
    assert pl.read_parquet(files[0]).height == 4


@pytest.mark.parametrize(
    ("defect", "check"),
    [
        (("CA-9", "SYN0004", date(2024, 1, 5), "US_EQ", "SPLIT", -2.0, None, None, "test"), "split_ratio_positive"),
        (("CA-9", "SYN0004", date(2024, 1, 5), "US_EQ", "SPLIT", None, None, None, "test"), "split_ratio_positive"),
        (("CA-9", "SYN0004", date(2024, 1, 5), "US_EQ", "DIVIDEND", None, -0.1, "USD", "test"), "amount_non_negative"),
        (("CA-9", "NOT_LISTED", date(2024, 1, 5), "US_EQ", "DIVIDEND", None, 0.1, "USD", "test"), "instrument_known"),
    ],
    ids=["negative-ratio", "missing-ratio", "negative-dividend", "unknown-instrument"],
)
def test_corporate_actions_with_planted_defect_fail_that_check_only(tmp_path, defect, check):
    # Arrange
    location = {"backend": "duckdb", "duckdb_path": str(tmp_path / "warehouse.duckdb")}
    defs = _planted_defs(make_config_dir(tmp_path), location, [*GOOD_ACTIONS, defect])

    # Act
    result = run_range(defs, date(2024, 1, 2), date(2024, 1, 5))

    # Assert: that ERROR check failed, naming the row; the other corporate-action checks passed
    checks = {k[1]: e for k, e in check_results(result).items() if k[0] == "historical/corporate_actions"}
    failed = {name for name, e in checks.items() if not e.passed}
    assert failed == {check}
    assert checks[check].severity == dg.AssetCheckSeverity.ERROR
    assert "CA-9" in str(checks[check].metadata) or "NOT_LISTED" in str(checks[check].metadata)


def test_corporate_actions_with_provider_without_them_are_empty_and_pass(tmp_path):
    # Arrange: a file source has no corporate actions and no ground truth
    path = write_csv(tmp_path / "imports" / "p.csv", [f"2024-01-0{d},AAA,10,11,9,10,100" for d in (2, 3)])
    location = {"backend": "duckdb", "duckdb_path": str(tmp_path / "warehouse.duckdb")}
    defs = build_defs(make_config_dir(tmp_path, data_source={"kind": "file", "paths": [str(path)]}), location)

    # Act
    result = run_range(defs, date(2024, 1, 2), date(2024, 1, 3))

    # Assert
    assert result.success
    with open_warehouse(**location) as wh:
        assert wh.row_count("corporate_actions") == 0
    checks = {k[1]: e for k, e in check_results(result).items() if k[0] == "historical/corporate_actions"}
    assert checks and all(e.passed for e in checks.values())
    mat = next(m for m in result.get_asset_materialization_events()
               if m.asset_key == dg.AssetKey(["historical", "prices_daily"]))
    assert "truth_files" not in mat.materialization.metadata
    assert not truth_root("US_EQ").exists()


def test_corporate_action_rules_with_each_bad_value_name_the_rule():
    frame = _actions([
        ("A", "X", date(2024, 1, 2), "US_EQ", "SPLIT", 0.0, None, None, "t"),
        ("B", "X", date(2024, 1, 2), "US_EQ", "SPLIT", float("nan"), None, None, "t"),
        ("C", "X", date(2024, 1, 2), "US_EQ", "DELISTING", None, None, "USD", "t"),
        ("F", "X", date(2024, 1, 2), "US_EQ", "DIVIDEND", None, float("nan"), "USD", "t"),
        ("D", "X", date(2024, 1, 2), "US_EQ", "MERGER", None, 1.0, "USD", "t"),
        ("E", "X", date(2024, 1, 2), "US_EQ", "DIVIDEND", None, 0.0, "USD", "t"),
    ])
    assert corporate_action_rule(frame, "split_ratio_positive").metadata["bad_rows"] == 2
    assert corporate_action_rule(frame, "amount_non_negative").metadata["bad_rows"] == 2
    assert corporate_action_rule(frame, "action_type_known").metadata["bad_rows"] == 1
    assert corporate_action_rule(frame.head(0), "split_ratio_positive").passed
    unknown = known_instruments(frame, pl.DataFrame({"instrument_id": ["Y"]}))
    assert not unknown.passed and unknown.metadata["unknown_instruments"] == ["X"]


def test_build_definitions_with_strategy_on_other_market_wires_it_to_that_market(tmp_path):
    # Arrange: the default strategy moved to EU_EQ
    config_dir = _config_dir(tmp_path)
    path = config_dir / "strategies.yaml"
    strategies = yaml.safe_load(path.read_text())
    for s in strategies["strategies"]:
        s["market_id"] = "EU_EQ"
    path.write_text(yaml.safe_dump(strategies, sort_keys=False))

    # Act
    defs = build_definitions(str(config_dir), None)

    # Assert: its assets read EU_EQ's panels on XETR sessions
    graph = defs.resolve_asset_graph()
    decisions = graph.get(dg.AssetKey(["runtime", "us_core_long_eq", "decisions"]))
    assert dg.AssetKey(["EU_EQ", "historical", "instrument_factors_daily"]) in decisions.parent_keys
    assert "2024-05-01" not in decisions.partitions_def.get_partition_keys()
