"""Specification of the warehouse, on DuckDB and on PostgreSQL.

Migrations build every catalogue table; a partition write replaces exactly its partition in one
transaction, so writing twice changes nothing and a crash mid-write leaves the previous rows;
every column type comes back as it was written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest

from prometheus_lib.errors import ConfigError, SchemaMismatchError, UnknownTableError, WarehouseError
from prometheus_lib.storage.catalog import (
    HISTORICAL,
    MODE_TABLES,
    RUNTIME,
    ColumnType,
    Table,
    catalogue_tables,
    get_table,
)
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.migrations import MIGRATIONS, applied_versions, apply_migrations
from prometheus_lib.storage.warehouse import Warehouse, WriteResult

ROOT = Path(__file__).resolve().parents[3]
DATABASE_ERRORS = (duckdb.Error, psycopg.Error)
UTC = timezone.utc

US, EU = "US_EQ", "EU_EQ"
# Five consecutive XNYS sessions.
T1, T2, T3, T4, T5 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 8)
WEEK = (T1, T2, T3, T4, T5)
TICKERS = ("AAA", "BBB", "CCC")
INGESTED_AT = datetime(2024, 1, 8, 22, 15, 0, 123456, tzinfo=UTC)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shared_pg_url(pg_databases) -> str:
    """One migrated PostgreSQL database per test module (and xdist worker)."""
    url = pg_databases.create()
    open_warehouse("postgres", postgres_url=url).close()
    return url


@pytest.fixture
def warehouse(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    """A migrated warehouse whose catalogue tables are empty, on each backend.

    Overrides the conftest fixture for speed: DuckDB gets a fresh file, PostgreSQL reuses the
    module's database with every table emptied (a database per test costs a checkpoint to drop).
    Tests about migrations themselves use ``warehouse_location`` for a truly fresh database.
    """
    if backend == "duckdb":
        wh = open_warehouse("duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb"))
    else:
        wh = open_warehouse("postgres", postgres_url=request.getfixturevalue("shared_pg_url"))
        with wh.transaction():
            for t in catalogue_tables():
                if t.name != "schema_migrations":
                    wh.execute(f"DELETE FROM {t.qualified_name}")
    yield wh
    wh.close()


# ------------------------------------------------------------------ builders
def prices(
    sessions: tuple[date, ...] | list[date],
    tickers: tuple[str, ...] = TICKERS,
    market_id: str = US,
    close: float = 100.0,
) -> pl.DataFrame:
    """A prices_daily frame: one row per ticker per session, closes from ``close`` upwards."""
    rows = []
    for day_index, session in enumerate(sessions):
        for ticker_index, ticker in enumerate(tickers):
            px = close + day_index + ticker_index / 10
            rows.append({
                "instrument_id": f"{market_id}:{ticker}", "session_date": session, "market_id": market_id,
                "open": px - 0.5, "high": px + 1.0, "low": px - 1.0, "close": px, "adjusted_close": px,
                "volume": 1_000_000.0 + ticker_index, "currency": "USD", "source": "test",
                "ingested_at": INGESTED_AT,
            })
    return pl.DataFrame(rows, schema=get_table("prices_daily").polars_schema)


def markets(*market_ids: str) -> pl.DataFrame:
    """A runtime.markets frame with one row per market id."""
    return pl.DataFrame(
        [{
            "market_id": m, "name": f"{m} market", "calendar_code": "XNYS", "timezone": "America/New_York",
            "currency": "USD", "asset_class": "EQUITY", "region": "US", "pre_open_minutes": 90,
            "post_close_minutes": 180, "is_primary": m == US,
        } for m in market_ids],
        schema=get_table("markets").polars_schema,
    )


def instruments(market_id: str, tickers: tuple[str, ...]) -> pl.DataFrame:
    """A runtime.instruments frame for ``tickers`` of ``market_id``."""
    return pl.DataFrame(
        [{
            "instrument_id": f"{market_id}:{t}", "issuer_id": None, "market_id": market_id, "ticker": t,
            "name": None, "asset_class": "EQUITY", "currency": "USD", "sector": None, "industry": None,
            "listing_date": date(2010, 1, 4), "delisting_date": None, "shares_outstanding": 1e9,
            "lot_size": 1, "status": "ACTIVE",
        } for t in tickers],
        schema=get_table("instruments").polars_schema,
    )


_SAMPLE_VALUES: dict[ColumnType, Any] = {
    ColumnType.TEXT: "X",
    ColumnType.DATE: T1,
    ColumnType.TIMESTAMP: INGESTED_AT,
    ColumnType.DOUBLE: 1.5,
    ColumnType.BIGINT: 7,
    ColumnType.INTEGER: 3,
    ColumnType.BOOLEAN: True,
    ColumnType.JSON: "{}",
    ColumnType.FLOAT_ARRAY: [0.25, 0.5],
}


def one_row(table: Table) -> pl.DataFrame:
    """A valid one-row frame for any catalogue table."""
    return pl.DataFrame([{c.name: _SAMPLE_VALUES[c.type] for c in table.columns}], schema=table.polars_schema)


def ordered(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    return frame.sort(list(get_table(table).primary_key))


def assert_same_rows(actual: pl.DataFrame, expected: pl.DataFrame, table: str) -> None:
    """Rows equal (in primary-key order); JSON columns compared as documents, not as text."""
    t = get_table(table)
    actual, expected = ordered(actual, table), ordered(expected, table)
    json_cols = [c.name for c in t.columns if c.type is ColumnType.JSON]
    assert actual.schema == expected.schema
    assert actual.drop(json_cols).equals(expected.drop(json_cols))
    for col in json_cols:
        parse = [None if v is None else json.loads(v) for v in expected[col]]
        assert [None if v is None else json.loads(v) for v in actual[col]] == parse, col


def catalogue_shape(wh: Warehouse) -> list[tuple[str, str, str, int]]:
    """Every (schema, table, column, position) the database has in the catalogue schemas."""
    ph = wh.placeholder
    df = wh.query(
        "SELECT table_schema, table_name, column_name, ordinal_position FROM information_schema.columns "
        f"WHERE table_schema IN ({ph}, {ph}) ORDER BY table_schema, table_name, ordinal_position",
        [HISTORICAL, RUNTIME],
    )
    return [tuple(r) for r in df.iter_rows()]


# ------------------------------------------------------------------ migrations
def test_migrate_with_fresh_database_creates_every_catalogue_table_with_its_columns_in_order(warehouse: Warehouse) -> None:
    # Arrange
    expected_tables = {(t.schema, t.name) for t in catalogue_tables()}
    ph = warehouse.placeholder

    # Act
    found = warehouse.query(
        f"SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ({ph}, {ph})",
        [HISTORICAL, RUNTIME],
    )
    columns = {t.name: warehouse.columns_of(t.name) for t in catalogue_tables()}

    # Assert
    assert {tuple(r) for r in found.iter_rows()} == expected_tables
    assert columns == {t.name: list(t.column_names) for t in catalogue_tables()}


def test_migrate_with_fresh_database_creates_catalogue_primary_keys(warehouse: Warehouse) -> None:
    # Arrange
    ph = warehouse.placeholder

    # Act
    keys = warehouse.query(
        "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name "
        "AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name "
        f"WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema IN ({ph}, {ph}) "
        "ORDER BY tc.table_name, kcu.ordinal_position",
        [HISTORICAL, RUNTIME],
    )

    # Assert
    found: dict[str, list[str]] = {}
    for table, column in keys.iter_rows():
        found.setdefault(table, []).append(column)
    assert found == {t.name: list(t.primary_key) for t in catalogue_tables()}


def test_migrate_with_migrated_database_applies_nothing_and_keeps_the_tables(
    warehouse_location: dict[str, str],
) -> None:
    # Arrange
    with open_warehouse(**warehouse_location, migrate=False) as wh:
        first = wh.migrate()
        shape_before = catalogue_shape(wh)

        # Act
        second = wh.migrate()

        # Assert
        assert first == [m.version for m in MIGRATIONS]
        assert second == []
        assert catalogue_shape(wh) == shape_before
        assert sorted(wh.query("SELECT version FROM runtime.schema_migrations")["version"]) == first


def test_insert_with_duplicate_primary_key_raises_database_error_on_every_table(warehouse: Warehouse) -> None:
    # Arrange
    accepted_duplicates = []
    for table in catalogue_tables():
        warehouse.replace_table(table.name, one_row(table))

        # Act
        try:
            warehouse.execute(f"INSERT INTO {table.qualified_name} SELECT * FROM {table.qualified_name}")
        except DATABASE_ERRORS:
            continue
        accepted_duplicates.append(table.name)

    # Assert
    assert accepted_duplicates == []


def test_insert_with_duplicate_prices_key_raises_database_error_and_keeps_one_row(warehouse: Warehouse) -> None:
    # Arrange
    warehouse.write_partition("prices_daily", prices([T1], tickers=("AAA",)), T1, T1)
    duplicate = (
        "INSERT INTO historical.prices_daily (instrument_id, session_date, market_id, close, source, ingested_at) "
        f"VALUES ('{US}:AAA', DATE '2024-01-02', '{US}', 1.0, 'dup', TIMESTAMPTZ '2024-01-02 00:00:00+00')"
    )

    # Act / Assert
    with pytest.raises(DATABASE_ERRORS):
        warehouse.execute(duplicate)
    assert warehouse.row_count("prices_daily") == 1


@pytest.mark.parametrize("table", MODE_TABLES)
def test_migrate_with_execution_tables_creates_a_non_nullable_mode_column(warehouse: Warehouse, table: str) -> None:
    # Arrange
    t = get_table(table)
    ph = warehouse.placeholder

    # Act
    mode = warehouse.query(
        "SELECT is_nullable FROM information_schema.columns "
        f"WHERE table_schema = {ph} AND table_name = {ph} AND column_name = 'mode'",
        [t.schema, t.name],
    )

    # Assert
    assert mode["is_nullable"].to_list() == ["NO"]


@pytest.mark.parametrize("n_connections", [2, 4])
def test_apply_migrations_with_concurrent_postgres_connections_records_each_version_once(
    pg_url: str, n_connections: int,
) -> None:
    # Arrange
    start = threading.Barrier(n_connections)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with open_warehouse("postgres", postgres_url=pg_url, migrate=False) as wh:
                start.wait(timeout=30)
                applied.append(apply_migrations(wh))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=migrate) for _ in range(n_connections)]

    # Act
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Assert
    assert errors == []
    assert sorted(v for versions in applied for v in versions) == [m.version for m in MIGRATIONS]
    with open_warehouse("postgres", postgres_url=pg_url, migrate=False) as wh:
        recorded = wh.query("SELECT version FROM runtime.schema_migrations ORDER BY version")["version"].to_list()
        assert recorded == [m.version for m in MIGRATIONS]
        assert [wh.columns_of(t.name) for t in catalogue_tables()] == [list(t.column_names) for t in catalogue_tables()]


# ------------------------------------------------------------------ partition writes
def test_write_partition_with_rewritten_session_keeps_exactly_the_new_rows(warehouse: Warehouse) -> None:
    # Arrange
    warehouse.write_partition("prices_daily", prices(WEEK), T1, T5)
    new = prices([T3], close=500.0)

    # Act
    result = warehouse.write_partition("prices_daily", new, T3, T3)

    # Assert
    assert result == WriteResult("prices_daily", rows_deleted=3, rows_written=3, start=T3, end=T3)
    assert_same_rows(warehouse.read_table("prices_daily", T3, T3), new, "prices_daily")
    others = [d for d in WEEK if d != T3]
    assert_same_rows(
        warehouse.read_table("prices_daily").filter(pl.col("session_date") != T3),
        prices(WEEK).filter(pl.col("session_date").is_in(others)),
        "prices_daily",
    )


def test_write_partition_with_subrange_rewrite_leaves_sessions_outside_it_untouched(warehouse: Warehouse) -> None:
    # Arrange
    original = prices(WEEK)
    warehouse.write_partition("prices_daily", original, T1, T5)
    rewrite = prices([T2, T3], close=900.0)

    # Act
    warehouse.write_partition("prices_daily", rewrite, T2, T3)

    # Assert
    outside = original.filter(pl.col("session_date").is_in([T1, T4, T5]))
    assert_same_rows(warehouse.read_table("prices_daily"), pl.concat([outside, rewrite]), "prices_daily")


def test_write_partition_with_same_frame_twice_leaves_the_same_rows(warehouse: Warehouse) -> None:
    # Arrange
    frame = prices(WEEK)
    warehouse.write_partition("prices_daily", frame, T1, T5)
    first = warehouse.read_table("prices_daily")

    # Act
    result = warehouse.write_partition("prices_daily", frame, T1, T5)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (15, 15)
    assert warehouse.row_count("prices_daily") == 15
    assert warehouse.read_table("prices_daily").equals(first)


def test_write_partition_with_market_scope_leaves_other_markets_rows_of_the_session(warehouse: Warehouse) -> None:
    # Arrange
    europe = prices([T1], market_id=EU)
    warehouse.write_partition("prices_daily", europe, T1, T1, scope={"market_id": EU})
    warehouse.write_partition("prices_daily", prices([T1]), T1, T1, scope={"market_id": US})
    us_again = prices([T1], tickers=("ZZZ",), close=42.0)

    # Act
    result = warehouse.write_partition("prices_daily", us_again, T1, T1, scope={"market_id": US})

    # Assert
    assert result.rows_deleted == 3
    assert_same_rows(warehouse.read_table("prices_daily", scope={"market_id": US}), us_again, "prices_daily")
    assert_same_rows(warehouse.read_table("prices_daily", scope={"market_id": EU}), europe, "prices_daily")


def test_write_partition_with_empty_frame_deletes_the_partition_rows(warehouse: Warehouse) -> None:
    # Arrange
    warehouse.write_partition("prices_daily", prices(WEEK), T1, T5)
    empty = prices([])

    # Act
    result = warehouse.write_partition("prices_daily", empty, T2, T2)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (3, 0)
    assert warehouse.row_count("prices_daily", T2, T2) == 0
    assert warehouse.row_count("prices_daily") == 12


@pytest.mark.parametrize(
    ("frame", "scope", "offending"),
    [
        pytest.param(prices([T2, T4]), None, "2024-01-05", id="session-after-end"),
        pytest.param(prices([T1, T2]), None, "2024-01-02", id="session-before-start"),
        pytest.param(pl.concat([prices([T2]), prices([T2], market_id=EU)]), {"market_id": US}, "EU_EQ",
                     id="row-of-another-market"),
    ],
)
def test_write_partition_with_rows_outside_the_partition_raises_naming_table_and_value(
    warehouse: Warehouse, frame: pl.DataFrame, scope: dict[str, str] | None, offending: str,
) -> None:
    # Arrange
    previous = prices([T2, T3])
    warehouse.write_partition("prices_daily", previous, T2, T3)

    # Act
    with pytest.raises(WarehouseError) as raised:
        warehouse.write_partition("prices_daily", frame, T2, T3, scope=scope)

    # Assert
    assert "historical.prices_daily" in str(raised.value)
    assert offending in str(raised.value)
    assert_same_rows(warehouse.read_table("prices_daily"), previous, "prices_daily")


def test_write_partition_with_duplicate_keys_in_frame_raises_and_keeps_previous_rows(warehouse: Warehouse) -> None:
    # Arrange
    previous = prices([T1])
    warehouse.write_partition("prices_daily", previous, T1, T1)
    twice = pl.concat([prices([T1], close=7.0), prices([T1], tickers=("AAA",), close=8.0)])

    # Act
    with pytest.raises(WarehouseError, match="primary key") as raised:
        warehouse.write_partition("prices_daily", twice, T1, T1)

    # Assert
    assert "historical.prices_daily" in str(raised.value)
    assert "US_EQ:AAA" in str(raised.value)
    assert_same_rows(warehouse.read_table("prices_daily"), previous, "prices_daily")


@pytest.mark.parametrize(
    ("reshape", "column"),
    [
        pytest.param(lambda f: f.drop("close"), "close", id="missing-column"),
        pytest.param(lambda f: f.with_columns(pl.lit(1.0).alias("vwap")), "vwap", id="extra-column"),
    ],
)
def test_write_partition_with_wrong_columns_raises_schema_mismatch_naming_the_column(
    warehouse: Warehouse, reshape, column: str,
) -> None:
    # Arrange
    frame = reshape(prices([T1]))

    # Act / Assert
    with pytest.raises(SchemaMismatchError, match=column):
        warehouse.write_partition("prices_daily", frame, T1, T1)
    assert warehouse.row_count("prices_daily") == 0


@pytest.mark.parametrize("column", ["close", "source", "ingested_at"])
def test_write_partition_with_null_in_non_nullable_column_raises_schema_mismatch(
    warehouse: Warehouse, column: str,
) -> None:
    # Arrange
    frame = prices([T1]).with_columns(pl.lit(None).cast(get_table("prices_daily").column(column).polars_type).alias(column))

    # Act / Assert
    with pytest.raises(SchemaMismatchError, match=column):
        warehouse.write_partition("prices_daily", frame, T1, T1)
    assert warehouse.row_count("prices_daily") == 0


def test_write_partition_with_uncastable_values_raises_schema_mismatch(warehouse: Warehouse) -> None:
    # Arrange
    frame = prices([T1]).with_columns(pl.lit("not a number").alias("close"))

    # Act / Assert
    with pytest.raises(SchemaMismatchError, match="prices_daily"):
        warehouse.write_partition("prices_daily", frame, T1, T1)


@pytest.mark.parametrize(
    ("table", "start", "end", "message"),
    [
        pytest.param("markets", T1, T1, "replace_table", id="unpartitioned-table"),
        pytest.param("prices_daily", T3, T2, "before start", id="end-before-start"),
    ],
)
def test_write_partition_with_invalid_partition_raises_warehouse_error(
    warehouse: Warehouse, table: str, start: date, end: date, message: str,
) -> None:
    # Arrange
    frame = one_row(get_table(table))

    # Act / Assert
    with pytest.raises(WarehouseError, match=message):
        warehouse.write_partition(table, frame, start, end)


def test_replace_table_with_new_frame_replaces_every_row(warehouse: Warehouse) -> None:
    # Arrange
    warehouse.replace_table("markets", markets(US, EU, "JP_EQ"))
    new = markets(US, "US_FUT")

    # Act
    result = warehouse.replace_table("markets", new)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (3, 2)
    assert_same_rows(warehouse.read_table("markets"), new, "markets")


def test_replace_table_with_scope_replaces_only_that_scope(warehouse: Warehouse) -> None:
    # Arrange
    europe = instruments(EU, ("SAP", "ASML"))
    warehouse.replace_table("instruments", pl.concat([instruments(US, ("AAA", "BBB")), europe]))
    new_us = instruments(US, ("CCC",))

    # Act
    warehouse.replace_table("instruments", new_us, scope={"market_id": US})

    # Assert
    assert_same_rows(warehouse.read_table("instruments"), pl.concat([new_us, europe]), "instruments")


def test_read_table_with_list_scope_reads_rows_of_any_listed_value(warehouse: Warehouse) -> None:
    # Arrange
    us = instruments(US, ("AAA", "BBB", "CCC"))
    warehouse.replace_table("instruments", pl.concat([us, instruments(EU, ("SAP",))]))

    # Act
    two = warehouse.read_table("instruments", scope={"market_id": US, "instrument_id": [f"{US}:CCC", f"{US}:AAA"]})

    # Assert
    assert sorted(two["ticker"].to_list()) == ["AAA", "CCC"]
    assert warehouse.read_table("instruments", scope={"market_id": (US, EU)}).height == 4
    with pytest.raises(WarehouseError, match="empty list"):
        warehouse.read_table("instruments", scope={"market_id": []})
    by_ticker = warehouse.read_table("instruments", order_by=("ticker",))
    assert by_ticker["ticker"].to_list() == ["AAA", "BBB", "CCC", "SAP"]


def test_replace_table_with_row_of_another_scope_raises_and_keeps_previous_rows(warehouse: Warehouse) -> None:
    # Arrange
    previous = instruments(US, ("AAA",))
    warehouse.replace_table("instruments", previous)

    # Act / Assert
    with pytest.raises(WarehouseError, match="EU_EQ"):
        warehouse.replace_table("instruments", instruments(EU, ("SAP",)), scope={"market_id": US})
    assert_same_rows(warehouse.read_table("instruments"), previous, "instruments")


# ------------------------------------------------------------------ crash mid-write
def test_write_partition_with_failure_before_commit_raises_and_keeps_previous_rows(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    previous = prices([T1, T2])
    warehouse.write_partition("prices_daily", previous, T1, T2)
    seen_inside: list[pl.DataFrame] = []

    def fail_before_commit(table: Table) -> None:
        seen_inside.append(warehouse.read_table("prices_daily"))  # the delete and insert have run
        raise RuntimeError("disk full")

    monkeypatch.setattr(warehouse, "_before_commit", fail_before_commit)

    # Act
    with pytest.raises(WarehouseError, match="rolled back"):
        warehouse.write_partition("prices_daily", prices([T1], tickers=("NEW",), close=1.0), T1, T1)

    # Assert
    assert seen_inside[0]["instrument_id"].to_list().count(f"{US}:NEW") == 1
    assert_same_rows(warehouse.read_table("prices_daily"), previous, "prices_daily")


_CRASHING_WRITER = """
import os, sys
from datetime import date, datetime, timezone
import polars as pl
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.factory import open_warehouse

