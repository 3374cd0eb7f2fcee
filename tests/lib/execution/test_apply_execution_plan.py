"""apply_execution_plan over several sessions: carried remainders are part of what the plan sees."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from prometheus_lib.config.models import CommissionConfig, ExecutionConfig, SlippageConfig
from prometheus_lib.execution.api import ExecutionRecords, apply_execution_plan
from prometheus_lib.execution.backtest_broker import BacktestBroker
from prometheus_lib.execution.domain import InstrumentId, PortfolioId
from prometheus_lib.execution.market import Bar, MarketSnapshot
from prometheus_lib.execution.planner import OrderPlanner

A = InstrumentId("A")


def _market(day: int) -> MarketSnapshot:
    # price 100, 1,000 shares traded a session: a 1 % cap fills 10 shares a session
    return MarketSnapshot.from_bars(date(2024, 1, 1) + timedelta(days=day),
                                    {"A": Bar(100.0, 100.0, 100.0, 100.0, 1_000.0, float("nan"), False)})


@pytest.mark.parametrize("fill_at", ["close", "next_open"])
def test_apply_with_carried_remainders_over_sessions_never_orders_past_the_target(fill_at):
    # Arrange: a 10 % target of 100,000 = 100 shares, at most 10 shares a session
    config = ExecutionConfig(fill_at=fill_at, max_participation=0.01, remainder="carry", min_trade_value=0.0,
                             slippage=SlippageConfig(model="none"), commission=CommissionConfig(model="none"))
    broker = BacktestBroker(config, PortfolioId("P"), 100_000.0, instruments=["A"])
    planner = OrderPlanner(config, cost_buffer_bps=0.0)
    records = ExecutionRecords()

    # Act: the same target for 15 sessions
    for day in range(15):
        apply_execution_plan(broker=broker, planner=planner, market=_market(day), target_weights={A: 0.1},
                             run_id="R", records=records)

    # Assert: 100 shares held, and only 100 shares ever ordered (the carried order was not doubled)
    assert broker.positions()[A].quantity == pytest.approx(100.0)
    assert sum(r["quantity"] for r in records.orders) == pytest.approx(100.0)
    assert not broker.open_orders()
