"""Builders for the execution tests: orders, bars, snapshots and execution configs."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from prometheus_lib.config.models import CommissionConfig, ExecutionConfig, SlippageConfig
from prometheus_lib.execution.domain import (
    InstrumentId,
    Order,
    OrderId,
    OrderSide,
    OrderStatus,
    OrderType,
    PortfolioId,
    TimeInForce,
)
from prometheus_lib.execution.market import Bar, MarketSnapshot

PORTFOLIO = PortfolioId("BOOK")
AAPL = InstrumentId("US_EQ:AAPL")
MSFT = InstrumentId("US_EQ:MSFT")
NAN = math.nan


def execution_config(**overrides: Any) -> ExecutionConfig:
    """An ``ExecutionConfig`` without costs, volume cap or leverage, changed by ``overrides``.

    ``slippage`` and ``commission`` may be given as dicts of their config's fields.
    """
    fields: dict[str, Any] = {
        "fill_at": "close",
        "slippage": SlippageConfig(model="none"),
        "commission": CommissionConfig(model="none"),
        "max_participation": None,
        "remainder": "cancel",
        "lot_size": 1,
        "min_trade_value": 0.0,
        "max_leverage": 1.0,
    }
    fields.update(overrides)
    if isinstance(fields["slippage"], dict):
        fields["slippage"] = SlippageConfig(**fields["slippage"])
    if isinstance(fields["commission"], dict):
        fields["commission"] = CommissionConfig(**fields["commission"])
    return ExecutionConfig(**fields)


def make_order(
    order_id: str = "O1",
    side: OrderSide = OrderSide.BUY,
    quantity: float = 100.0,
    session_date: date = date(2024, 1, 2),
    instrument_id: InstrumentId = AAPL,
    order_type: OrderType = OrderType.MARKET,
    time_in_force: TimeInForce = TimeInForce.DAY,
    limit_price: float | None = None,
    stop_price: float | None = None,
    status: OrderStatus = OrderStatus.SUBMITTED,
    portfolio_id: PortfolioId = PORTFOLIO,
) -> Order:
    """An order of ``PORTFOLIO``, SUBMITTED unless told otherwise."""
    return Order(
        order_id=OrderId(order_id),
        portfolio_id=portfolio_id,
        instrument_id=instrument_id,
        side=side,
        quantity=quantity,
        session_date=session_date,
        order_type=order_type,
        time_in_force=time_in_force,
        limit_price=limit_price,
        stop_price=stop_price,
        status=status,
    )


def bar(
    close: float,
    open: float | None = None,  # noqa: A002 - the field's name
    volume: float = 1_000_000.0,
    daily_volatility: float = NAN,
    halted: bool = False,
) -> Bar:
    """A bar; ``open`` defaults to ``close``, high and low are unknown (the simulator ignores them)."""
    return Bar(close if open is None else open, NAN, NAN, close, volume, daily_volatility, halted)


def snapshot(session_date: date, bars: dict[InstrumentId, Bar]) -> MarketSnapshot:
    """A snapshot of ``session_date`` over the instruments of ``bars``."""
    return MarketSnapshot.from_bars(session_date, {i.value: b for i, b in bars.items()})
