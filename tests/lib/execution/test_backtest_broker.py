"""Specification of the BACKTEST broker: the order book, sessions, and saving and resuming a book."""

from __future__ import annotations

from datetime import date

import pytest
from execution_providers import AAPL, MSFT, PORTFOLIO, bar, execution_config, make_order, snapshot

from prometheus_lib.config.models import ExecutionConfig
from prometheus_lib.errors import ExecutionError, IllegalOrderTransition, UnknownOrderError
from prometheus_lib.execution.backtest_broker import BacktestBroker, BookState
from prometheus_lib.execution.broker import BrokerInterface
from prometheus_lib.execution.domain import (
    ExecutionMode,
    Fill,
    FillId,
    InstrumentId,
    OrderId,
    OrderSide,
    OrderStatus,
    OrderType,
    PortfolioId,
    Position,
    TimeInForce,
)

BUY, SELL = OrderSide.BUY, OrderSide.SELL
NEW = OrderStatus.NEW
D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
UNIVERSE = (AAPL, MSFT)


def broker(config: ExecutionConfig | None = None, cash: float = 100_000.0) -> BacktestBroker:
    return BacktestBroker(config or execution_config(), PORTFOLIO, cash, instruments=UNIVERSE)


# ------------------------------------------------------------------ submitting
def test_submit_with_valid_order_returns_it_submitted() -> None:
    # Arrange
    book = broker()

    # Act
    held = book.submit(make_order(status=NEW))

    # Assert
    assert held.status is OrderStatus.SUBMITTED
    assert book.order(OrderId("O1")) == held
    assert book.open_orders() == [held]
    assert book.mode is ExecutionMode.BACKTEST and isinstance(book, BrokerInterface)


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (make_order(status=NEW, instrument_id=InstrumentId("US_EQ:ZZZZ")), "unknown instrument US_EQ:ZZZZ"),
        (make_order(status=NEW, portfolio_id=PortfolioId("OTHER")), "portfolio OTHER"),
        (make_order(status=NEW, quantity=50), "below one lot (100)"),
        (make_order(status=NEW, limit_price=10.0), "limit_price 10 on a MARKET order"),
        (make_order(status=NEW, order_type=OrderType.LIMIT, limit_price=10.0, stop_price=9.0),
         "stop_price 9 on a LIMIT order"),
    ],
    ids=["unknown-instrument", "other-portfolio", "below-lot", "limit-on-market", "stop-on-limit"],
)
def test_submit_with_invalid_order_rejects_it_with_reason(order: object, reason: str) -> None:
    # Arrange
    book = broker(execution_config(lot_size=100))

    # Act
    held = book.submit(order)

    # Assert
    assert held.status is OrderStatus.REJECTED
    assert reason in held.reason
    assert book.order(held.order_id) == held and book.open_orders() == []


def test_submit_with_order_not_new_raises_illegal_order_transition() -> None:
    # Act / Assert
    with pytest.raises(IllegalOrderTransition, match="only a NEW order"):
        broker().submit(make_order(status=OrderStatus.SUBMITTED))


def test_submit_with_repeated_order_id_raises_execution_error() -> None:
    # Arrange
    book = broker()
    book.submit(make_order(status=NEW))

    # Act / Assert
    with pytest.raises(ExecutionError, match="O1 was already submitted"):
        book.submit(make_order(status=NEW))


def test_submit_all_with_orders_keeps_their_order() -> None:
    # Act
    held = broker().submit_all([make_order("B", status=NEW), make_order("A", status=NEW)])

    # Assert
    assert [str(o.order_id) for o in held] == ["B", "A"]


# ------------------------------------------------------------------ cancelling and looking up
def test_cancel_with_working_order_returns_it_cancelled() -> None:
    # Arrange
    book = broker()
    book.submit(make_order(status=NEW))

    # Act
    cancelled = book.cancel(OrderId("O1"), "changed my mind")

    # Assert
    assert (cancelled.status, cancelled.reason) == (OrderStatus.CANCELLED, "changed my mind")
    assert book.open_orders() == [] and book.order(OrderId("O1")) == cancelled


def test_cancel_with_filled_order_raises_illegal_order_transition() -> None:
    # Arrange
    book = broker()
    book.submit(make_order(status=NEW))
    book.process_fills(snapshot(D1, {AAPL: bar(close=50.0)}))

    # Act / Assert
    with pytest.raises(IllegalOrderTransition, match="FILLED -> CANCELLED"):
        book.cancel(OrderId("O1"))


