"""``MarketPanel``: each table's values land at their (session, instrument) cell, and
``load_market_panel`` reads exactly one market's rows up to the last session, on both backends."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import polars as pl
import pytest

from prometheus_lib.market_state import MarketPanel, load_market_panel
from prometheus_lib.market_state.panel import INSTRUMENT_ARRAYS, MARKET_ARRAYS
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.warehouse import Warehouse

US, EU = "US_EQ", "EU_EQ"
# Five consecutive XNYS sessions, and the one after them.
SESSIONS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 8)]
AFTER = date(2024, 1, 9)
INGESTED_AT = datetime(2024, 1, 10, 22, 0, tzinfo=timezone.utc)

# Ticker -> (row of its first price, sector). Given out of order: columns are sorted by id.
LISTINGS = {"CCC": (3, "Energy"), "AAA": (0, "Tech"), "BBB": (0, None)}
COLUMN = {"AAA": 0, "BBB": 1, "CCC": 2}
# (table, row, ticker) without a row, and (table, row, ticker) whose row has nulls.
MISSING = {("returns_daily", 2, "BBB"), ("volatility_daily", 0, "AAA"), ("instrument_factors_daily", 4, "BBB")}
NULLS = {("returns_daily", 1, "AAA")}
MISSING_MARKET_ROWS = {("factors_daily", 1), ("correlation_panels", 4)}

# Each array's value at (row r, column c) is BASE + 0.01 r + 0.001 c (+ 0.5 on EU_EQ): unique per cell.
BASE = {
    "close": 100.0, "volume": 5000.0, "log_return": 0.02, "vol_21": 0.21, "vol_63": 0.63, "vol_ewma": 0.33,
    "downside_vol_63": 0.44, "beta": 1.1, "residual_vol": 0.15, "market_return": 0.003, "avg_correlation": 0.25,
}


def value(name: str, r: int, c: int = 0, market: str = US) -> float:
    return BASE[name] + 0.01 * r + 0.001 * c + (0.5 if market == EU else 0.0)


def frames(market: str, sessions: list[date], listings: dict[str, tuple[int, str | None]] = LISTINGS,
           ) -> dict[str, pl.DataFrame]:
    """Full-schema frames of every table the panel reads (rows in reverse order), and ``instruments``."""
    rows: dict[str, list[dict]] = {t: [] for t in (*{t for t, _ in INSTRUMENT_ARRAYS.values()},
                                                   "factors_daily", "correlation_panels")}
    ids = sorted(listings)
    for r, s in enumerate(sessions):
        for ticker, (first, _) in listings.items():
            if r < first:
                continue
            c = ids.index(ticker)
            iid = f"{market}:{ticker}"
            v = {name: value(name, r, c, market) for name in INSTRUMENT_ARRAYS}
            if ("returns_daily", r, ticker) in NULLS:
                v["log_return"] = None
            key = {"instrument_id": iid, "session_date": s, "market_id": market}
            rows["prices_daily"].append({**key, "close": v["close"], "volume": v["volume"], "open": 1.0,
                                         "source": "test", "ingested_at": INGESTED_AT})
            if ("returns_daily", r, ticker) not in MISSING:
                rows["returns_daily"].append({**key, "return_log": v["log_return"], "return_simple": 9.0})
            if ("volatility_daily", r, ticker) not in MISSING:
                rows["volatility_daily"].append({**key, "vol_21d": v["vol_21"], "vol_63d": v["vol_63"],
                                                 "vol_ewma": v["vol_ewma"], "downside_vol_63d": v["downside_vol_63"],
                                                 "parkinson_vol_21d": 9.0})
            if ("instrument_factors_daily", r, ticker) not in MISSING:
                rows["instrument_factors_daily"].append({**key, "factor_id": "MKT", "beta": v["beta"],
                                                         "residual_vol": v["residual_vol"]})
            # Another factor's exposure, on every cell: never read.
            rows["instrument_factors_daily"].append({**key, "factor_id": "SMB", "beta": -7.0, "residual_vol": -7.0})
        day = {"session_date": s, "market_id": market}
        if ("factors_daily", r) not in MISSING_MARKET_ROWS:
            rows["factors_daily"].append({**day, "factor_id": "MKT", "factor_return": value("market_return", r, 0, market)})
        rows["factors_daily"].append({**day, "factor_id": "SMB", "factor_return": -7.0})
        if ("correlation_panels", r) not in MISSING_MARKET_ROWS:
            rows["correlation_panels"].append({**day, "panel_id": "MARKET_AVG", "entity_a": "ALL", "entity_b": "ALL",
                                               "window_sessions": 63, "correlation": value("avg_correlation", r, 0, market)})
        rows["correlation_panels"].append({**day, "panel_id": "SECTOR_AVG", "entity_a": "Tech", "entity_b": "Tech",
                                           "window_sessions": 63, "correlation": -0.7})
        rows["correlation_panels"].append({**day, "panel_id": "PAIR", "entity_a": f"{market}:AAA",
                                           "entity_b": f"{market}:BBB", "window_sessions": 63, "correlation": -0.8})
    out = {t: pl.DataFrame(list(reversed(rs)), schema=get_table(t).polars_schema) for t, rs in rows.items()}
    out["instruments"] = pl.DataFrame(
        [{"instrument_id": f"{market}:{t}", "market_id": market, "ticker": t, "asset_class": "EQUITY",
          "currency": "USD", "lot_size": 1, "status": "ACTIVE", "sector": sector}
         for t, (_, sector) in {**listings, "NOPX": (99, "Utilities")}.items()],  # NOPX: never priced
        schema=get_table("instruments").polars_schema)
    return out


def sectors_of(instruments: pl.DataFrame) -> dict[str, str | None]:
    return dict(zip(instruments["instrument_id"].to_list(), instruments["sector"].to_list()))


def build(sessions: list[date] = SESSIONS) -> MarketPanel:
    fr = frames(US, sessions)
    return MarketPanel.from_frames(US, "US", sessions, fr, sectors_of(fr["instruments"]))


def assert_same_panel(actual: MarketPanel, expected: MarketPanel) -> None:
    assert (actual.market_id, actual.region) == (expected.market_id, expected.region)
    np.testing.assert_array_equal(actual.sessions, expected.sessions)
    assert actual.sessions.dtype == expected.sessions.dtype
    assert actual.instrument_ids == expected.instrument_ids
    assert actual.sectors == expected.sectors
    for name in (*INSTRUMENT_ARRAYS, *MARKET_ARRAYS):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)


# ------------------------------------------------------------------ from_frames
def test_from_frames_places_every_instrument_value_at_its_session_and_instrument_cell() -> None:
    # Arrange
    expected = {name: np.full((5, 3), np.nan) for name in INSTRUMENT_ARRAYS}
    table_of = {name: table for name, (table, _) in INSTRUMENT_ARRAYS.items()}
    for ticker, (first, _) in LISTINGS.items():
        c = COLUMN[ticker]
        for r in range(first, 5):
            for name in INSTRUMENT_ARRAYS:
                if (table_of[name], r, ticker) not in MISSING | NULLS:
                    expected[name][r, c] = value(name, r, c)

    # Act
    panel = build()

    # Assert
    assert panel.instrument_ids == (f"{US}:AAA", f"{US}:BBB", f"{US}:CCC")
    assert panel.sectors == ("Tech", None, "Energy")
    assert panel.session_dates() == SESSIONS
    for name in INSTRUMENT_ARRAYS:
        assert getattr(panel, name).dtype == np.float64
        np.testing.assert_array_equal(getattr(panel, name), expected[name], err_msg=name)


def test_from_frames_leaves_cells_without_a_row_or_with_a_null_nan() -> None:
    # Arrange / Act
    panel = build()

    # Assert
    assert np.isnan(panel.close[:3, COLUMN["CCC"]]).all()          # listed late
    assert panel.close[3, COLUMN["CCC"]] == value("close", 3, 2)
    assert np.isnan(panel.log_return[2, COLUMN["BBB"]])             # no returns row
    assert panel.close[2, COLUMN["BBB"]] == value("close", 2, 1)
    assert np.isnan(panel.log_return[1, COLUMN["AAA"]])             # a row with a null return
    assert np.isnan(panel.vol_21[0, COLUMN["AAA"]]) and np.isnan(panel.downside_vol_63[0, COLUMN["AAA"]])
    assert np.isnan(panel.beta[4, COLUMN["BBB"]]) and np.isnan(panel.residual_vol[4, COLUMN["BBB"]])


def test_from_frames_reads_only_the_mkt_factor_exposures() -> None:
    # Arrange / Act
    panel = build()

    # Assert: no SMB value (-7) anywhere, and the MKT values where MKT has rows
    assert not (panel.beta == -7.0).any() and not (panel.residual_vol == -7.0).any()
    assert panel.beta[0, COLUMN["BBB"]] == value("beta", 0, 1)
    assert panel.residual_vol[4, COLUMN["AAA"]] == value("residual_vol", 4, 0)


def test_from_frames_takes_market_return_from_mkt_and_avg_correlation_from_market_avg() -> None:
    # Arrange
    market_return = np.array([value("market_return", r) for r in range(5)])
    market_return[1] = np.nan
    avg_correlation = np.array([value("avg_correlation", r) for r in range(5)])
    avg_correlation[4] = np.nan

    # Act
    panel = build()

    # Assert
    assert panel.market_return.shape == (5,) and panel.avg_correlation.shape == (5,)
    np.testing.assert_array_equal(panel.market_return, market_return)
    np.testing.assert_array_equal(panel.avg_correlation, avg_correlation)


def test_from_frames_keeps_sessions_without_data_as_nan_rows() -> None:
    # Arrange: a session before any row
    sessions = [date(2023, 12, 29), *SESSIONS]
    fr = frames(US, SESSIONS)

    # Act
    panel = MarketPanel.from_frames(US, "US", list(reversed(sessions)), fr)

    # Assert
    assert panel.session_dates() == sessions
    assert all(np.isnan(getattr(panel, a)[0]).all() for a in (*INSTRUMENT_ARRAYS, *MARKET_ARRAYS))
    assert panel.close[1, 0] == value("close", 0, 0)
    assert panel.sectors == (None, None, None)


def test_from_frames_without_prices_has_no_instruments_and_nan_market_arrays_for_missing_tables() -> None:
    # Arrange / Act
    panel = MarketPanel.from_frames(US, "US", SESSIONS, {})

    # Assert
    assert panel.instrument_ids == () and panel.close.shape == (5, 0)
    assert np.isnan(panel.market_return).all() and np.isnan(panel.avg_correlation).all()


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("name", ["close", "beta", "residual_vol"])
def test_post_init_with_an_instrument_array_of_wrong_shape_raises_value_error(name: str) -> None:
    # Arrange
    panel = build()

    # Act / Assert
    with pytest.raises(ValueError, match=rf"MarketPanel\.{name} has shape \(5, 2\), expected \(5, 3\)"):
        panel.replace(**{name: np.zeros((5, 2))})


@pytest.mark.parametrize("name", MARKET_ARRAYS)
def test_post_init_with_a_market_array_of_wrong_shape_raises_value_error(name: str) -> None:
    # Arrange
    panel = build()

    # Act / Assert
    with pytest.raises(ValueError, match=rf"MarketPanel\.{name} has shape \(5, 1\), expected \(5,\)"):
        panel.replace(**{name: np.zeros((5, 1))})


def test_post_init_with_wrong_number_of_sectors_or_sessions_raises_value_error() -> None:
    # Arrange
    panel = build()

    # Act / Assert
    with pytest.raises(ValueError, match=r"sectors has 2 entries, expected 3"):
        panel.replace(sectors=("Tech", None))
    with pytest.raises(ValueError, match=r"expected \(4, 3\)"):
        panel.replace(sessions=panel.sessions[:4])


# ------------------------------------------------------------------ navigation
def test_index_of_returns_the_row_of_a_session() -> None:
    # Arrange
    panel = build()

    # Act / Assert
    assert [panel.index_of(s) for s in SESSIONS] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("day", [date(2024, 1, 6), date(2023, 12, 29), AFTER])
def test_index_of_with_a_day_not_in_the_panel_raises_key_error_naming_it(day: date) -> None:
    # Arrange
    panel = build()

    # Act / Assert
    with pytest.raises(KeyError, match=str(day)):
        panel.index_of(day)


def test_rows_between_returns_the_rows_of_the_sessions_in_the_closed_range() -> None:
    # Arrange
    panel = build()

    # Act / Assert
    assert panel.rows_between(SESSIONS[1], SESSIONS[3]).tolist() == [1, 2, 3]
    assert panel.rows_between(date(2024, 1, 6), date(2024, 1, 8)).tolist() == [4]   # weekend start
    assert panel.rows_between(date(2023, 1, 1), date(2030, 1, 1)).tolist() == [0, 1, 2, 3, 4]
    assert panel.rows_between(date(2024, 1, 6), date(2024, 1, 7)).tolist() == []
    assert panel.rows_between(SESSIONS[3], SESSIONS[1]).tolist() == []


@pytest.mark.parametrize("last", [SESSIONS[4], SESSIONS[3], date(2024, 1, 6)])
def test_truncated_equals_the_panel_built_from_frames_cut_at_last(last: date) -> None:
    # Arrange
    cut = [s for s in SESSIONS if s <= last]
    expected = build(cut)

    # Act
    panel = build().truncated(last)

    # Assert
    assert_same_panel(panel, expected)


def test_truncated_before_a_late_listing_equals_the_panel_built_from_frames_cut_there() -> None:
    # Arrange: CCC has its first price at SESSIONS[3]
    expected = build(SESSIONS[:3])

    # Act
    panel = build().truncated(SESSIONS[2])

    # Assert
    assert_same_panel(panel, expected)
    assert f"{US}:CCC" not in panel.instrument_ids


def test_listed_is_true_exactly_where_the_instrument_has_a_close() -> None:
    # Arrange
    expected = np.array([[True, True, False]] * 3 + [[True, True, True]] * 2)

    # Act
    panel = build()

    # Assert
    assert panel.listed.dtype == bool
    np.testing.assert_array_equal(panel.listed, expected)
    assert (panel.n_sessions, panel.n_instruments) == (5, 3)


# ------------------------------------------------------------------ load_market_panel
def write_market(wh: Warehouse, market: str, sessions: list[date], listings: dict[str, tuple[int, str | None]]) -> None:
    for table, frame in frames(market, sessions, listings).items():
        if table == "instruments":
            wh.replace_table(table, frame, {"market_id": market})
        else:
            wh.write_partition(table, frame, sessions[0], sessions[-1], {"market_id": market})


@pytest.fixture
def loaded(warehouse: Warehouse) -> MarketPanel:
    """US_EQ's panel loaded up to SESSIONS[-1] from a warehouse that also has EU_EQ and a later session."""
    # US_EQ up to AFTER, with an instrument listed only at AFTER; EU_EQ on the same sessions.
    write_market(warehouse, US, [*SESSIONS, AFTER], {**LISTINGS, "DDD": (5, "Tech")})
    write_market(warehouse, EU, SESSIONS, {**LISTINGS, "EEE": (0, "Tech")})
    return load_market_panel(warehouse, US, "US", SESSIONS)


def test_load_market_panel_equals_from_frames_of_the_same_rows(loaded: MarketPanel) -> None:
    # Arrange
    expected = build()

    # Act: the fixture loaded it

    # Assert
    assert_same_panel(loaded, expected)


def test_load_market_panel_reads_nothing_after_the_last_session_nor_of_another_market(loaded: MarketPanel) -> None:
    # Arrange
    us_ids = (f"{US}:AAA", f"{US}:BBB", f"{US}:CCC")

    # Act: the fixture loaded it

    # Assert
    assert loaded.instrument_ids == us_ids               # no DDD (priced after), no EU_EQ ids
    assert loaded.session_dates() == SESSIONS
    assert loaded.market_return[0] == value("market_return", 0)   # not EU_EQ's MKT return
    assert np.isnan(loaded.market_return[1])                     # nor EU_EQ's row filling the gap
    assert np.isnan(loaded.avg_correlation[4])
    assert loaded.sectors == ("Tech", None, "Energy")
