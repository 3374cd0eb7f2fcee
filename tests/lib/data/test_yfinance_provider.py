"""Specification of the yfinance provider against a recorded ``yfinance.download`` response."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.providers import QUARANTINE_SCHEMA, MarketDataProvider, provider_schema
from prometheus_lib.data.yfinance_provider import YFinanceProvider, yfinance_frame_to_long
from prometheus_lib.errors import ConfigError, ProviderError

FIXTURE = Path(__file__).parents[2] / "fixtures" / "yfinance" / "download_AAPL_MSFT_2024-01.json"
BAD_DAY = date(2024, 1, 17)  # the recorded MSFT row without a close


@pytest.fixture(scope="module")
def xnys() -> TradingCalendar:
    return TradingCalendar("XNYS")


@pytest.fixture(scope="module")
def january(xnys: TradingCalendar) -> list[date]:
    return xnys.sessions("2024-01-01", "2024-01-31")


def recorded_response() -> pd.DataFrame:
    """Rebuild the frame ``yfinance.download`` returned: DatetimeIndex "Date", (Ticker, Price) columns."""
    doc = json.loads(FIXTURE.read_text())
    columns = pd.MultiIndex.from_tuples([tuple(c) for c in doc["columns"]["values"]], names=doc["columns"]["names"])
    index = pd.DatetimeIndex(pd.to_datetime(doc["index"]["values"]), name=doc["index"]["name"])
    frame = pd.DataFrame(doc["data"], index=index, columns=columns, dtype="float64")
    return frame.astype({c: doc["dtypes"][c[1]] for c in columns if not frame[c].isna().any()})


def replay(frame: pd.DataFrame):
    calls: list[tuple[tuple, dict]] = []

    def download(*args, **kwargs):
        calls.append((args, kwargs))
        return frame.copy()

    download.calls = calls
    return download


def test_import_yfinance_with_dev_install_exposes_download():
    import yfinance

    assert callable(yfinance.download)


def test_recorded_response_with_fixture_has_yfinance_structure():
    frame = recorded_response()

    assert frame.index.name == "Date"
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert list(frame.columns.names) == ["Ticker", "Price"]
    assert set(frame.columns.get_level_values(0)) == {"AAPL", "MSFT"}
    assert list(frame["AAPL"].columns) == ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
    assert frame["AAPL"]["Volume"].dtype == np.int64
    assert frame["MSFT"]["Close"].isna().sum() == 1


def test_frame_to_long_with_recorded_response_returns_one_row_per_ticker_and_session(january):
    long = yfinance_frame_to_long(recorded_response())

    assert long.columns == ["date", "ticker", "open", "high", "low", "close", "adjusted_close", "volume"]
    assert long.height == 2 * len(january) == 42
    assert long.select("date", "ticker").head(2).rows() == [(date(2024, 1, 2), "AAPL"), (date(2024, 1, 2), "MSFT")]
    aapl = long.filter(pl.col("ticker") == "AAPL", pl.col("date") == date(2024, 1, 2)).row(0, named=True)
    assert (aapl["close"], aapl["adjusted_close"], aapl["volume"]) == (185.64, 184.269977, 58000000.0)


def test_frame_to_long_with_group_by_column_layout_matches_ticker_layout():
    by_ticker = recorded_response()
    by_column = by_ticker.swaplevel(0, 1, axis=1).sort_index(axis=1)

    assert yfinance_frame_to_long(by_column).equals(yfinance_frame_to_long(by_ticker))


def test_frame_to_long_with_all_nan_padding_row_drops_it_but_keeps_partial_rows():
    frame = recorded_response()
    frame.loc[pd.Timestamp("2024-01-02"), "AAPL"] = np.nan  # AAPL absent that day: yfinance pads with NaN

    long = yfinance_frame_to_long(frame)

    assert long.height == 41
    assert long.filter(pl.col("date") == date(2024, 1, 2))["ticker"].to_list() == ["MSFT"]
    partial = long.filter(pl.col("date") == BAD_DAY, pl.col("ticker") == "MSFT")
    assert partial["close"].is_nan().to_list() == [True]  # kept as sent; validation rejects it


def test_prices_with_recorded_response_quarantines_nan_close_and_loads_the_rest(xnys, january):
    # Arrange
    provider = YFinanceProvider(["AAPL", "MSFT"], xnys, "US_EQ", download=replay(recorded_response()))

    # Act
    result = provider.prices(january)

    # Assert
    assert isinstance(provider, MarketDataProvider)
    assert result.frame.schema == provider_schema("prices_daily")
    assert result.frame.height == 41
    assert result.frame.filter(pl.col("instrument_id") == "MSFT", pl.col("session_date") == BAD_DAY).height == 0
    assert set(result.frame["source"].to_list()) == {"yfinance"}
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    [bad] = result.quarantine.iter_rows(named=True)
    assert (bad["reason"], bad["field"], bad["value"], bad["session_date"]) == ("missing close", "close", "NaN", BAD_DAY)
    assert bad["line_number"] == 2 * 10 + 2  # 11th session, second ticker of the day
    assert bad["source_file"] == "yfinance:download?market=US_EQ&start=2024-01-02&end=2024-02-01"
    assert result.source_files == (bad["source_file"],)
    raw = json.loads(bad["raw_row"])
    assert (raw["ticker"], raw["date"], raw["close"], raw["open"]) == ("MSFT", "2024-01-17", "NaN", 391.28)


def test_prices_with_subset_of_sessions_returns_only_those_sessions(xnys):
    sessions = [date(2024, 1, 3), date(2024, 1, 4)]
    provider = YFinanceProvider(["AAPL", "MSFT"], xnys, "US_EQ", download=replay(recorded_response()))

    result = provider.prices(sessions)

    assert sorted(set(result.frame["session_date"].to_list())) == sessions
    assert result.frame.height == 4


def test_prices_with_default_download_calls_yfinance_download_with_expected_arguments(monkeypatch, xnys, january):
    # Arrange: replay the recorded response through the real module attribute.
    import yfinance

    recorder = replay(recorded_response())
    monkeypatch.setattr(yfinance, "download", recorder)
    provider = YFinanceProvider(["aapl", "MSFT"], xnys, "US_EQ")

    # Act
    result = provider.prices(january)

    # Assert
    assert recorder.calls == [
        (
            (["AAPL", "MSFT"],),
            {
                "start": "2024-01-02",
                "end": "2024-02-01",
                "auto_adjust": False,
                "group_by": "ticker",
                "progress": False,
                "actions": False,
            },
        )
    ]
    assert result.frame.height == 41


def test_prices_with_ticker_not_requested_quarantines_it_as_unknown(xnys, january):
    provider = YFinanceProvider(["AAPL"], xnys, "US_EQ", download=replay(recorded_response()))

    result = provider.prices(january)

    assert set(result.frame["instrument_id"].to_list()) == {"AAPL"}
    assert result.quarantine.filter(pl.col("reason") == "unknown ticker").height == len(january)


def test_prices_with_failing_download_raises_provider_error(xnys, january):
    def download(*args, **kwargs):
        raise ConnectionError("Yahoo is down")

    provider = YFinanceProvider(["AAPL"], xnys, "US_EQ", download=download)

    with pytest.raises(ProviderError, match="Yahoo is down"):
        provider.prices(january)


def test_prices_with_empty_response_raises_provider_error(xnys, january):
    provider = YFinanceProvider(["AAPL"], xnys, "US_EQ", download=replay(pd.DataFrame()))

    with pytest.raises(ProviderError, match="no rows for"):
        provider.prices(january)


def test_prices_with_yfinance_not_installed_raises_install_hint(monkeypatch, xnys, january):
    monkeypatch.setitem(sys.modules, "yfinance", None)  # makes `import yfinance` raise ImportError
    provider = YFinanceProvider(["AAPL"], xnys, "US_EQ")

    with pytest.raises(ProviderError, match=r"pip install prometheus\[yfinance\]"):
        provider.prices(january)


@pytest.mark.parametrize("tickers", [[], ["AAPL", "aapl"], ["AAPL", ""]])
def test_construct_with_bad_tickers_raises_config_error(xnys, tickers):
    with pytest.raises(ConfigError, match="tickers"):
        YFinanceProvider(tickers, xnys, "US_EQ")


def test_reference_with_tickers_returns_one_instrument_per_ticker(xnys):
    reference = YFinanceProvider(["MSFT", "AAPL"], xnys, "US_EQ").reference()

    assert reference.instruments.schema == provider_schema("instruments")
    assert reference.instruments["instrument_id"].to_list() == ["AAPL", "MSFT"]
    assert reference.issuers["issuer_id"].to_list() == ["AAPL", "MSFT"]
