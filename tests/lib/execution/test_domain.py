"""Execution domain values: the order state machine, money and quantities that reject NaN, positions."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import date

import pytest

from prometheus_lib.errors import IllegalOrderTransition, InvalidValueError
from prometheus_lib.execution.domain import (
    ALLOWED_TRANSITIONS,
    AccountState,
    Fill,
    FillId,
    InstrumentId,
    Money,
    Order,
    OrderId,
    OrderSide,
    OrderStatus,
    OrderType,
    PortfolioId,
    Position,
    Quantity,
)

D = date(2024, 1, 2)
LEGAL = {
    (OrderStatus.NEW, OrderStatus.SUBMITTED), (OrderStatus.NEW, OrderStatus.REJECTED),
    (OrderStatus.NEW, OrderStatus.CANCELLED), (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED),
    (OrderStatus.SUBMITTED, OrderStatus.FILLED), (OrderStatus.SUBMITTED, OrderStatus.CANCELLED),
    (OrderStatus.SUBMITTED, OrderStatus.REJECTED), (OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED),
    (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED), (OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELLED),
}


def _order(status: OrderStatus = OrderStatus.NEW, **kw) -> Order:
    base = dict(order_id=OrderId("O1"), portfolio_id=PortfolioId("P"), instrument_id=InstrumentId("US_EQ:AAA"),
                side=OrderSide.BUY, quantity=100.0, session_date=D, status=status)
    base.update(kw)
    return Order(**base)


@pytest.mark.parametrize("source,target", list(itertools.product(OrderStatus, OrderStatus)))
def test_transition_with_every_status_pair_follows_the_state_machine(source, target):
    # Arrange
    order = _order(source)

    # Act / Assert
    if (source, target) in LEGAL:
        assert order.transition(target).status is target
    else:
        with pytest.raises(IllegalOrderTransition, match=f"{source.value} -> {target.value}"):
            order.transition(target)


def test_terminal_statuses_with_no_exit_are_filled_cancelled_rejected():
    assert {s for s in OrderStatus if s.is_terminal} == {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    assert {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets} == LEGAL


def test_with_fill_with_two_partials_averages_price_and_completes():
    # Arrange
    order = _order(OrderStatus.SUBMITTED)

    # Act
    part = order.with_fill(40, 10.0)
    done = part.with_fill(60, 11.0)

    # Assert
    assert part.status is OrderStatus.PARTIALLY_FILLED and part.remaining_quantity == 60
    assert done.status is OrderStatus.FILLED and done.filled_quantity == 100
    assert done.average_fill_price == pytest.approx((40 * 10 + 60 * 11) / 100)
    assert order.status is OrderStatus.SUBMITTED  # immutable: the original is unchanged


@pytest.mark.parametrize("status", [OrderStatus.NEW, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED])
def test_with_fill_with_order_not_working_raises(status):
    with pytest.raises(IllegalOrderTransition):
        _order(status).with_fill(10, 10.0)


def test_with_fill_with_overfill_raises_naming_the_order():
    with pytest.raises(InvalidValueError, match="O1.*exceeds remaining"):
        _order(OrderStatus.SUBMITTED).with_fill(101, 10.0)


@pytest.mark.parametrize("field,value", [("quantity", math.nan), ("quantity", math.inf), ("quantity", 0.0),
                                         ("quantity", -5.0), ("limit_price", math.nan), ("stop_price", -1.0)])
def test_order_with_bad_number_raises_naming_the_field(field, value):
    kw = {field: value}
    if field == "limit_price":
        kw["order_type"] = OrderType.LIMIT
    if field == "stop_price":
        kw["order_type"] = OrderType.STOP
    with pytest.raises(InvalidValueError, match=field):
        _order(**kw)


def test_order_with_limit_type_and_no_limit_price_raises():
    with pytest.raises(InvalidValueError, match="LIMIT order needs limit_price"):
        _order(order_type=OrderType.LIMIT)


def test_order_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _order().quantity = 5  # type: ignore[misc]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "abc", None])
def test_money_and_quantity_with_non_finite_value_raise(value):
    with pytest.raises(InvalidValueError):
        Money(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        Quantity(value)  # type: ignore[arg-type]


def test_money_with_other_currency_cannot_be_added():
    assert (Money(1.5) + Money(2.0)).amount == 3.5
    with pytest.raises(InvalidValueError, match="USD with EUR"):
        Money(1.0, "USD") + Money(1.0, "EUR")


def test_identifiers_of_different_kinds_with_same_text_differ():
    assert InstrumentId("X") != OrderId("X")
    assert InstrumentId("X") == InstrumentId("X") and hash(InstrumentId("X")) == hash(InstrumentId("X"))
    with pytest.raises(InvalidValueError):
        InstrumentId(" X")


@pytest.mark.parametrize(
    "start,trade,price,expected_qty,expected_cost,expected_realized",
    [
        ((0, 0.0), 100, 10.0, 100, 10.0, 0.0),          # open
        ((100, 10.0), 100, 12.0, 200, 11.0, 0.0),       # add: cost averages in
        ((200, 11.0), -50, 13.0, 150, 11.0, 100.0),     # reduce: realise (13-11)*50
        ((150, 11.0), -150, 9.0, 0, 0.0, -300.0),       # close: realise (9-11)*150
        ((100, 10.0), -150, 12.0, -50, 12.0, 200.0),    # flip: realise 100, open short 50 at 12
        ((-50, 12.0), 50, 10.0, 0, 0.0, 100.0),         # cover a short at a profit
    ],
)
def test_position_apply_fill_with_cases_updates_cost_and_realized(start, trade, price, expected_qty, expected_cost, expected_realized):
    # Arrange
    pos = Position(InstrumentId("A"), start[0], start[1])

    # Act
    after = pos.apply_fill(trade, price)

    # Assert
    assert after.quantity == expected_qty
    assert after.average_cost == pytest.approx(expected_cost)
    assert after.realized_pnl == pytest.approx(expected_realized)


def test_fill_cash_flow_with_buy_and_sell_includes_commission():
    buy = Fill(FillId("F1"), OrderId("O1"), PortfolioId("P"), InstrumentId("A"), OrderSide.BUY, 10, 5.0, 1.0, D)
    sell = dataclasses.replace(buy, fill_id=FillId("F2"), side=OrderSide.SELL)
    assert buy.cash_flow == -51.0 and sell.cash_flow == 49.0
    with pytest.raises(InvalidValueError, match="commission"):
        dataclasses.replace(buy, commission=math.nan)


def test_account_state_with_values_derives_equity_and_leverage():
    acct = AccountState(PortfolioId("P"), D, cash=-20.0, positions_value=120.0, gross_exposure=120.0)
    assert acct.equity == 100.0 and acct.net_exposure == 120.0 and acct.leverage == pytest.approx(1.2)
    with pytest.raises(InvalidValueError, match="cash"):
        AccountState(PortfolioId("P"), D, cash=math.nan)
