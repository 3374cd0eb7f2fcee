"""Validate before replacing, through real Dagster runs of the ingest job (issue: reliability
findings 1 and 7): an empty or truncated source never wipes the warehouse, ``--allow-empty``
does so on purpose (and takes the panels' orphaned rows with it), and a quarantined line that
moves to another partition is replaced, not duplicated.

DuckDB only: the warehouse operations these runs use are tested on both backends in
tests/lib/data/test_ingest_bounds.py.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from providers import build_defs, make_config_dir, write_csv

from prometheus_assets.assets.ingestion import ALLOW_EMPTY_TAG
from prometheus_lib.storage.factory import open_warehouse

JAN = date(2024, 1, 2), date(2024, 1, 12)  # 9 sessions
FEB = date(2024, 2, 1), date(2024, 2, 9)  # 7 sessions
TABLES = ("prices_daily", "instruments", "issuers", "quarantine_rows", "returns_daily", "factors_daily")


def _sessions(defs: dg.Definitions, start: date, end: date) -> list[date]:
    return defs.resources["platform"].calendar().sessions(start, end)


def _rows(defs: dg.Definitions, bad_date: str = "2024-01-03") -> list[str]:
    rows = [f"{bad_date},CCC,5,6,4,-5.5,100"]  # line 2: quarantined (non-positive close)
    for d in (*_sessions(defs, *JAN), *_sessions(defs, *FEB)):
        rows += [f"{d},AAA,10,11,9.5,10.5,1000", f"{d},BBB,20,21,19,20.5,2000"]
    return rows


PRICES_JOB = "ingest_prices_only"


def _defs(tmp_path: Path, location: dict[str, str], data_source: dict) -> dg.Definitions:
    """The code location, plus a job of the reference and price assets only (and their checks):
    the event assets of a file market are empty and would only add time."""
    defs = build_defs(make_config_dir(tmp_path, data_source=data_source), location)
    job = dg.define_asset_job(
        PRICES_JOB, partitions_def=defs.resolve_job_def("ingest").partitions_def,
        selection=dg.AssetSelection.assets(*(["runtime", t] for t in ("markets", "issuers", "instruments")),
                                           *(["historical", t] for t in ("prices_daily", "prices_daily_quarantine"))),
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))


def _run(defs: dg.Definitions, start: date, end: date, **tags: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(PRICES_JOB).execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        instance=dg.DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat(), **tags},
        raise_on_error=False,
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the run's step failures and their causes."""
    out = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            out.append(error.message)
            error = error.cause
    return " ".join(out)


def _snapshot(location: dict[str, str]) -> dict[str, pl.DataFrame]:
    with open_warehouse(**location) as wh:
        return {t: wh.read_table(t) for t in TABLES}


def _fake_panels(location: dict[str, str], sessions: list[date]) -> None:
    """Panel rows for every priced (instrument, session) of ``sessions``, as a panels run leaves them."""
    with open_warehouse(**location) as wh:
        keys = wh.read_table("prices_daily", sessions[0], sessions[-1], columns=["instrument_id", "session_date"])
        returns = keys.with_columns(pl.lit("US_EQ").alias("market_id"),
                                    *(pl.lit(0.01).alias(c) for c in ("return_simple", "return_log",
                                                                      "return_overnight", "return_intraday")))
        factors = pl.DataFrame({"factor_id": "MKT", "session_date": sessions, "market_id": "US_EQ",
                                "factor_return": 0.0, "n_long": 1, "n_short": 1},
                               schema_overrides={"n_long": pl.Int32, "n_short": pl.Int32})
        wh.write_partition("returns_daily", returns, sessions[0], sessions[-1], {"market_id": "US_EQ"})
        wh.write_partition("factors_daily", factors, sessions[0], sessions[-1], {"market_id": "US_EQ"})


@pytest.fixture
def location(tmp_path: Path) -> dict[str, str]:
    return {"backend": "duckdb", "duckdb_path": str(tmp_path / "warehouse.duckdb")}