@pytest.mark.parametrize("call", ["order", "cancel"])
def test_lookup_with_unknown_order_raises_unknown_order_error(call: str) -> None:
    # Act / Assert
    with pytest.raises(UnknownOrderError, match="unknown order NOPE") as caught:
        getattr(broker(), call)(OrderId("NOPE"))
    assert isinstance(caught.value, KeyError)


# ------------------------------------------------------------------ sessions
def test_process_fills_with_working_orders_fills_and_marks_to_close() -> None:
    # Arrange
    book = broker()
    book.submit_all([make_order("A", quantity=100, status=NEW),
                     make_order("M", quantity=50, instrument_id=MSFT, status=NEW)])

    # Act
    fills = book.process_fills(snapshot(D1, {AAPL: bar(close=50.0), MSFT: bar(close=20.0)}))

    # Assert
    assert [str(f.fill_id) for f in fills] == ["A-F1", "M-F1"]
    assert book.fills() == fills and book.fills(D1) == fills and book.fills(D2) == []
    assert book.open_orders() == []
    assert book.positions() == {AAPL: Position(AAPL, 100.0, 50.0), MSFT: Position(MSFT, 50.0, 20.0)}
    account = book.account_state()
    assert (account.session_date, account.cash, account.positions_value) == (D1, 94_000.0, 6_000.0)
    assert account.equity == pytest.approx(100_000.0)


def test_process_fills_with_next_open_fills_orders_of_previous_session() -> None:
    # Arrange
    book = broker(execution_config(fill_at="next_open"))
    book.submit(make_order(status=NEW, session_date=D1))
    first = book.process_fills(snapshot(D1, {AAPL: bar(close=50.0, open=49.0)}))

    # Act
    second = book.process_fills(snapshot(D2, {AAPL: bar(close=53.0, open=51.0)}))

    # Assert
    assert first == []
    assert [(f.price, f.session_date) for f in second] == [(51.0, D2)]
    assert book.account_state().positions_value == pytest.approx(5_300.0)


@pytest.mark.parametrize(
    ("time_in_force", "expected_status"),
    [(TimeInForce.DAY, OrderStatus.CANCELLED), (TimeInForce.GTC, OrderStatus.SUBMITTED)],
)
def test_process_fills_with_unmet_limit_cancels_day_order_and_keeps_gtc(
    time_in_force: TimeInForce, expected_status: OrderStatus
) -> None:
    # Arrange
    book = broker()
    book.submit(make_order(status=NEW, order_type=OrderType.LIMIT, limit_price=45.0, time_in_force=time_in_force))

    # Act
    book.process_fills(snapshot(D1, {AAPL: bar(close=50.0)}))

    # Assert
    assert book.order(OrderId("O1")).status is expected_status


def test_process_fills_with_gtc_limit_fills_when_price_comes_to_it() -> None:
    # Arrange
    book = broker()
    book.submit(make_order(status=NEW, order_type=OrderType.LIMIT, limit_price=45.0, time_in_force=TimeInForce.GTC))
    book.process_fills(snapshot(D1, {AAPL: bar(close=50.0)}))

    # Act
    fills = book.process_fills(snapshot(D2, {AAPL: bar(close=44.0)}))

    # Assert
    assert [(f.price, f.session_date) for f in fills] == [(44.0, D2)]
    assert book.order(OrderId("O1")).status is OrderStatus.FILLED


def test_process_fills_with_carried_remainder_fills_it_next_session() -> None:
    # Arrange: 10 % of 1,000 shares per session, a DAY order of 250
    book = broker(execution_config(max_participation=0.1, remainder="carry"))
    book.submit(make_order(status=NEW, quantity=250))

    # Act
    book.process_fills(snapshot(D1, {AAPL: bar(close=50.0, volume=1_000.0)}))
    book.process_fills(snapshot(D2, {AAPL: bar(close=50.0, volume=1_000.0)}))
    book.process_fills(snapshot(D3, {AAPL: bar(close=50.0, volume=1_000.0)}))

    # Assert
    assert [(str(f.fill_id), f.quantity, f.session_date) for f in book.fills()] == [
        ("O1-F1", 100.0, D1), ("O1-F2", 100.0, D2), ("O1-F3", 50.0, D3)]
    assert book.order(OrderId("O1")).status is OrderStatus.FILLED


def test_account_state_with_no_session_and_no_as_of_raises_execution_error() -> None:
    # Act / Assert
    with pytest.raises(ExecutionError, match="no session marked yet"):
        broker().account_state()


def test_mark_with_snapshot_values_book_without_trading() -> None:
    # Arrange
    book = broker()
    book.submit(make_order(status=NEW))
    book.process_fills(snapshot(D1, {AAPL: bar(close=50.0)}))

    # Act
    account = book.mark(snapshot(D2, {AAPL: bar(close=60.0)}))

    # Assert
    assert (account.session_date, account.unrealized_pnl, account.equity) == (D2, 1_000.0, 101_000.0)
    assert book.fills(D2) == []


