"""Specification of the market simulator: when, how much and at what price orders fill, and the book.

Expected numbers are worked by hand in the comments.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from execution_providers import AAPL, MSFT, NAN, PORTFOLIO, bar, execution_config, make_order, snapshot

from prometheus_lib.errors import ExecutionError, IllegalOrderTransition
from prometheus_lib.execution.domain import (
    FillId,
    InstrumentId,
    OrderSide,
    OrderStatus,
    OrderType,
    PortfolioId,
    Position,
    TimeInForce,
)
from prometheus_lib.execution.simulator import MarketSimulator

BUY, SELL = OrderSide.BUY, OrderSide.SELL
D1, D2, D3, D4, D5, D6 = (date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9))
FEB1 = date(2024, 2, 1)


def simulator(cash: float = 100_000.0, **config: object) -> MarketSimulator:
    return MarketSimulator(execution_config(**config), PORTFOLIO, cash)


# ------------------------------------------------------------------ timing
def test_execute_with_fill_at_close_fills_at_that_sessions_close() -> None:
    # Arrange
    sim = simulator(fill_at="close")
    order = make_order(quantity=100, session_date=D1)

    # Act
    result = sim.execute([order], snapshot(D1, {AAPL: bar(close=50.0, open=48.0)}))

    # Assert
    (fill,) = result.fills
    assert (fill.fill_id, fill.quantity, fill.price, fill.session_date) == (FillId("O1-F1"), 100.0, 50.0, D1)
    assert result.orders[0].status is OrderStatus.FILLED
    assert result.working == ()
    assert sim.cash == pytest.approx(95_000.0)


def test_execute_with_next_open_waits_for_next_session_and_fills_at_its_open() -> None:
    # Arrange
    sim = simulator(fill_at="next_open")
    order = make_order(quantity=100, session_date=D1)

    # Act
    same_session = sim.execute([order], snapshot(D1, {AAPL: bar(close=50.0, open=48.0)}))
    next_session = sim.execute(same_session.working, snapshot(D2, {AAPL: bar(close=52.0, open=51.0)}))

    # Assert
    assert same_session.fills == () and same_session.orders == (order,)
    (fill,) = next_session.fills
    assert (fill.price, fill.session_date) == (51.0, D2)
    assert sim.cash == pytest.approx(100_000.0 - 5_100.0)


def test_execute_with_order_of_later_session_leaves_it_untouched() -> None:
    # Arrange
    sim = simulator(fill_at="close")
    order = make_order(session_date=D2)

    # Act
    result = sim.execute([order], snapshot(D1, {AAPL: bar(close=50.0)}))

    # Assert
    assert result.orders == (order,) and result.fills == ()


# ------------------------------------------------------------------ slippage and commission in fills
@pytest.mark.parametrize(
    ("side", "slippage", "bar_", "expected_price", "expected_bps"),
    [
        (BUY, {"model": "fixed_bps", "bps": 10.0}, bar(close=50.0), 50.05, 10.0),
        (SELL, {"model": "fixed_bps", "bps": 10.0}, bar(close=50.0), 49.95, 10.0),
        # 5 bps + 0.1 * 0.02 * sqrt(100 / 10_000) = 0.0005 + 0.0002 -> 50 * 1.0007
        (BUY, {"model": "sqrt_impact", "bps": 5.0, "impact_coefficient": 0.1},
         bar(close=50.0, volume=10_000.0, daily_volatility=0.02), 50.035, 7.0),
        (SELL, {"model": "sqrt_impact", "bps": 5.0, "impact_coefficient": 0.1},
         bar(close=50.0, volume=10_000.0, daily_volatility=0.02), 49.965, 7.0),
    ],
    ids=["fixed-buy", "fixed-sell", "sqrt-buy", "sqrt-sell"],
)
def test_execute_with_slippage_fills_at_slipped_price(
    side: OrderSide, slippage: dict, bar_: object, expected_price: float, expected_bps: float
) -> None:
    # Arrange: the sell opens a short, funded by the 100,000 of cash
    sim = simulator(slippage=slippage)

    # Act
    result = sim.execute([make_order(side=side, quantity=100)], snapshot(D1, {AAPL: bar_}))

    # Assert
    (fill,) = result.fills
    assert fill.price == pytest.approx(expected_price, rel=1e-12)
    assert fill.slippage_bps == pytest.approx(expected_bps, rel=1e-12)
    assert sim.cash == pytest.approx(100_000.0 - side.sign * 100 * expected_price, rel=1e-12)


def test_execute_with_ibkr_tiers_crosses_tier_within_month_and_resets_next_month() -> None:
    # Arrange: tiers 0.01 up to 1,000 shares a month, then 0.005; minimum 0.35, cap 1 %
    sim = simulator(commission={"model": "ibkr_tiered", "ibkr_tiers": ((1_000, 0.01), (math.inf, 0.005))})
    market = {AAPL: bar(close=10.0), MSFT: bar(close=10.0)}

    # Act
    jan_2 = sim.execute(
        [make_order("A", quantity=800, session_date=D1), make_order("B", quantity=300, session_date=D1,
                                                                     instrument_id=MSFT)],
        snapshot(D1, market),
    )
    jan_3 = sim.execute([make_order("C", quantity=100, session_date=D2)], snapshot(D2, market))
    feb_1 = sim.execute([make_order("D", quantity=100, session_date=FEB1)], snapshot(FEB1, market))

    # Assert
    fees = [f.commission for r in (jan_2, jan_3, feb_1) for f in r.fills]
    assert fees == pytest.approx([
        8.0,  # month 0: 0.01 * 800
        3.0,  # month 800 < 1,000: 0.01 * 300 (the fill crosses 1,000 but pays the tier it starts in)
        0.5,  # month 1,100: 0.005 * 100
        1.0,  # February resets the month: 0.01 * 100
    ])
    assert sim.commission_paid == pytest.approx(12.5)
    assert sim.cash == pytest.approx(100_000.0 - 1_300 * 10.0 - 12.5)


def test_execute_with_partial_fills_charges_minimum_per_fill() -> None:
    # Arrange: per share 0.005, minimum 1.00; the volume cap splits 300 shares into 100 a session
    sim = simulator(commission={"model": "per_share", "per_share": 0.005, "minimum": 1.0},
                    max_participation=0.1, remainder="carry")
    order = make_order(quantity=300)

    # Act
    fills = []
    for session in (D1, D2, D3):
        result = sim.execute([order], snapshot(session, {AAPL: bar(close=20.0, volume=1_000.0)}))
        fills += result.fills
        (order,) = result.orders

    # Assert
    assert [f.commission for f in fills] == [1.0, 1.0, 1.0]  # 0.50 each, raised to the minimum
    assert [str(f.fill_id) for f in fills] == ["O1-F1", "O1-F2", "O1-F3"]
    assert order.status is OrderStatus.FILLED


# ------------------------------------------------------------------ volume cap, lots, no-trade sessions
@pytest.mark.parametrize(
    ("remainder", "expected_status"),
    [("cancel", OrderStatus.CANCELLED), ("carry", OrderStatus.PARTIALLY_FILLED)],
)
def test_execute_with_volume_cap_fills_cap_and_cancels_or_carries_rest(
    remainder: str, expected_status: OrderStatus
) -> None:
    # Arrange: 10 % of 1,000 shares = 100 of the 250 wanted
    sim = simulator(max_participation=0.1, remainder=remainder)

    # Act
    result = sim.execute([make_order(quantity=250)], snapshot(D1, {AAPL: bar(close=50.0, volume=1_000.0)}))

    # Assert
    (order,) = result.orders
    assert [f.quantity for f in result.fills] == [100.0]
    assert (order.status, order.filled_quantity) == (expected_status, 100.0)
    assert "volume cap" in order.reason


def test_execute_with_carried_remainder_fills_rest_next_session() -> None:
    # Arrange
    sim = simulator(max_participation=0.1, remainder="carry")
    first = sim.execute([make_order(quantity=250)], snapshot(D1, {AAPL: bar(close=50.0, volume=1_000.0)}))

    # Act: 10 % of 2,000 = 200 >= the 150 left
    second = sim.execute(first.working, snapshot(D2, {AAPL: bar(close=52.0, volume=2_000.0)}))

    # Assert
    (fill,) = second.fills
    (order,) = second.orders
    assert (fill.fill_id, fill.quantity, fill.price, fill.session_date) == (FillId("O1-F2"), 150.0, 52.0, D2)
    assert order.status is OrderStatus.FILLED
    assert order.average_fill_price == pytest.approx((100 * 50.0 + 150 * 52.0) / 250)  # 51.2


def test_execute_with_two_orders_on_one_instrument_shares_volume_cap() -> None:
    # Arrange: cap 100 shares for the session, two buys of 80
    sim = simulator(max_participation=0.1)
    orders = [make_order("A", quantity=80), make_order("B", quantity=80)]

    # Act
    result = sim.execute(orders, snapshot(D1, {AAPL: bar(close=50.0, volume=1_000.0)}))

    # Assert
    assert [f.quantity for f in result.fills] == [80.0, 20.0]
    assert [o.status for o in result.orders] == [OrderStatus.FILLED, OrderStatus.CANCELLED]


def test_execute_with_nan_volume_applies_no_cap() -> None:
    # Arrange
    sim = simulator(max_participation=0.1)

    # Act
    result = sim.execute([make_order(quantity=250)], snapshot(D1, {AAPL: bar(close=50.0, volume=NAN)}))

    # Assert
    assert [f.quantity for f in result.fills] == [250.0]


@pytest.mark.parametrize(
    ("quantity", "volume", "expected_fill", "reason"),
    [
        (1_000.0, 2_500.0, 200.0, "volume cap"),  # cap 250 -> 2 lots of 100
        (150.0, NAN, 100.0, "below the lot size"),  # 1 lot, 50 can never fill
    ],
)
def test_execute_with_lot_size_rounds_fill_down_to_lots(
    quantity: float, volume: float, expected_fill: float, reason: str
) -> None:
    # Arrange
    sim = simulator(lot_size=100, max_participation=0.1)

    # Act
    result = sim.execute([make_order(quantity=quantity)], snapshot(D1, {AAPL: bar(close=10.0, volume=volume)}))

    # Assert
    (order,) = result.orders
    assert [f.quantity for f in result.fills] == [expected_fill]
    assert order.status is OrderStatus.CANCELLED and reason in order.reason


@pytest.mark.parametrize(
    ("market", "reason"),
    [
        ({AAPL: bar(close=NAN)}, "close of US_EQ:AAPL on 2024-01-02 is nan"),
        ({AAPL: bar(close=0.0)}, "close of US_EQ:AAPL on 2024-01-02 is 0"),
        ({AAPL: bar(close=50.0, halted=True)}, "halted"),
        ({AAPL: bar(close=50.0, volume=0.0)}, "did not trade"),
        ({MSFT: bar(close=50.0)}, "not in the market data"),
    ],
    ids=["nan-price", "zero-price", "halted", "zero-volume", "missing-instrument"],
)
@pytest.mark.parametrize(
    ("remainder", "expected_status"),
    [("cancel", OrderStatus.CANCELLED), ("carry", OrderStatus.SUBMITTED)],
)
def test_execute_with_untradable_instrument_does_not_fill(
    market: dict, reason: str, remainder: str, expected_status: OrderStatus
) -> None:
    # Arrange
    sim = simulator(remainder=remainder)

    # Act
    result = sim.execute([make_order()], snapshot(D1, market))

    # Assert
    (order,) = result.orders
    assert result.fills == ()
    assert order.status is expected_status
    assert reason in order.reason
    assert sim.cash == 100_000.0


# ------------------------------------------------------------------ limit and stop orders
@pytest.mark.parametrize(
    ("side", "limit", "close", "bps", "expected_price"),
    [
        (BUY, 50.0, 50.0, 0.0, 50.0),  # at the limit
        (BUY, 50.0, 49.0, 10.0, 49.049),  # 49 * 1.001, better than the limit after slippage
        (SELL, 50.0, 51.0, 0.0, 51.0),  # a sell above its limit
        (SELL, 50.0, 50.05, 10.0, None),  # 50.05 * 0.999 = 49.99995 < 50: no fill
        (BUY, 50.0, 50.0, 10.0, None),  # 50 * 1.001 = 50.05 > 50: no fill
    ],
    ids=["buy-at-limit", "buy-better", "sell-better", "sell-slipped-through", "buy-slipped-through"],
)
def test_execute_with_limit_order_fills_only_at_or_better_than_limit(
    side: OrderSide, limit: float, close: float, bps: float, expected_price: float | None
) -> None:
    # Arrange: a long of 100 for the sells to close
    config = execution_config(slippage={"model": "fixed_bps", "bps": bps})
    sim = MarketSimulator(config, PORTFOLIO, 100_000.0, positions={AAPL: Position(AAPL, 100.0, 40.0)})
    order = make_order(side=side, order_type=OrderType.LIMIT, limit_price=limit, time_in_force=TimeInForce.GTC)

    # Act
    result = sim.execute([order], snapshot(D1, {AAPL: bar(close=close)}))

    # Assert
    expected = [] if expected_price is None else [pytest.approx(expected_price, rel=1e-12)]
    assert [f.price for f in result.fills] == expected
    assert result.orders[0].status is (OrderStatus.SUBMITTED if expected_price is None else OrderStatus.FILLED)


@pytest.mark.parametrize(
    ("time_in_force", "expected_status"),
    [(TimeInForce.DAY, OrderStatus.CANCELLED), (TimeInForce.GTC, OrderStatus.SUBMITTED)],
)
def test_execute_with_unmet_limit_expires_day_order_and_keeps_gtc(
    time_in_force: TimeInForce, expected_status: OrderStatus
) -> None:
    # Arrange
    sim = simulator()
    order = make_order(order_type=OrderType.LIMIT, limit_price=45.0, time_in_force=time_in_force)

    # Act
    result = sim.execute([order], snapshot(D1, {AAPL: bar(close=50.0)}))

    # Assert
    (after,) = result.orders
    assert result.fills == ()
    assert after.status is expected_status
    assert "limit 45 not reached" in after.reason


@pytest.mark.parametrize(
    ("side", "stop", "close", "expected_price"),
    [
        (SELL, 45.0, 46.0, None),  # above a sell stop: not triggered
        (SELL, 45.0, 45.0, 45.0),  # at the stop
        (SELL, 45.0, 44.0, 44.0),  # through the stop: fills at the reference price
        (BUY, 55.0, 54.0, None),
        (BUY, 55.0, 56.0, 56.0),
    ],
)
def test_execute_with_stop_order_triggers_at_or_through_stop(
    side: OrderSide, stop: float, close: float, expected_price: float | None
) -> None:
    # Arrange: a long of 100 for the sells to close
    sim = MarketSimulator(execution_config(), PORTFOLIO, 100_000.0, positions={AAPL: Position(AAPL, 100.0, 50.0)})
    order = make_order(side=side, order_type=OrderType.STOP, stop_price=stop, time_in_force=TimeInForce.GTC)

    # Act
    result = sim.execute([order], snapshot(D1, {AAPL: bar(close=close)}))

    # Assert
    assert [f.price for f in result.fills] == ([] if expected_price is None else [expected_price])
    assert result.orders[0].status is (OrderStatus.SUBMITTED if expected_price is None else OrderStatus.FILLED)


def test_execute_with_triggered_stop_keeps_filling_after_price_recovers() -> None:
    # Arrange: triggered at 44, capped at 100 of 300 shares, remainder carried
    sim = MarketSimulator(execution_config(max_participation=0.1, remainder="carry"), PORTFOLIO, 0.0,
                          positions={AAPL: Position(AAPL, 300.0, 50.0)})
    order = make_order(side=SELL, quantity=300, order_type=OrderType.STOP, stop_price=45.0)
    first = sim.execute([order], snapshot(D1, {AAPL: bar(close=44.0, volume=1_000.0)}))

    # Act
    second = sim.execute(first.working, snapshot(D2, {AAPL: bar(close=46.0, volume=10_000.0)}))

    # Assert
    assert [f.quantity for f in first.fills + second.fills] == [100.0, 200.0]
    assert second.orders[0].status is OrderStatus.FILLED


# ------------------------------------------------------------------ funding
@pytest.mark.parametrize(
    ("cash", "config", "quantity", "close", "expected_fill", "expected_cash"),
    [
        # 10,000 buys 200 of 300 at 50
        (10_000.0, {}, 300.0, 50.0, 200.0, 0.0),
        # with 10 bps commission: q * 50 * 1.001 <= 10,000 -> q <= 199.8 -> 199; 10,000 - 9,959.95
        (10_000.0, {"commission": {"model": "bps", "bps": 10.0}}, 300.0, 50.0, 199.0, 40.05),
        # per share 0.005 (minimum 1): 99 * 10 + 1 = 991 <= 1,000; 100 * 10 + 1 > 1,000
        (1_000.0, {"commission": {"model": "per_share", "per_share": 0.005, "minimum": 1.0}}, 150.0, 10.0, 99.0,
         9.0),
        # leverage 2: buying power 2 * 10,000 - 0 = 20,000 -> 400 of 500 at 50; cash goes negative
        (10_000.0, {"max_leverage": 2.0}, 500.0, 50.0, 400.0, -10_000.0),
        # slipped price 50.05: 10,000 / 50.05 = 199.8 -> 199
        (10_000.0, {"slippage": {"model": "fixed_bps", "bps": 10.0}}, 300.0, 50.0, 199.0, 10_000.0 - 199 * 50.05),
    ],
    ids=["cash", "bps-commission", "per-share-minimum", "leverage", "slippage"],
)
def test_execute_with_buy_beyond_buying_power_fills_affordable_lots_and_cancels_rest(
    cash: float, config: dict, quantity: float, close: float, expected_fill: float, expected_cash: float
) -> None:
    # Arrange
    sim = simulator(cash, **config)

    # Act
    result = sim.execute([make_order(quantity=quantity)], snapshot(D1, {AAPL: bar(close=close)}))

    # Assert
    (order,) = result.orders
    assert [f.quantity for f in result.fills] == [expected_fill]
    assert order.status is OrderStatus.CANCELLED and "insufficient buying power" in order.reason
    assert sim.cash == pytest.approx(expected_cash, abs=1e-9)


def test_execute_with_no_buying_power_cancels_buy_without_fill() -> None:
    # Arrange: fully invested, leverage 1
    sim = MarketSimulator(execution_config(), PORTFOLIO, 0.0, positions={MSFT: Position(MSFT, 100.0, 100.0)})

    # Act
    result = sim.execute([make_order(quantity=10)], snapshot(D1, {AAPL: bar(close=50.0), MSFT: bar(close=100.0)}))

    # Assert
    assert result.fills == ()
    assert result.orders[0].status is OrderStatus.CANCELLED
    assert "insufficient buying power: 0.00 USD" in result.orders[0].reason


def test_execute_with_sell_and_buy_runs_sells_first_to_fund_buys() -> None:
    # Arrange: no cash, 100 MSFT worth 10,000; the buy comes first in the list
    sim = MarketSimulator(execution_config(), PORTFOLIO, 0.0, positions={MSFT: Position(MSFT, 100.0, 90.0)})
    orders = [make_order("BUY_AAPL", quantity=200), make_order("SELL_MSFT", side=SELL, quantity=100,
                                                               instrument_id=MSFT)]

    # Act
    result = sim.execute(orders, snapshot(D1, {AAPL: bar(close=50.0), MSFT: bar(close=100.0)}))

    # Assert
    assert [str(f.order_id) for f in result.fills] == ["SELL_MSFT", "BUY_AAPL"]
    assert [o.status for o in result.orders] == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert sim.cash == pytest.approx(0.0)


def test_execute_with_buy_covering_short_is_not_limited_by_buying_power() -> None:
    # Arrange: short 100 at 50, cash 15,000: equity 15,000 - 100 * 60 = 9,000, gross 6,000, power 3,000
    sim = MarketSimulator(execution_config(), PORTFOLIO, 15_000.0, positions={AAPL: Position(AAPL, -100.0, 50.0)})

    # Act: covering costs 6,000 > 3,000
    result = sim.execute([make_order(quantity=100)], snapshot(D1, {AAPL: bar(close=60.0)}))

    # Assert
    assert [f.quantity for f in result.fills] == [100.0]
    assert sim.positions() == {}
    assert sim.cash == pytest.approx(9_000.0)


def test_execute_with_short_sale_beyond_buying_power_fills_affordable_part() -> None:
    # Arrange: flat, cash 10,000 -> power 10,000 -> 200 of 300 at 50
    sim = simulator(10_000.0)

    # Act
    result = sim.execute([make_order(side=SELL, quantity=300)], snapshot(D1, {AAPL: bar(close=50.0)}))

    # Assert
    assert [f.quantity for f in result.fills] == [200.0]
    assert sim.positions()[AAPL].quantity == -200.0


# ------------------------------------------------------------------ the book
STEPS = [  # (session, side, quantity, price)
    (D1, BUY, 100.0, 10.0),
    (D2, BUY, 100.0, 20.0),
    (D3, SELL, 50.0, 30.0),
    (D4, SELL, 150.0, 12.0),
    (D5, SELL, 100.0, 10.0),
    (D6, BUY, 150.0, 8.0),
]


@pytest.mark.parametrize(
    ("steps", "expected_quantity", "expected_cost", "expected_realized", "expected_cash"),
    [
        (1, 100.0, 10.0, 0.0, 99_000.0),  # open
        (2, 200.0, 15.0, 0.0, 97_000.0),  # add: (100 * 10 + 100 * 20) / 200
        (3, 150.0, 15.0, 750.0, 98_500.0),  # reduce: 50 * (30 - 15)
        (4, 0.0, 0.0, 300.0, 100_300.0),  # close: 750 + 150 * (12 - 15)
        (5, -100.0, 10.0, 300.0, 101_300.0),  # open a short at 10
        (6, 50.0, 8.0, 500.0, 100_100.0),  # flip: 300 + 100 * (10 - 8), then long 50 at 8
    ],
    ids=["open", "add", "reduce", "close", "short", "flip"],
)
def test_execute_with_fill_sequence_tracks_average_cost_and_realized_pnl(
    steps: int, expected_quantity: float, expected_cost: float, expected_realized: float, expected_cash: float
) -> None:
    # Arrange
    sim = simulator()

    # Act
    for n, (session, side, quantity, price) in enumerate(STEPS[:steps]):
        sim.execute([make_order(f"O{n}", side=side, quantity=quantity, session_date=session)],
                    snapshot(session, {AAPL: bar(close=price)}))

    # Assert
    position = sim.book()[AAPL]
    assert (position.quantity, position.average_cost) == (expected_quantity, pytest.approx(expected_cost))
    assert position.realized_pnl == pytest.approx(expected_realized)
    assert sim.cash == pytest.approx(expected_cash)


def test_mark_with_flipped_position_reports_realized_and_unrealized_pnl() -> None:
    # Arrange: the six steps above leave long 50 at 8, realised 500, cash 100,100
    sim = simulator()
    for n, (session, side, quantity, price) in enumerate(STEPS):
        sim.execute([make_order(f"O{n}", side=side, quantity=quantity, session_date=session)],
                    snapshot(session, {AAPL: bar(close=price)}))

    # Act: close at 9
    account = sim.mark(snapshot(D6, {AAPL: bar(close=9.0)}))

    # Assert
    assert account.positions_value == pytest.approx(450.0)
    assert account.unrealized_pnl == pytest.approx(50.0)  # 50 * (9 - 8)
    assert account.realized_pnl == pytest.approx(500.0)
    assert account.equity == pytest.approx(100_550.0)  # 100,000 + 500 + 50


def test_mark_with_missing_close_values_position_at_last_known_close() -> None:
    # Arrange: 100 AAPL at 50 and 200 MSFT at 20
    sim = simulator()
    sim.execute([make_order("A", quantity=100), make_order("M", quantity=200, instrument_id=MSFT)],
                snapshot(D1, {AAPL: bar(close=50.0), MSFT: bar(close=20.0)}))
    sim.mark(snapshot(D1, {AAPL: bar(close=50.0), MSFT: bar(close=21.0)}))

    # Act: MSFT has no close on D2
    account = sim.mark(snapshot(D2, {AAPL: bar(close=55.0), MSFT: bar(close=NAN)}))

    # Assert
    assert account.session_date == D2
    assert account.cash == pytest.approx(91_000.0)  # 100,000 - 5,000 - 4,000
    assert account.positions_value == pytest.approx(100 * 55.0 + 200 * 21.0)  # 9,700
    assert account.gross_exposure == pytest.approx(9_700.0)
    assert account.equity == pytest.approx(account.cash + account.positions_value)
    assert account.unrealized_pnl == pytest.approx(100 * 5.0 + 200 * 1.0)


def test_mark_with_commissions_keeps_equity_identity() -> None:
    # Arrange: 1 bp commission on both legs
    sim = simulator(commission={"model": "bps", "bps": 1.0})
    sim.execute([make_order("A", quantity=100)], snapshot(D1, {AAPL: bar(close=50.0)}))  # fee 0.50
    sim.execute([make_order("B", side=SELL, quantity=40, session_date=D2)],
                snapshot(D2, {AAPL: bar(close=60.0)}))  # fee 0.24, realised 400

    # Act
    account = sim.mark(snapshot(D2, {AAPL: bar(close=60.0)}))

    # Assert: 100,000 - 5,000.50 + 2,399.76 + 60 * 60
    assert account.equity == pytest.approx(100_999.26)
    assert account.equity == pytest.approx(100_000.0 + account.realized_pnl + account.unrealized_pnl - 0.74)


def test_mark_with_short_position_counts_it_negative_in_value_and_positive_in_gross() -> None:
    # Arrange
    sim = MarketSimulator(execution_config(), PORTFOLIO, 15_000.0, positions={AAPL: Position(AAPL, -100.0, 50.0)})

    # Act
    account = sim.mark(snapshot(D1, {AAPL: bar(close=40.0)}))

    # Assert
    assert (account.positions_value, account.gross_exposure) == (-4_000.0, 4_000.0)
    assert account.unrealized_pnl == pytest.approx(1_000.0)
    assert account.equity == pytest.approx(11_000.0)


# ------------------------------------------------------------------ refusals and determinism
@pytest.mark.parametrize(
    ("order", "error"),
    [
        (make_order(status=OrderStatus.NEW), IllegalOrderTransition),
        (make_order(status=OrderStatus.CANCELLED), IllegalOrderTransition),
        (make_order(portfolio_id=PortfolioId("OTHER")), ExecutionError),
    ],
    ids=["new", "terminal", "other-portfolio"],
)
def test_execute_with_order_it_cannot_take_raises(order: object, error: type[Exception]) -> None:
    # Act / Assert
    with pytest.raises(error, match="O1"):
        simulator().execute([order], snapshot(D1, {AAPL: bar(close=50.0)}))


def test_execute_with_session_before_last_mark_raises_execution_error() -> None:
    # Arrange
    sim = simulator()
    sim.mark(snapshot(D2, {AAPL: bar(close=50.0)}))

    # Act / Assert
    with pytest.raises(ExecutionError, match="in order"):
        sim.execute([make_order()], snapshot(D1, {AAPL: bar(close=50.0)}))


def test_execute_with_same_inputs_is_deterministic() -> None:
    # Arrange
    def run() -> tuple:
        sim = simulator(10_000.0, slippage={"model": "sqrt_impact"}, commission={"model": "ibkr_tiered"},
                        max_participation=0.1, remainder="carry")
        orders = [make_order("A", quantity=150), make_order("B", quantity=30, instrument_id=MSFT)]
        out = []
        for session in (D1, D2, D3):
            market = snapshot(session, {AAPL: bar(close=50.0, volume=1_000.0, daily_volatility=0.02),
                                        MSFT: bar(close=40.0, volume=900.0, daily_volatility=0.01)})
            result = sim.execute(orders, market)
            orders = list(result.working)
            out.append((result, sim.mark(market)))
        return tuple(out)

    # Act / Assert
    assert run() == run()


# ------------------------------------------------------------------ against vectorbt
def test_execute_with_cash_limited_buys_matches_vectorbt() -> None:
    # Arrange: 10 bps fees, 5 bps slippage, whole shares, sells before buys; vectorbt as the peer
    vbt = pytest.importorskip("vectorbt")
    closes = np.array([[50.0, 40.0], [55.0, 20.0], [53.0, 22.0]])
    sizes = np.array([[250.0, 0.0], [-100.0, 300.0], [-99.0, -275.0]])  # shares per session
    ids = [AAPL, MSFT]
    sim = simulator(10_000.0, slippage={"model": "fixed_bps", "bps": 5.0}, commission={"model": "bps", "bps": 10.0})

    # Act
    cash, held = [], []
    for t, session in enumerate((D1, D2, D3)):
        orders = [make_order(f"O{t}{j}", side=BUY if s > 0 else SELL, quantity=abs(s), session_date=session,
                             instrument_id=ids[j]) for j, s in enumerate(sizes[t]) if s != 0]
        sim.execute(orders, snapshot(session, {i: bar(close=c) for i, c in zip(ids, closes[t], strict=True)}))
        cash.append(sim.cash)
        held.append([sim.book().get(i, Position(i, 0.0)).quantity for i in ids])
    portfolio = vbt.Portfolio.from_orders(
        closes, sizes, size_type="amount", direction="longonly", fees=0.001, slippage=0.0005, init_cash=10_000.0,
        cash_sharing=True, group_by=True, call_seq="auto", size_granularity=1.0,
    )

    # Assert
    assert held == portfolio.assets().values.tolist()  # [[199, 0], [99, 275], [0, 0]]
    np.testing.assert_allclose(cash, portfolio.cash().values, rtol=0, atol=1e-8)


def test_mark_with_instrument_never_priced_values_it_at_average_cost() -> None:
    # Arrange: resumed with a position and no last price
    sim = MarketSimulator(execution_config(), PORTFOLIO, 1_000.0, positions={MSFT: Position(MSFT, 10.0, 30.0)})

    # Act
    account = sim.mark(snapshot(D1, {AAPL: bar(close=50.0)}))

    # Assert
    assert account.positions_value == pytest.approx(300.0)
    assert account.unrealized_pnl == 0.0


def test_positions_with_flat_instrument_omits_it_but_book_keeps_realized_pnl() -> None:
    # Arrange
    sim = simulator()
    sim.execute([make_order("A", quantity=10)], snapshot(D1, {AAPL: bar(close=10.0)}))

    # Act
    sim.execute([make_order("B", side=SELL, quantity=10, session_date=D2)], snapshot(D2, {AAPL: bar(close=12.0)}))

    # Assert
    assert sim.positions() == {}
    assert sim.book() == {AAPL: Position(AAPL, 0.0, 0.0, 20.0)}
    assert isinstance(next(iter(sim.book())), InstrumentId)