def test_ingest_with_header_only_file_keeps_the_warehouse_and_allow_empty_wipes_it(tmp_path, location):
    # Arrange: Q1-style history ingested from a file (no instrument master), with panels built on it
    path = tmp_path / "imports" / "prices.csv"
    defs = _defs(tmp_path, location, {"kind": "file", "paths": [str(path)]})
    write_csv(path, _rows(defs))
    assert _run(defs, *JAN).success
    _fake_panels(location, _sessions(defs, *JAN))
    before = _snapshot(location)
    assert before["prices_daily"].height == 18 and before["instruments"].height == 2
    assert before["quarantine_rows"].height == 1 and before["returns_daily"].height == 18

    # Act 1: the file is truncated to its header and re-ingested over the same range
    write_csv(path, [])
    refused = _run(defs, *JAN)

    # Assert 1: the run fails naming the market, table and rule; nothing changed, panels included
    assert not refused.success
    message = _failure(refused)
    assert "US_EQ issuers and instruments" in message and "yields no instruments" in message
    assert "--allow-empty" in message and "not written" in message
    after = _snapshot(location)
    for table in TABLES:
        assert after[table].equals(before[table]), table

    # Act 2: the same with --allow-empty (the run tag)
    allowed = _run(defs, *JAN, **{ALLOW_EMPTY_TAG: "1"})

    # Assert 2: the range is emptied on purpose, and no panel row outlives its prices
    assert allowed.success, _failure(allowed)
    wiped = _snapshot(location)
    for table in TABLES:
        assert wiped[table].height == 0, table
    mat = next(m for m in allowed.get_asset_materialization_events()
               if m.asset_key == dg.AssetKey(["historical", "prices_daily"]))
    assert mat.materialization.metadata["orphaned_panel_rows_deleted"].value == {"returns_daily": 18,
                                                                                 "factors_daily": 9}


def test_ingest_with_master_moved_quarantine_line_and_truncated_file(tmp_path, location):
    # Arrange: an instrument master, and line 2 of the file rejected in January
    path = tmp_path / "imports" / "prices.csv"
    master = tmp_path / "imports" / "instruments.csv"
    data_source = {"kind": "file", "paths": [str(path)], "instrument_master": str(master)}
    defs = _defs(tmp_path, location, data_source)
    master.parent.mkdir(parents=True)
    master.write_text("ticker,name\nAAA,A Corp\nBBB,B Corp\nCCC,C Corp\n")
    write_csv(path, _rows(defs))
    assert _run(defs, *JAN).success

    # Act 1 (finding 7): line 2 now carries a February date; February is ingested incrementally
    write_csv(path, _rows(defs, bad_date="2024-02-05"))
    moved = _run(defs, *FEB)

    # Assert 1: no duplicate quarantine key; the line is quarantined exactly once, in February
    assert moved.success, _failure(moved)
    with open_warehouse(**location) as wh:
        quarantine = wh.read_table("quarantine_rows")
        assert wh.row_count("prices_daily") == 18 + 14
    assert quarantine.select("line_number", "reason", "session_date").rows() == [
        (2, "non-positive close", date(2024, 2, 5))]

    # Act 2 (finding 1, with a master): the price file loses its rows; the master is unchanged
    _fake_panels(location, _sessions(defs, *FEB))
    before = _snapshot(location)
    write_csv(path, [])
    refused = _run(defs, *FEB)

    # Assert 2: the prices gate refused the write before anything was replaced
    assert not refused.success
    message = _failure(refused)
    for part in ("US_EQ prices_daily for 7 sessions 2024-02-01..2024-02-09", "rule 'not_emptied'",
                 "warehouse holds 14", "--allow-empty"):
        assert part in message
    after = _snapshot(location)
    for table in TABLES:
        assert after[table].equals(before[table]), table
    mats = {m.asset_key for m in refused.get_asset_materialization_events()}
    assert dg.AssetKey(["historical", "prices_daily"]) not in mats
    assert dg.AssetKey(["historical", "prices_daily_quarantine"]) not in mats
