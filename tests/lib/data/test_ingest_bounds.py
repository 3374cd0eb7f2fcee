"""Bounds on input values and the validate-before-replace rules of ingestion (issue: reliability
findings 1, 6 and the quarantine key of 7), at library level.

Each test names the finding it pins down; each failed on the code before the fix.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.config.models import DataLimitsConfig, MarketConfig
from prometheus_lib.data import file_import, quality
from prometheus_lib.data.file_import import FilePriceProvider, load_instrument_master, read_price_file
from prometheus_lib.data.ingestion import (
    PriceIngest,
    StoredRange,
    gate_prices,
    gate_reference,
    market_limits,
    prune_orphaned_panels,
    stored_range,
)
from prometheus_lib.data.providers import InputLimits, stamp
from prometheus_lib.errors import DataValidationError, WarehouseError

HEADER = b"date,ticker,open,high,low,close,volume"
GOOD = [
    b"2024-01-02,AAPL,187.15,188.44,183.89,185.64,82488700",
    b"2024-01-02,MSFT,373.86,375.90,366.77,370.87,25258600",
    b"2024-01-03,AAPL,184.22,185.88,183.43,184.25,58414500",
    b"2024-01-03,MSFT,369.01,373.26,368.51,370.60,23083500",
]
NOW = datetime(2024, 2, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def xnys() -> TradingCalendar:
    return TradingCalendar("XNYS")


@pytest.fixture(scope="module")
def january(xnys: TradingCalendar) -> list[date]:
    return xnys.sessions("2024-01-01", "2024-01-31")


def write(path: Path, lines: list[bytes], header: bytes = HEADER) -> Path:
    path.write_bytes(b"\n".join([header, *lines]) + b"\n")
    return path


def load(tmp_path: Path, lines: list[bytes], calendar: TradingCalendar, sessions, **kwargs):
    """Write ``lines`` (a bad one among the good ones is line 4) and load them through the provider."""
    path = write(tmp_path / "prices.csv", lines)
    return path, FilePriceProvider(path, calendar, "US_EQ", **kwargs).prices(sessions)


def rejected(result) -> dict[int, dict[str, dict]]:
    out: dict[int, dict[str, dict]] = {}
    for row in result.quarantine.iter_rows(named=True):
        out.setdefault(row["line_number"], {})[row["reason"]] = row
    return out


# ------------------------------------------------------------------ finding 6: prices out of bounds
@pytest.mark.parametrize(
    ("close", "reason"),
    [
        pytest.param(b"1e308", "close outside plausible range", id="1e308"),
        pytest.param(b"1e-300", "close outside plausible range", id="1e-300"),
        pytest.param(b"1e309", "non-finite close", id="overflow-to-inf"),
        pytest.param(b"inf", "non-finite close", id="inf"),
        pytest.param(b"-inf", "non-finite close", id="minus-inf"),
        pytest.param(b"NaN", "missing close", id="nan"),
        pytest.param(b"-3", "non-positive close", id="negative"),
    ],
)
def test_load_with_implausible_close_quarantines_the_line_and_loads_the_rest(tmp_path, xnys, january, close, reason):
    # Arrange: line 4 carries the bad close; its open/high/low are fine
    bad = b"2024-01-04,AAPL,182.15,183.09,180.88," + close + b",71983600"

    # Act
    _, result = load(tmp_path, [*GOOD[:2], bad, *GOOD[2:]], xnys, january)

    # Assert: not loaded, quarantined with line, field and reason; the other lines load
    assert result.frame.height == 4
    assert date(2024, 1, 4) not in result.frame["session_date"].to_list()
    by_line = rejected(result)
    assert set(by_line) == {4}
    row = by_line[4][reason]
    assert (row["field"], row["session_date"]) == ("close", date(2024, 1, 4))
    assert row["value"].startswith(close.decode())
    # a value the range rejects is not compared again under an ordering rule
    assert not any(r.startswith(("high <", "low >")) for r in by_line[4])


def test_load_with_configured_price_range_quarantines_prices_outside_it(tmp_path, xnys, january):
    limits = InputLimits(min_price=1.0, max_price=1_000.0)
    lines = [*GOOD, b"2024-01-04,PENNY,0.5,0.5,0.5,0.5,10", b"2024-01-04,BRK,1500,1500,1500,1500,10"]

    _, result = load(tmp_path, lines, xnys, january, limits=limits)

    assert result.frame.height == 4
    reasons = {(r["line_number"], r["reason"]) for r in result.quarantine.iter_rows(named=True)}
    assert (6, "close outside plausible range") in reasons and (7, "close outside plausible range") in reasons
    assert "plausible 1..1000" in result.quarantine["value"][0]


# ------------------------------------------------------------------ finding 6: identifiers
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b'2024-01-04,"AA\r\nPL",182.15,183.09,180.88,181.91,71983600', "control character in ticker",
                     id="crlf-in-quoted-ticker"),
        pytest.param(b'2024-01-04,"AA\nPL",182.15,183.09,180.88,181.91,71983600', "control character in ticker",
                     id="lf-in-quoted-ticker"),
        pytest.param(b"2024-01-04,AA\x00PL,182.15,183.09,180.88,181.91,71983600", "control character in ticker",
                     id="nul-in-ticker"),
        pytest.param(b"2024-01-04,AA\tPL,182.15,183.09,180.88,181.91,71983600", "control character in ticker",
                     id="tab-in-ticker"),
        pytest.param(b"2024-01-04," + b"X" * 33 + b",182.15,183.09,180.88,181.91,71983600", "ticker too long",
                     id="33-character-ticker"),
    ],
)
def test_load_with_bad_identifier_quarantines_the_line(tmp_path, xnys, january, line, reason):
    # Arrange: the bad line is line 4; a quoted CR/LF makes it span two physical lines
    lines = [*GOOD[:2], line, *GOOD[2:]]

    # Act
    _, result = load(tmp_path, lines, xnys, january)

    # Assert: quarantined under its first line's number, never loaded; the next line keeps its number
    assert result.frame.height == 4
    assert sorted(result.frame["instrument_id"].unique().to_list()) == ["AAPL", "MSFT"]
    by_line = rejected(result)
    assert set(by_line) == {4}
    assert by_line[4][reason]["field"] == "ticker"
    assert by_line[4][reason]["session_date"] == date(2024, 1, 4)


def test_load_with_quoted_ticker_spanning_lines_keeps_later_line_numbers(tmp_path, xnys, january):
    lines = [GOOD[0], b'2024-01-04,"AA\r\nPL",1,1,1,1,1', b"2024-01-05,AAPL,1,1,1,1,1,9"]

    _, result = load(tmp_path, lines, xnys, january)

    assert {(r["line_number"], r["reason"]) for r in result.quarantine.iter_rows(named=True)} == {
        (3, "control character in ticker"),
        (5, "wrong number of fields"),  # the physical line 5, after the two lines of record 3
    }


def test_master_with_control_character_in_identifier_raises_naming_the_line(tmp_path):
    master = tmp_path / "master.csv"
    master.write_bytes(b'ticker,name\nAAPL,Apple\n"MS\r\nFT",Microsoft\n')

    with pytest.raises(DataValidationError, match=r"line 3: control character in ticker"):
        load_instrument_master(master)


# ------------------------------------------------------------------ finding 6: malformed lines
def test_load_with_oversize_line_quarantines_it_by_number_without_reading_it_whole(tmp_path, xnys, january, monkeypatch):
    # Arrange: a 3 MB ticker cell on line 4; read blocks of 64 KiB so that holding the line
    # would show in the peak of Python allocations
    monkeypatch.setattr(file_import, "_READ_BLOCK", 1 << 16)
    huge = b"2024-01-04," + b"A" * 3_000_000 + b",182.15,183.09,180.88,181.91,71983600"
    path = write(tmp_path / "prices.csv", [*GOOD[:2], huge, *GOOD[2:]])

    # Act
    tracemalloc.start()
    try:
        frame, lines, rejects = read_price_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Assert
    assert frame.height == 4 and lines.to_list() == [2, 3, 5, 6]
    [reject] = rejects
    assert (reject.line_number, reject.reason, reject.field) == (4, "line too long", "line")
    assert reject.value == f"{len(huge):,} bytes, limit 65,536"
    assert reject.date_text == "2024-01-04"
    assert len(reject.text) < 1_000  # the quarantine row shows the start of the line, clipped
    assert peak < 1_000_000  # the 3 MB line was never held


def test_load_with_oversize_line_lands_in_its_sessions_quarantine(tmp_path, xnys, january):
    huge = b"2024-01-04,AAPL,1,1,1," + b"9" * 70_000 + b",1"
    _, result = load(tmp_path, [*GOOD[:2], huge, *GOOD[2:]], xnys, january)

    [row] = result.quarantine.iter_rows(named=True)
    assert (row["line_number"], row["reason"], row["session_date"]) == (4, "line too long", date(2024, 1, 4))
    assert len(row["raw_row"]) < 1_000


@pytest.mark.parametrize(
    ("line", "value_part"),
    [
        pytest.param(b"2024-01-04,AAPL,182.15,183.09,180.88,181.91,71983600,extra", "8 fields, the header has 7",
                     id="extra-field"),
        pytest.param(b"2024-01-04,AAPL,182.15,183.09,180.88", "5 fields, the header has 7", id="missing-fields"),
        pytest.param(b"2024-01-04,AAPL,182,15,183,09,180,88,181,91,71983600", "decimal comma", id="decimal-comma"),
    ],
)
def test_load_with_ragged_line_quarantines_that_line_and_loads_the_rest(tmp_path, xnys, january, line, value_part):
    _, result = load(tmp_path, [*GOOD[:2], line, *GOOD[2:]], xnys, january)

    assert result.frame.height == 4
    [row] = result.quarantine.iter_rows(named=True)
    assert (row["line_number"], row["reason"], row["field"]) == (4, "wrong number of fields", "line")
    assert value_part in row["value"]
    assert row["session_date"] == date(2024, 1, 4)
    assert json.loads(row["raw_row"])["line"] == line.decode()


def test_load_with_quoted_decimal_comma_names_it(tmp_path, xnys, january):
    _, result = load(tmp_path, [*GOOD[:2], b'2024-01-04,AAPL,182.15,183.09,180.88,"181,91",1', *GOOD[2:]],
                     xnys, january)

    assert result.frame.height == 4
    assert result.quarantine.select("line_number", "reason", "field", "value").rows() == [
        (4, "close has a decimal comma", "close", "181,91")
    ]


def test_load_with_latin1_byte_quarantines_the_line_naming_line_and_byte_offset(tmp_path, xnys, january):
    # Arrange: "Société" in Latin-1 on line 4; the byte 0xE9 sits at a known file offset
    bad = b"2024-01-04,SOCI\xc9T\xc9,1,1,1,1,1"
    path, result = load(tmp_path, [*GOOD[:2], bad, *GOOD[2:]], xnys, january)
    offset = path.read_bytes().index(b"\xc9")

    # Assert: that line only; the message names the line and the byte offset
    assert result.frame.height == 4
    [row] = result.quarantine.iter_rows(named=True)
    assert (row["line_number"], row["reason"], row["field"]) == (4, "invalid UTF-8", "ticker")
    assert f"byte 0xC9 at byte offset {offset:,}" in row["value"] and "line 4" in row["value"]


def test_load_with_latin1_byte_in_header_raises_naming_line_and_offset(tmp_path, xnys, january):
    path = write(tmp_path / "prices.csv", GOOD, header=b"date,ticker,close,volum\xe9")

    with pytest.raises(DataValidationError, match=r"line 1: the header is not valid UTF-8: byte 0xE9 at byte offset 23"):
        FilePriceProvider(path, xnys, "US_EQ").prices(january)


def test_load_with_unterminated_quote_quarantines_from_its_line(tmp_path, xnys, january):
    _, result = load(tmp_path, [*GOOD, b'2024-01-04,"AAPL,1,1,1,1,1'], xnys, january)

    assert result.frame.height == 4
    assert result.quarantine.select("line_number", "reason").rows() == [(6, "unterminated quote")]


def test_load_with_crlf_and_bom_reads_like_lf(tmp_path, xnys, january):
    path = tmp_path / "prices.csv"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join([HEADER, *GOOD]) + b"\r\n")

    result = FilePriceProvider(path, xnys, "US_EQ").prices(january)

    assert result.frame.height == 4 and result.quarantine.height == 0


# ------------------------------------------------------------------ finding 1: validate before replacing
def _batch(frame: pl.DataFrame) -> PriceIngest:
    return PriceIngest(stamp(frame, "prices_daily", NOW), stamp(pl.DataFrame(schema=file_import.QUARANTINE_SCHEMA),
                       "quarantine_rows", NOW), "file", ())


def _prices(tmp_path, xnys, lines: list[bytes]) -> pl.DataFrame:
    path = write(tmp_path / "p.csv", lines)
    return FilePriceProvider(path, xnys, "US_EQ").prices(xnys.sessions("2024-01-02", "2024-01-03")).frame


def test_gate_with_empty_source_over_stored_rows_raises_naming_market_sessions_table_and_rule(tmp_path, xnys):
    # Arrange: a header-only file, where the warehouse holds 4 rows for the range
    sessions = xnys.sessions("2024-01-02", "2024-01-03")
    batch = _batch(_prices(tmp_path, xnys, []))

    # Act / Assert
    with pytest.raises(DataValidationError) as excinfo:
        gate_prices(batch, market_id="US_EQ", calendar=xnys, sessions=sessions, limits=InputLimits(),
                    stored=StoredRange(4, ("AAPL", "MSFT")))
    message = str(excinfo.value)
    for part in ("US_EQ", "prices_daily", "2 sessions 2024-01-02..2024-01-03", "rule 'not_emptied'",
                 "holds 4", "not written", "--allow-empty"):
        assert part in message


def test_gate_with_empty_source_and_allow_empty_passes(tmp_path, xnys):
    sessions = xnys.sessions("2024-01-02", "2024-01-03")

    outcomes = gate_prices(_batch(_prices(tmp_path, xnys, [])), market_id="US_EQ", calendar=xnys, sessions=sessions,
                           limits=InputLimits(), stored=StoredRange(4, ("AAPL", "MSFT")), allow_empty=True)

    assert set(outcomes) == {"not_emptied"} and outcomes["not_emptied"].passed


def test_gate_with_truncated_source_missing_an_instrument_raises(tmp_path, xnys):
    # every session is there, but MSFT (stored) vanished: a file truncated after AAPL's rows
    sessions = xnys.sessions("2024-01-02", "2024-01-03")
    batch = _batch(_prices(tmp_path, xnys, [GOOD[0], GOOD[2]]))

    with pytest.raises(DataValidationError, match=r"no prices_daily rows for 1 instrument_ids .*\(MSFT\)"):
        gate_prices(batch, market_id="US_EQ", calendar=xnys, sessions=sessions, limits=InputLimits(),
                    stored=StoredRange(4, ("AAPL", "MSFT")))


def test_gate_with_missing_session_raises_before_any_write(tmp_path, xnys):
    sessions = xnys.sessions("2024-01-02", "2024-01-04")

    with pytest.raises(DataValidationError, match=r"rule 'sessions' failed.*missing_sessions \['2024-01-04'\]"):
        gate_prices(_batch(_prices(tmp_path, xnys, GOOD)), market_id="US_EQ", calendar=xnys, sessions=sessions,
                    limits=InputLimits(), stored=StoredRange(0))


def test_gate_with_implausible_price_from_any_provider_raises(tmp_path, xnys):
    # a provider that does not quarantine (the synthetic market, a plugin) yields a 1e308 close
    sessions = xnys.sessions("2024-01-02", "2024-01-03")
    frame = _prices(tmp_path, xnys, GOOD).with_columns(
        pl.when(pl.col("instrument_id") == "MSFT").then(1e308).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.col("instrument_id") == "MSFT").then(1e308).otherwise(pl.col("high")).alias("high"),
    )

    with pytest.raises(DataValidationError, match=r"rule 'price_bounds' failed: 2 rows hold a price"):
        gate_prices(_batch(frame), market_id="US_EQ", calendar=xnys, sessions=sessions, limits=InputLimits(),
                    stored=StoredRange(0))


def test_gate_reference_with_empty_or_shrunken_master_raises_unless_allowed(tmp_path, xnys):
    empty = FilePriceProvider(write(tmp_path / "e.csv", []), xnys, "US_EQ").reference()
    only_aapl = FilePriceProvider(write(tmp_path / "a.csv", [GOOD[0]]), xnys, "US_EQ").reference()

    with pytest.raises(DataValidationError, match=r"US_EQ issuers and instruments.*yields no instruments.*holds 2"):
        gate_reference(empty, market_id="US_EQ", stored=StoredRange(2), priced=())
    with pytest.raises(DataValidationError, match=r"drops 1 instruments that still have prices \(MSFT\)"):
        gate_reference(only_aapl, market_id="US_EQ", stored=StoredRange(2), priced=("AAPL", "MSFT"))
    assert gate_reference(empty, market_id="US_EQ", stored=StoredRange(2), priced=("AAPL",), allow_empty=True).passed


def test_check_price_jumps_with_move_beyond_limit_warns(tmp_path, xnys):
    frame = _prices(tmp_path, xnys, [GOOD[0], b"2024-01-03,AAPL,500,500,500,500,1", GOOD[1], GOOD[3]])
    previous = pl.DataFrame({"instrument_id": ["MSFT"], "session_date": [date(2023, 12, 29)],
                             "adjusted_close": [100.0]})

    outcome = quality.check_price_jumps(frame, 1.5, previous)

    assert not outcome.passed and outcome.severity is quality.Severity.WARN
    jumps = {(e["instrument_id"], e["session_date"]) for e in outcome.metadata["examples"]}
    assert jumps == {("AAPL", "2024-01-03"), ("MSFT", "2024-01-02")}  # x2.69 and x3.7 from 2023-12-29


# ------------------------------------------------------------------ config
def test_data_limits_default_and_validation():
    market = MarketConfig(market_id="X_EQ", name="x", calendar="XNYS", currency="USD", asset_class="EQUITY",
                          region="US", data_limits={"max_price": 5_000})
    assert market_limits(market) == InputLimits(max_price=5_000)
    assert DataLimitsConfig().model_dump() == {"min_price": 1e-6, "max_price": 1e8, "max_daily_move": 1.5,
                                               "max_identifier_length": 32, "max_line_bytes": 65_536}
    with pytest.raises(ValueError, match="min_price"):
        DataLimitsConfig(min_price=10, max_price=1)


# ------------------------------------------------------------------ warehouse: quarantine key, orphaned panels
def _quarantine(line: int, session: date, reason: str = "non-positive close") -> pl.DataFrame:
    return stamp(pl.DataFrame(
        {"asset": ["prices_daily"], "source_file": ["p.csv"], "line_number": [line], "reason": [reason],
         "field": ["close"], "value": ["-1"], "session_date": [session], "market_id": ["US_EQ"], "raw_row": ["{}"]},
        schema=file_import.QUARANTINE_SCHEMA), "quarantine_rows", NOW)


def test_quarantine_write_with_line_moved_to_another_partition_replaces_it(warehouse):
    # Arrange: line 4 was rejected in January; the file's line 4 now holds a February date
    scope = {"market_id": "US_EQ", "asset": "prices_daily"}
    warehouse.write_partition("quarantine_rows", _quarantine(4, date(2024, 1, 3)), date(2024, 1, 2), date(2024, 1, 31),
                              scope)
    feb = _quarantine(4, date(2024, 2, 5))

    # Act: the plain write clashes on the key (the finding); the evicting write replaces the line
    with pytest.raises(WarehouseError):
        warehouse.write_partition("quarantine_rows", feb, date(2024, 2, 1), date(2024, 2, 29), scope)
    result = warehouse.write_partition("quarantine_rows", feb, date(2024, 2, 1), date(2024, 2, 29), scope,
                                       evict_on=("asset", "source_file", "line_number"))

    # Assert: exactly one row for the line, in February
    rows = warehouse.read_table("quarantine_rows").select("line_number", "session_date").rows()
    assert rows == [(4, date(2024, 2, 5))]
    assert result.rows_deleted == 1


def test_prune_orphaned_panels_deletes_rows_without_prices_in_the_range(warehouse, tmp_path, xnys):
    # Arrange: prices of AAPL on Jan 2 only; panel rows for AAPL and MSFT on Jan 2 and 3, and one
    # for another market that must stay
    prices = stamp(_prices(tmp_path, xnys, [GOOD[0]]), "prices_daily", NOW)
    warehouse.write_partition("prices_daily", prices, date(2024, 1, 2), date(2024, 1, 3), {"market_id": "US_EQ"})
    returns = pl.DataFrame({
        "instrument_id": ["AAPL", "MSFT", "AAPL", "EU1"], "market_id": ["US_EQ"] * 3 + ["EU_EQ"],
        "session_date": [date(2024, 1, 2), date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 2)],
        "return_simple": [0.01] * 4, "return_log": [0.01] * 4, "return_overnight": [0.0] * 4,
        "return_intraday": [0.0] * 4})
    factors = pl.DataFrame({"factor_id": ["MKT", "MKT"], "session_date": [date(2024, 1, 2), date(2024, 1, 3)],
                            "market_id": ["US_EQ", "US_EQ"], "factor_return": [0.0, 0.0], "n_long": [1, 1],
                            "n_short": [1, 1]})
    warehouse.write_partition("returns_daily", returns.filter(pl.col("market_id") == "US_EQ"), date(2024, 1, 2),
                              date(2024, 1, 3), {"market_id": "US_EQ"})
    warehouse.write_partition("returns_daily", returns.filter(pl.col("market_id") == "EU_EQ"), date(2024, 1, 2),
                              date(2024, 1, 3), {"market_id": "EU_EQ"})
    warehouse.write_partition("factors_daily", factors, date(2024, 1, 2), date(2024, 1, 3), {"market_id": "US_EQ"})

    # Act
    with warehouse.transaction():
        deleted = prune_orphaned_panels(warehouse, "US_EQ", date(2024, 1, 2), date(2024, 1, 3))

    # Assert
    assert deleted == {"returns_daily": 2, "factors_daily": 1}
    assert sorted(warehouse.read_table("returns_daily").select("instrument_id", "session_date").rows()) == [
        ("AAPL", date(2024, 1, 2)), ("EU1", date(2024, 1, 2))]
    assert warehouse.read_table("factors_daily")["session_date"].to_list() == [date(2024, 1, 2)]
    assert stored_range(warehouse, "prices_daily", "US_EQ", date(2024, 1, 2), date(2024, 1, 3)) == StoredRange(1, ("AAPL",))
