"""Fixtures of the backtest tests: the dbt-built synthetic market, loaded once per worker."""

from __future__ import annotations

import pytest
from backtest_providers import load_data, shared_market

from prometheus_lib.backtest.runner import BacktestData


@pytest.fixture(scope="session")
def market_data(tmp_path_factory: pytest.TempPathFactory) -> BacktestData:
    """The base synthetic market (40 instruments, 2022-01-03..2023-06-30), panels built by dbt."""
    return load_data(shared_market(tmp_path_factory, "base"))