# ------------------------------------------------------------------ saving and resuming
def test_from_state_with_saved_book_continues_like_uninterrupted_broker() -> None:
    # Arrange: IBKR tiered commission, so the month's volume must survive the resume
    config = execution_config(commission={"model": "ibkr_tiered", "ibkr_tiers": ((150, 0.01), (float("inf"), 0.001))})
    day_1 = snapshot(D1, {AAPL: bar(close=50.0), MSFT: bar(close=20.0)})
    day_2 = snapshot(D2, {AAPL: bar(close=52.0), MSFT: bar(close=19.0)})
    straight = broker(config)
    straight.submit_all([make_order("A", quantity=100, status=NEW),
                         make_order("M", quantity=100, instrument_id=MSFT, status=NEW)])
    straight.process_fills(day_1)
    cash, positions = straight.state()
    resumed = BacktestBroker.from_state(
        config, PORTFOLIO, cash, positions, as_of=straight.as_of, instruments=UNIVERSE,
        last_prices=straight.last_prices(), month_to_date_shares=straight.month_to_date_shares,
    )
    day_2_orders = [make_order("S", side=SELL, quantity=40, session_date=D2, status=NEW)]

    # Act
    for book in (straight, resumed):
        book.submit_all(day_2_orders)
        book.process_fills(day_2)

    # Assert: month volume 200 >= 150, so the D2 sale pays 0.001 * 40 -> minimum 0.35
    assert resumed.fills(D2) == straight.fills(D2)
    assert [f.commission for f in resumed.fills(D2)] == [0.35]
    assert resumed.positions() == straight.positions()
    assert resumed.account_state() == straight.account_state()


def test_from_state_before_any_session_reports_saved_account() -> None:
    # Arrange
    positions = {AAPL: Position(AAPL, 100.0, 40.0, 250.0)}

    # Act
    book = BacktestBroker.from_state(execution_config(), PORTFOLIO, 5_000.0, positions, as_of=D1,
                                     last_prices={AAPL: 45.0})

    # Assert
    account = book.account_state()
    assert (account.session_date, account.cash, account.positions_value) == (D1, 5_000.0, 4_500.0)
    assert (account.realized_pnl, account.unrealized_pnl) == (250.0, 500.0)
    assert book.state() == BookState(5_000.0, positions)


def test_from_state_with_partially_filled_open_order_continues_fill_ids() -> None:
    # Arrange
    order = make_order(quantity=250, time_in_force=TimeInForce.GTC).with_fill(100.0, 50.0)
    earlier = Fill(FillId("O1-F1"), order.order_id, PORTFOLIO, AAPL, BUY, 100.0, 50.0, 0.0, D1)
    book = BacktestBroker.from_state(execution_config(), PORTFOLIO, 95_000.0, {AAPL: Position(AAPL, 100.0, 50.0)},
                                     as_of=D1, open_orders=[order], fills=[earlier])

    # Act
    fills = book.process_fills(snapshot(D2, {AAPL: bar(close=50.0)}))

    # Assert
    assert [(str(f.fill_id), f.quantity) for f in fills] == [("O1-F2", 150.0)]
    assert book.fills() == [earlier, *fills]
    assert book.positions()[AAPL].quantity == 250.0


@pytest.mark.parametrize(
    ("open_orders", "fills", "message"),
    [
        ([make_order(quantity=250).with_fill(100.0, 50.0)], [], "pass its fills"),
        ([make_order(status=OrderStatus.FILLED)], [], "must be a working order"),
        ([make_order(portfolio_id=PortfolioId("OTHER"))], [], "must be a working order"),
        ([make_order(), make_order()], [], "given twice"),
    ],
    ids=["partial-without-fills", "terminal", "other-portfolio", "duplicate"],
)
def test_from_state_with_inconsistent_open_orders_raises_execution_error(
    open_orders: list, fills: list, message: str
) -> None:
    # Act / Assert
    with pytest.raises(ExecutionError, match=message):
        BacktestBroker.from_state(execution_config(), PORTFOLIO, 0.0, {}, as_of=D1, open_orders=open_orders,
                                  fills=fills)


def test_process_fills_with_session_before_saved_state_raises_execution_error() -> None:
    # Arrange
    book = BacktestBroker.from_state(execution_config(), PORTFOLIO, 1_000.0, {}, as_of=D2)

    # Act / Assert
    with pytest.raises(ExecutionError, match="in order"):
        book.process_fills(snapshot(D1, {AAPL: bar(close=50.0)}))