location = {location!r}
day = date(2024, 1, 2)

def frame(close, tickers):
    return pl.DataFrame([{{
        "instrument_id": "US_EQ:" + t, "session_date": day, "market_id": "US_EQ", "open": None,
        "high": None, "low": None, "close": close, "adjusted_close": None, "volume": None,
        "currency": "USD", "source": "crash-test", "ingested_at": datetime(2024, 1, 2, tzinfo=timezone.utc),
    }} for t in tickers], schema=get_table("prices_daily").polars_schema)

wh = open_warehouse(**location)
wh.write_partition("prices_daily", frame(10.0, ["AAA", "BBB"]), day, day)
print("first write committed", flush=True)

def die(table):
    print("dying inside the second write", flush=True)
    os._exit(1)

wh._before_commit = die
wh.write_partition("prices_daily", frame(99.0, ["AAA", "BBB", "CCC"]), day, day)
print("second write committed", flush=True)
"""


def test_write_partition_with_process_killed_before_commit_keeps_previous_rows(
    warehouse_location: dict[str, str],
) -> None:
    # Arrange
    script = textwrap.dedent(_CRASHING_WRITER).format(location=warehouse_location)

    # Act
    crashed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)

    # Assert
    assert crashed.returncode == 1, crashed.stderr
    assert crashed.stdout.splitlines() == ["first write committed", "dying inside the second write"]
    with open_warehouse(**warehouse_location) as wh:
        survivors = wh.read_table("prices_daily")
    assert survivors.select("instrument_id", "close").rows() == [(f"{US}:AAA", 10.0), (f"{US}:BBB", 10.0)]


# ------------------------------------------------------------------ column types
_STAMP = datetime(2024, 3, 10, 7, 30, 5, 123456, tzinfo=UTC)
_AWKWARD_TEXT = [
    "plain", "a,b,c", 'say "hi"', "it's", "line one\nline two", "crlf\r\nend", "tab\there",
    "ünïcødé · 日本語 · 🚀", "", "\\N", "\\.", "back\\slash", "NULL", "  padded  ", None,
]

ROUND_TRIP_FRAMES = {
    "prices_daily": lambda: pl.DataFrame({
        "instrument_id": ["US_EQ:A", "US_EQ:B", "US_EQ:C", "US_EQ:D"],
        "session_date": [T1] * 4,
        "market_id": [US] * 4,
        "open": [1 / 3, None, 1e-300, 5e-324],
        "high": [0.1 + 0.2, 1.7976931348623157e308, 2.0, -0.0],
        "low": [None, -123.456, 0.0, 1e15 + 0.3],
        "close": [101.25, 99.999999999, 1e-9, 123456789.123456],
        "adjusted_close": [None, None, 3.0, 4.0],
        "volume": [1e9, 0.0, None, 12.0],
        "currency": ["USD", None, "", "EUR"],
        "source": ["test"] * 4,
        "ingested_at": [_STAMP, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                        datetime(2024, 1, 2, tzinfo=UTC), datetime(2099, 12, 31, 23, 59, 59, 1, tzinfo=UTC)],
        "shares_outstanding": [2.5e8, None, 1.0, 1e12 + 0.5],
    }),
    "text_embeddings": lambda: pl.DataFrame({
        "text_id": ["n1", "n2", "n3"],
        "source_table": ["news_articles", "filings", "earnings_calls"],
        "model_id": ["MINILM"] * 3,
        "session_date": [T1, T1, T2],
        "market_id": [US] * 3,
        "embedding": [[1 / 3, -0.0, 1e-300, 1.7976931348623157e308, -2.5], [0.1 + 0.2], [float(i) / 7 for i in range(384)]],
    }),
    "engine_configs": lambda: pl.DataFrame({
        "engine_name": [f"ENGINE_{i:02d}" for i in range(len(_AWKWARD_TEXT))],
        "config_hash": ["abc123"] * len(_AWKWARD_TEXT),
        "config_json": [json.dumps({"b": 1, "a": [1.5, None, "x,\"y\"\n"], "nested": {"é": True}})] * len(_AWKWARD_TEXT),
        "created_at": [_STAMP + timedelta(microseconds=i) for i in range(len(_AWKWARD_TEXT))],
        "description": _AWKWARD_TEXT,
    }),
    "walk_forward_results": lambda: pl.DataFrame({
        "run_id": ["WF1", "WF1", "WF2"],
        "fold": [0, 2**31 - 1, -(2**31)],
        "model_id": [None, "M1", "M2"],
        "in_sample_start": [date(1900, 1, 1), date(2015, 1, 2), date(2020, 2, 29)],
        "in_sample_end": [date(2019, 12, 31), date(2019, 12, 31), date(2021, 1, 1)],
        "oos_start": [date(2020, 1, 2)] * 3,
        "oos_end": [date(2099, 12, 31), date(2020, 6, 30), date(2021, 6, 30)],
        "params_json": [None, '{"lookback": 63}', "[1, 2, 3]"],
        "metrics_json": ['{"sharpe": 1.25}', "null", '"text"'],
        "promoted": [True, False, True],
    }),
    "quarantine_rows": lambda: pl.DataFrame({
        "asset": ["prices_daily"] * 3,
        "source_file": ["/data/prices, 2024.csv", "/data/prices.csv", "/data/prices.csv"],
        "line_number": [1, 2**40, 9_223_372_036_854_775_807],
        "reason": ["bad close", "bad date", "unknown ticker"],
        "field": ["close", "date", None],
        "value": ["-1", "2024-13-45", None],
        "session_date": [T1, None, T2],
        "market_id": [US] * 3,
        "raw_row": ['{"close": "-1"}', '{"date": "2024-13-45"}', None],
        "quarantined_at": [_STAMP] * 3,
    }),
}


@pytest.mark.parametrize("table", sorted(ROUND_TRIP_FRAMES))
def test_write_then_read_with_every_column_type_returns_an_equal_frame(warehouse: Warehouse, table: str) -> None:
    # Arrange
    t = get_table(table)
    frame = ROUND_TRIP_FRAMES[table]().cast(t.polars_schema)

    # Act
    if t.partition_column is None:
        warehouse.replace_table(table, frame)
    else:
        warehouse.write_partition(table, frame, T1, T2)
    back = warehouse.read_table(table)

    # Assert
    assert back.schema == t.polars_schema
    assert_same_rows(back, frame, table)


def test_write_then_read_with_awkward_strings_returns_every_string_unchanged(warehouse: Warehouse) -> None:
    # Arrange
    frame = ROUND_TRIP_FRAMES["engine_configs"]().cast(get_table("engine_configs").polars_schema)

    # Act
    warehouse.replace_table("engine_configs", frame)
    back = warehouse.read_table("engine_configs", columns=["engine_name", "description"])

    # Assert
    assert back.equals(frame.select("engine_name", "description").sort("engine_name"))


def test_write_then_read_with_json_column_returns_the_same_document(warehouse: Warehouse) -> None:
    # Arrange
    document = {"weights": {"AAA": 0.5, "BBB": -0.25}, "notes": 'a "quoted", multi\nline — note', "ok": None}
    frame = one_row(get_table("engine_configs")).with_columns(pl.lit(json.dumps(document)).alias("config_json"))

    # Act
    warehouse.replace_table("engine_configs", frame)
    stored = warehouse.read_table("engine_configs")["config_json"][0]

    # Assert
    assert json.loads(stored) == document


def test_read_table_with_column_subset_returns_those_columns_with_catalogue_types(warehouse: Warehouse) -> None:
    # Arrange
    warehouse.write_partition("prices_daily", prices(WEEK), T1, T5)

    # Act
    subset = warehouse.read_table("prices_daily", T2, T3, columns=["session_date", "close"])

    # Assert
    assert subset.schema == {"session_date": pl.Date(), "close": pl.Float64()}
    assert subset.height == 6
    assert set(subset["session_date"]) == {T2, T3}


def test_read_table_with_empty_table_returns_empty_frame_with_catalogue_schema(warehouse: Warehouse) -> None:
    # Act
    empty = warehouse.read_table("text_embeddings")

    # Assert
    assert empty.height == 0
    assert empty.schema == get_table("text_embeddings").polars_schema


# ------------------------------------------------------------------ bulk path
def test_write_partition_with_200k_rows_loads_every_row_in_one_call(warehouse: Warehouse) -> None:
    # Arrange
    n_instruments, n_sessions = 800, 250
    sessions = [T1 + timedelta(days=i) for i in range(n_sessions)]
    frame = pl.DataFrame({
        "instrument_id": [f"US_EQ:I{i:04d}" for i in range(n_instruments)] * n_sessions,
        "session_date": [s for s in sessions for _ in range(n_instruments)],
    }).with_columns(
        pl.lit(US).alias("market_id"),
        *(pl.int_range(pl.len()).cast(pl.Float64).alias(c) for c in ("open", "high", "low")),
        (pl.int_range(pl.len()) / 4).alias("close"),
        pl.lit(None, pl.Float64).alias("adjusted_close"),
        pl.lit(1e6).alias("volume"),
        pl.lit("USD").alias("currency"),
        pl.lit("bulk").alias("source"),
        pl.lit(INGESTED_AT).alias("ingested_at"),
        pl.lit(None, pl.Float64).alias("shares_outstanding"),
    )

    # Act
    result = warehouse.write_partition("prices_daily", frame, sessions[0], sessions[-1], scope={"market_id": US})

    # Assert
    assert result.rows_written == 200_000
    assert warehouse.row_count("prices_daily") == 200_000
    total = warehouse.query("SELECT sum(close) AS s FROM historical.prices_daily")["s"][0]
    assert total == pytest.approx(frame["close"].sum())


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("name", ["price_daily", "historical.nope", "runtime.orderz"])
def test_get_table_with_unknown_name_raises_listing_valid_names(name: str) -> None:
    # Act
    with pytest.raises(UnknownTableError) as raised:
        get_table(name)

    # Assert
    message = str(raised.value)
    assert repr(name) in message
    assert all(t.name in message for t in catalogue_tables())


def test_read_table_with_unknown_name_raises_unknown_table_error(warehouse: Warehouse) -> None:
    # Act / Assert
    with pytest.raises(UnknownTableError, match="prices_daily"):
        warehouse.read_table("prices_dialy")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"backend": "sqlite"}, "'sqlite'", id="unknown-backend"),
        pytest.param({"backend": "auto"}, "'auto'", id="unresolved-auto"),
        pytest.param({"backend": "duckdb"}, "duckdb_path", id="duckdb-without-path"),
        pytest.param({"backend": "postgres"}, "PROMETHEUS_WAREHOUSE_URL", id="postgres-without-url"),
    ],
)
def test_open_warehouse_with_bad_backend_raises_config_error(kwargs: dict[str, str], message: str) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match=message):
        open_warehouse(**kwargs)


def test_open_warehouse_with_unreachable_postgres_raises_warehouse_error_hiding_the_password() -> None:
    # Arrange
    url = "postgresql://postgres:s3cret@127.0.0.1:1/nowhere?connect_timeout=2"

    # Act
    with pytest.raises(WarehouseError) as raised:
        open_warehouse("postgres", postgres_url=url)

    # Assert
    assert "s3cret" not in str(raised.value)


def test_applied_versions_with_fresh_database_is_empty(warehouse_location: dict[str, str]) -> None:
    # Act
    with open_warehouse(**warehouse_location, migrate=False) as wh:
        versions = applied_versions(wh)

    # Assert
    assert versions == set()
