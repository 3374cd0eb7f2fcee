"""Specification of the CSV/Parquet price importer: what loads, what is quarantined and why."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.file_import import (
    FilePriceProvider,
    price_row_schema,
    validate_price_rows,
)
from prometheus_lib.data.providers import (
    QUARANTINE_SCHEMA,
    LoadResult,
    MarketDataProvider,
    provider_schema,
)
from prometheus_lib.errors import DataValidationError

HEADER = "date,ticker,open,high,low,close,volume"
GOOD_ROWS = [
    "2024-01-02,AAPL,187.15,188.44,183.89,185.64,82488700",
    "2024-01-02,MSFT,373.86,375.90,366.77,370.87,25258600",
    "2024-01-03,AAPL,184.22,185.88,183.43,184.25,58414500",
    "2024-01-03,MSFT,369.01,373.26,368.51,370.60,23083500",
]
JANUARY = date(2024, 1, 2), date(2024, 1, 31)


@pytest.fixture(scope="module")
def xnys() -> TradingCalendar:
    return TradingCalendar("XNYS")


@pytest.fixture(scope="module")
def year_2024(xnys: TradingCalendar) -> list[date]:
    return xnys.sessions("2024-01-01", "2024-12-31")


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def quarantine_by_line(result: LoadResult) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in result.quarantine.iter_rows(named=True):
        out.setdefault(row["line_number"], []).append(row)
    return out


# ------------------------------------------------------------------ clean loads
def test_load_with_clean_csv_returns_all_rows_in_prices_daily_schema(tmp_path, xnys, year_2024):
    # Arrange
    path = write_csv(tmp_path / "prices.csv", GOOD_ROWS)
    provider = FilePriceProvider(path, xnys, "US_EQ")

    # Act
    result = provider.prices(year_2024)

    # Assert
    assert isinstance(provider, MarketDataProvider)
    assert provider.source == "file"
    assert result.frame.schema == provider_schema("prices_daily")
    assert result.frame.height == 4
    assert result.quarantine.height == 0
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    assert result.source_files == (str(path),)
    aapl = result.frame.filter(pl.col("instrument_id") == "AAPL", pl.col("session_date") == date(2024, 1, 2)).row(
        0, named=True
    )
    assert aapl == {
        "instrument_id": "AAPL",
        "session_date": date(2024, 1, 2),
        "market_id": "US_EQ",
        "open": 187.15,
        "high": 188.44,
        "low": 183.89,
        "close": 185.64,
        "adjusted_close": 185.64,
        "volume": 82488700.0,
        "currency": "USD",
        "source": "file",
        "shares_outstanding": None,
    }


def test_load_with_close_only_csv_returns_null_open_high_low_volume(tmp_path, xnys, year_2024):
    path = write_csv(tmp_path / "close_only.csv", ["2024-01-02,AAPL,185.64", "2024-01-03,AAPL,184.25"], "Date,Ticker,Close")

    result = FilePriceProvider(path, xnys, "US_EQ", currency="EUR").prices(year_2024)

    assert result.frame.height == 2
    assert result.quarantine.height == 0
    for column in ("open", "high", "low", "volume"):
        assert result.frame[column].null_count() == 2
    assert result.frame["adjusted_close"].to_list() == [185.64, 184.25]
    assert result.frame["currency"].unique().to_list() == ["EUR"]


def test_load_with_mixed_case_headers_and_adjusted_close_keeps_adjusted_close(tmp_path, xnys, year_2024):
    path = write_csv(
        tmp_path / "prices.csv",
        ["2024-01-02,AAPL,185.64,184.27", "2024-01-03,AAPL,184.25,"],
        "DATE,Ticker,CLOSE,Adj Close",
    )

    frame = FilePriceProvider(path, xnys, "US_EQ").prices(year_2024).frame

    assert frame.sort("session_date")["adjusted_close"].to_list() == [184.27, 184.25]


def test_load_with_parquet_file_returns_rows_and_numbers_rows_from_one(tmp_path, xnys, year_2024):
    # Arrange: typed Parquet columns, the third row (row number 3) has high < low.
    path = tmp_path / "prices.parquet"
    pl.DataFrame(
        {
            "Date": [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)],
            "Ticker": ["AAPL", "AAPL", "AAPL"],
            "High": [188.44, 185.88, 180.0],
            "Low": [183.89, 183.43, 181.0],
            "Close": [185.64, 184.25, 180.5],
            "Volume": [82488700, 58414500, 71983600],
        }
    ).write_parquet(path)

    # Act
    result = FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    # Assert
    assert result.frame.height == 2
    assert result.frame.schema == provider_schema("prices_daily")
    assert result.frame["open"].null_count() == 2
    # A close can't sit inside an inverted range, so the row also breaks the close rules.
    assert set(result.quarantine.select("line_number", "reason").rows()) == {
        (3, "high < low"),
        (3, "high < max(open, close)"),
        (3, "low > min(open, close)"),
    }
    bad = result.quarantine.filter(pl.col("reason") == "high < low").row(0, named=True)
    assert bad["field"] == "high,low"
    assert bad["value"] == "high=180.0, low=181.0"
    assert bad["session_date"] == date(2024, 1, 4)


def test_load_with_directory_and_glob_reads_every_price_file(tmp_path, xnys, year_2024):
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "a.csv", GOOD_ROWS[:2])
    write_csv(data / "b.csv", GOOD_ROWS[2:])
    (data / "README.txt").write_text("not prices")

    by_directory = FilePriceProvider(data, xnys, "US_EQ").prices(year_2024)
    by_glob = FilePriceProvider(str(data / "*.csv"), xnys, "US_EQ").prices(year_2024)

    assert by_directory.frame.height == by_glob.frame.height == 4
    assert by_directory.source_files == (str(data / "a.csv"), str(data / "b.csv"))


# ------------------------------------------------------------------ bad rows
BAD_ROWS = [
    pytest.param("2024-01-04,AAPL,182.15,183.09,180.88,0,71983600", "non-positive close", "close", "0", id="zero-close"),
    pytest.param("2024-01-04,AAPL,-1,183.09,180.88,181.91,71983600", "non-positive open", "open", "-1", id="negative-open"),
    pytest.param("2024-01-04,AAPL,182.15,183.09,180.88,,71983600", "missing close", "close", None, id="missing-close"),
    pytest.param("2024-01-04,AAPL,182.15,180.00,181.00,180.50,71983600", "high < low", "high,low",
                 "high=180.00, low=181.00", id="high-below-low"),
    pytest.param("2024-01-04,AAPL,182.15,183.09,180.88,184.00,71983600", "high < max(open, close)",
                 "high,open,close", "high=183.09, open=182.15, close=184.00", id="high-below-close"),
    pytest.param("2024-01-04,AAPL,182.15,183.09,180.88,181.91,-5", "negative volume", "volume", "-5", id="negative-volume"),
    pytest.param("2024-01-04,AAPL,182.15,183.09,180.88,1.8e,71983600", "close is not a number", "close", "1.8e",
                 id="close-not-a-number"),
    pytest.param("2024-01-06,AAPL,182.15,183.09,180.88,181.91,71983600", "not a session", "date", "2024-01-06",
                 id="weekend"),
    pytest.param("2024-07-04,AAPL,182.15,183.09,180.88,181.91,71983600", "not a session", "date", "2024-07-04",
                 id="holiday"),
    pytest.param("2024-13-01,AAPL,182.15,183.09,180.88,181.91,71983600", "unparseable date", "date", "2024-13-01",
                 id="unparseable-date"),
    pytest.param(",AAPL,182.15,183.09,180.88,181.91,71983600", "missing date", "date", None, id="missing-date"),
    pytest.param("2024-01-04, ,182.15,183.09,180.88,181.91,71983600", "missing ticker", "ticker", " ",
                 id="missing-ticker"),
]


@pytest.mark.parametrize(("bad_row", "reason", "field", "value"), BAD_ROWS)
def test_load_with_bad_row_quarantines_it_with_line_field_and_reason(
    tmp_path, xnys, year_2024, bad_row, reason, field, value
):
    # Arrange: the bad row is line 4 (header is line 1), between good rows.
    path = write_csv(tmp_path / "prices.csv", [*GOOD_ROWS[:2], bad_row, *GOOD_ROWS[2:]])

    # Act
    result = FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    # Assert: the row is rejected for this reason (an inverted high/low also breaks an
    # open/close rule, so a row may carry more than one reason).
    assert result.frame.height == 4
    assert result.quarantine["line_number"].unique().to_list() == [4]
    [rejected] = result.quarantine.filter(pl.col("reason") == reason).iter_rows(named=True)
    assert rejected["asset"] == "prices_daily"
    assert rejected["source_file"] == str(path)
    assert rejected["line_number"] == 4
    assert rejected["reason"] == reason
    assert rejected["field"] == field
    assert rejected["value"] == value
    assert rejected["market_id"] == "US_EQ"
    assert json.loads(rejected["raw_row"]) == dict(zip(HEADER.split(","), [c or None for c in bad_row.split(",")]))


def test_load_with_duplicate_key_quarantines_every_copy(tmp_path, xnys, year_2024):
    copy = "2024-01-04,AAPL,182.15,183.09,180.88,181.91,71983600"
    path = write_csv(tmp_path / "prices.csv", [*GOOD_ROWS, copy, copy.replace("181.91", "182.00")])

    result = FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    assert result.frame.height == 4
    assert result.frame.filter(pl.col("session_date") == date(2024, 1, 4)).height == 0
    assert result.quarantine.select("line_number", "reason", "field", "value").rows() == [
        (6, "duplicate key", "date,ticker", "date=2024-01-04, ticker=AAPL"),
        (7, "duplicate key", "date,ticker", "date=2024-01-04, ticker=AAPL"),
    ]


def test_load_with_same_key_in_two_files_quarantines_both_copies(tmp_path, xnys, year_2024):
    a = write_csv(tmp_path / "a.csv", GOOD_ROWS)
    b = write_csv(tmp_path / "b.csv", [GOOD_ROWS[0], "2024-01-04,AAPL,182.15,183.09,180.88,181.91,71983600"])

    result = FilePriceProvider([a, b], xnys, "US_EQ").prices(year_2024)

    assert result.frame.height == 4  # 3 from a, 1 from b
    assert sorted(result.quarantine.select("source_file", "line_number", "reason").rows()) == [
        (str(a), 2, "duplicate key"),
        (str(b), 2, "duplicate key"),
    ]
    assert f"also in {b} line 2" in result.quarantine.filter(pl.col("source_file") == str(a))["value"][0]


def test_load_with_unknown_ticker_and_master_quarantines_row(tmp_path, xnys, year_2024):
    path = write_csv(tmp_path / "prices.csv", [*GOOD_ROWS, "2024-01-04,NVDA,47.77,48.50,47.51,47.99,376358000"])
    master = pl.DataFrame({"ticker": ["AAPL", "MSFT"]})

    result = FilePriceProvider(path, xnys, "US_EQ", instrument_master=master).prices(year_2024)

    assert result.frame.height == 4
    assert result.quarantine.select("line_number", "reason", "field", "value").rows() == [
        (6, "unknown ticker", "ticker", "NVDA")
    ]


def test_load_with_row_breaking_two_rules_quarantines_it_once_per_reason(tmp_path, xnys, year_2024):
    path = write_csv(tmp_path / "prices.csv", ["2024-01-06,AAPL,182.15,183.09,180.88,-3,71983600"])

    result = FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    assert result.frame.height == 0
    assert sorted(result.quarantine["reason"].to_list()) == ["non-positive close", "not a session"]
    assert result.quarantine["line_number"].unique().to_list() == [2]


def test_load_with_many_kinds_of_bad_rows_accounts_for_every_input_row(tmp_path, xnys, year_2024):
    # Arrange: 4 good rows, one bad row of each kind (each its own ticker, so they don't
    # collide as duplicates), one duplicated pair with a blank line between the copies.
    bad = [p.values[0].replace(",AAPL,", f",X{i},") for i, p in enumerate(BAD_ROWS)]
    dup = "2024-01-05,AAPL,182.15,183.09,180.88,181.91,71983600"
    rows = [*GOOD_ROWS, *bad, dup, "", dup]
    path = write_csv(tmp_path / "prices.csv", rows)
    data_rows = len(rows) - 1  # the blank line is not a row

    # Act
    result = FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    # Assert
    quarantined_lines = result.quarantine["line_number"].n_unique()
    assert result.frame.height == len(GOOD_ROWS)
    assert result.frame.height + quarantined_lines == data_rows
    # The duplicate after the blank line keeps its true line number.
    assert result.quarantine.filter(pl.col("reason") == "duplicate key")["line_number"].to_list() == [
        len(rows) - 1,
        len(rows) + 1,
    ]


# ------------------------------------------------------------------ sessions
def test_prices_with_subset_of_sessions_returns_only_those_rows_and_nearby_rejections(tmp_path, xnys):
    # Arrange: rows over three sessions, a bad row on each of Jan 2 and Jan 4, one undated row.
    rows = [
        *GOOD_ROWS,
        "2024-01-04,AAPL,182.15,183.09,180.88,181.91,71983600",
        "2024-01-02,NVDA,49.24,49.30,47.59,0,411254000",
        "2024-01-04,MSFT,370.67,373.10,367.17,-1,20901500",
        "not-a-date,AAPL,182.15,183.09,180.88,181.91,71983600",
    ]
    provider = FilePriceProvider(write_csv(tmp_path / "prices.csv", rows), xnys, "US_EQ")

    # Act
    result = provider.prices([date(2024, 1, 3), date(2024, 1, 4)])

    # Assert
    assert sorted(set(result.frame["session_date"].to_list())) == [date(2024, 1, 3), date(2024, 1, 4)]
    assert result.frame.height == 3
    assert result.quarantine.select("line_number", "reason").rows() == [
        (8, "non-positive close"),
        (9, "unparseable date"),
    ]


def test_prices_with_no_sessions_returns_empty_frames(tmp_path, xnys):
    provider = FilePriceProvider(write_csv(tmp_path / "prices.csv", GOOD_ROWS), xnys, "US_EQ")

    result = provider.prices([])

    assert result.frame.height == 0
    assert result.frame.schema == provider_schema("prices_daily")
    assert result.quarantine.height == 0


def test_prices_with_file_changed_on_disk_reads_new_content(tmp_path, xnys, year_2024):
    path = write_csv(tmp_path / "prices.csv", GOOD_ROWS[:2])
    provider = FilePriceProvider(path, xnys, "US_EQ")
    assert provider.prices(year_2024).frame.height == 2

    write_csv(path, GOOD_ROWS)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))

    assert provider.prices(year_2024).frame.height == 4


# ------------------------------------------------------------------ file-level problems
@pytest.mark.parametrize("missing", ["date", "ticker", "close"])
def test_load_with_missing_required_column_raises_naming_file_and_column(tmp_path, xnys, year_2024, missing):
    columns = HEADER.split(",")
    keep = [i for i, c in enumerate(columns) if c != missing]
    header = ",".join(columns[i] for i in keep)
    rows = [",".join(r.split(",")[i] for i in keep) for r in GOOD_ROWS]
    path = write_csv(tmp_path / "prices.csv", rows, header)

    with pytest.raises(DataValidationError) as excinfo:
        FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    assert str(path) in str(excinfo.value)
    assert f"missing required column(s) {missing}" in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("prices.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("prices.csv", b"", "file is empty"),
        ("prices.parquet", b"this is not parquet", "cannot read .parquet file"),
    ],
)
def test_load_with_unusable_file_raises_naming_the_file(tmp_path, xnys, year_2024, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DataValidationError, match="prices") as excinfo:
        FilePriceProvider(path, xnys, "US_EQ").prices(year_2024)

    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


def test_load_with_missing_file_raises_data_validation_error(tmp_path, xnys, year_2024):
    with pytest.raises(DataValidationError, match="not found"):
        FilePriceProvider(tmp_path / "absent.csv", xnys, "US_EQ").prices(year_2024)


def test_load_with_header_only_csv_returns_no_rows(tmp_path, xnys, year_2024):
    result = FilePriceProvider(write_csv(tmp_path / "prices.csv", []), xnys, "US_EQ").prices(year_2024)

    assert result.frame.height == 0
    assert result.quarantine.height == 0


# ------------------------------------------------------------------ reference data
def test_reference_with_master_file_builds_instruments_and_issuers(tmp_path, xnys, year_2024):
    # Arrange
    master = tmp_path / "master.csv"
    master.write_text(
        "Ticker,Name,Sector,Industry,Currency,Shares_Outstanding,Lot_Size,Listing_Date,Issuer_Name,Country\n"
        "AAPL,Apple Inc.,Information Technology,Consumer Electronics,USD,15441880000,1,1980-12-12,Apple Inc.,US\n"
        "MSFT,Microsoft Corp.,Information Technology,Software,,7432310000,,1986-03-13,,US\n"
    )
    prices = write_csv(tmp_path / "prices.csv", GOOD_ROWS)
    provider = FilePriceProvider(prices, xnys, "US_EQ", instrument_master=master)

    # Act
    reference = provider.reference()

    # Assert
    assert reference.instruments.schema == provider_schema("instruments")
    assert reference.issuers.schema == provider_schema("issuers")
    aapl = reference.instruments.filter(pl.col("ticker") == "AAPL").row(0, named=True)
    assert aapl == {
        "instrument_id": "AAPL",
        "issuer_id": "AAPL",
        "market_id": "US_EQ",
        "ticker": "AAPL",
        "name": "Apple Inc.",
        "asset_class": "EQUITY",
        "currency": "USD",
        "sector": "Information Technology",
        "industry": "Consumer Electronics",
        "listing_date": date(1980, 12, 12),
        "delisting_date": None,
        "shares_outstanding": 15441880000.0,
        "lot_size": 1,
        "status": "ACTIVE",
    }
    msft = reference.instruments.filter(pl.col("ticker") == "MSFT").row(0, named=True)
    assert (msft["currency"], msft["lot_size"], msft["industry"]) == ("USD", 1, "Software")
    assert reference.issuers.sort("issuer_id").select("issuer_id", "name", "sector", "country").rows() == [
        ("AAPL", "Apple Inc.", "Information Technology", "US"),
        ("MSFT", "Microsoft Corp.", "Information Technology", "US"),
    ]


def test_prices_with_master_instrument_ids_maps_tickers_and_currency(tmp_path, xnys, year_2024):
    master = pl.DataFrame(
        {"ticker": ["AAPL", "MSFT"], "instrument_id": ["US0378331005", "US5949181045"], "currency": ["USD", None]}
    )
    prices = write_csv(tmp_path / "prices.csv", GOOD_ROWS)

    frame = FilePriceProvider(prices, xnys, "US_EQ", currency="CAD", instrument_master=master).prices(year_2024).frame

    assert sorted(set(frame.select("instrument_id", "currency").rows())) == [
        ("US0378331005", "USD"),
        ("US5949181045", "CAD"),
    ]


def test_reference_without_master_derives_one_instrument_per_ticker_seen(tmp_path, xnys):
    provider = FilePriceProvider(write_csv(tmp_path / "prices.csv", GOOD_ROWS), xnys, "US_EQ")

    reference = provider.reference()

    assert reference.instruments.select("instrument_id", "issuer_id", "ticker", "asset_class", "lot_size", "status").rows() == [
        ("AAPL", "AAPL", "AAPL", "EQUITY", 1, "ACTIVE"),
        ("MSFT", "MSFT", "MSFT", "EQUITY", 1, "ACTIVE"),
    ]
    assert reference.issuers["issuer_id"].to_list() == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    ("master_csv", "message"),
    [
        ("name\nApple\n", "no 'ticker' column"),
        ("ticker,lot_size\nAAPL,1\nMSFT,ten\n", "line 3: field 'lot_size' must be Int32, was 'ten'"),
        ("ticker\nAAPL\nAAPL\n", "ticker 'AAPL' appears more than once"),
    ],
)
def test_reference_with_bad_master_raises_naming_line_and_field(tmp_path, xnys, master_csv, message):
    master = tmp_path / "master.csv"
    master.write_text(master_csv)
    provider = FilePriceProvider(write_csv(tmp_path / "prices.csv", GOOD_ROWS), xnys, "US_EQ", instrument_master=master)

    with pytest.raises(DataValidationError) as excinfo:
        provider.reference()

    assert str(master) in str(excinfo.value)
    assert message in str(excinfo.value)


# ------------------------------------------------------------------ shared validation
def test_validate_with_typed_frame_and_line_numbers_splits_valid_and_quarantine(xnys):
    frame = pl.DataFrame(
        {
            "Date": ["2024-01-02 00:00:00-05:00", "2024-01-03", "20240104"],
            "Symbol": ["AAPL", "AAPL", "AAPL"],
            "Close": [185.64, float("nan"), 181.91],
        }
    )

    valid, quarantine = validate_price_rows(frame, "memory", xnys, "US_EQ", line_numbers=[10, 11, 12])

    assert valid.select("session_date", "line_number").rows() == [(date(2024, 1, 2), 10), (date(2024, 1, 4), 12)]
    assert quarantine.select("line_number", "reason", "value").rows() == [(11, "missing close", "NaN")]
    assert json.loads(quarantine["raw_row"][0])["Close"] == "NaN"


def test_price_row_schema_with_parsed_frame_is_a_pandera_schema_that_flags_rules(xnys):
    schema = price_row_schema(sessions=[date(2024, 1, 2)], known_tickers=["AAPL"])
    has = {f"_has_{c}": [True] for c in ("date", "ticker", "close")}
    has |= {f"_has_{c}": [False] for c in ("open", "high", "low", "adjusted_close", "volume")}
    frame = pl.DataFrame(
        {
            "session_date": [date(2024, 1, 3)],
            "ticker": ["MSFT"],
            **{c: pl.Series([None], dtype=pl.Float64) for c in ("open", "high", "low", "adjusted_close", "volume")},
            "close": [-1.0],
            **has,
        }
    )

    with pytest.raises(pa.errors.SchemaErrors) as excinfo:
        schema.validate(frame, lazy=True)

    assert set(excinfo.value.failure_cases["check"].to_list()) == {"non-positive close", "not a session", "unknown ticker"}


def test_load_with_100k_rows_loads_every_good_row(tmp_path, xnys):
    # Arrange: 400 tickers x 250 sessions of 2023, every 1000th row with a negative close.
    sessions = xnys.sessions("2023-01-01", "2023-12-31")[:250]
    tickers = [f"T{i:03d}" for i in range(400)]
    frame = (
        pl.DataFrame({"date": sessions})
        .join(pl.DataFrame({"ticker": tickers}), how="cross")
        .with_row_index("i")
        .with_columns(
            close=pl.when(pl.col("i") % 1000 == 999).then(-1.0).otherwise(10.0 + (pl.col("i") % 97)),
            volume=pl.col("i").cast(pl.Float64),
        )
        .with_columns(open=pl.col("close").abs(), high=pl.col("close").abs() * 1.01, low=pl.col("close").abs() * 0.99)
        .select("date", "ticker", "open", "high", "low", "close", "volume")
    )
    path = tmp_path / "big.csv"
    frame.write_csv(path)

    # Act
    result = FilePriceProvider(path, xnys, "US_EQ").prices(sessions)

    # Assert
    assert frame.height == 100_000
    assert result.frame.height == 99_900
    assert result.quarantine.height == 100
    assert set(result.quarantine["reason"].to_list()) == {"non-positive close"}
