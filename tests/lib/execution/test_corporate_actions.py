"""Specification of corporate actions on a book: splits, reverse splits, dividends, delistings.

The rules (prometheus_lib/execution/corporate_actions.py) are checked on their own and through the
object engine's ``BacktestBroker``; tests/lib/backtest/test_columnar_engine.py runs them through
both backtest engines and requires identical rows.
"""

from __future__ import annotations

import json
import math
from datetime import date

import polars as pl
import pytest
from execution_providers import AAPL, MSFT, PORTFOLIO, bar, execution_config, make_order, snapshot

from prometheus_lib.errors import DataValidationError, ExecutionError, InvalidValueError
from prometheus_lib.execution.api import ExecutionRecords, apply_execution_plan
from prometheus_lib.execution.backtest_broker import BacktestBroker
from prometheus_lib.execution.corporate_actions import (
    CorporateAction,
    CorporateActionType,
    corporate_actions_from_frame,
    holding_after,
    order_after,
    tradable_targets,
)
from prometheus_lib.execution.domain import OrderId, OrderSide, OrderStatus, OrderType, Position, TimeInForce
from prometheus_lib.execution.planner import OrderPlanner

D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
SPLIT, DIVIDEND, DELISTING = CorporateActionType.SPLIT, CorporateActionType.DIVIDEND, CorporateActionType.DELISTING


def action(kind: CorporateActionType, *, ratio: float | None = None, amount: float | None = None,
           instrument=AAPL, session: date = D2, action_id: str = "CA1") -> CorporateAction:
    return CorporateAction(action_id, instrument, session, kind, ratio, amount)


def resumed(positions: dict, cash: float = 100_000.0, last_prices: dict | None = None, open_orders=(),
            **config) -> BacktestBroker:
    """A broker resumed at D1 with ``positions`` (quantity, average cost) and closes ``last_prices``."""
    book = {i: Position(i, q, c) for i, (q, c) in positions.items()}
    return BacktestBroker.from_state(execution_config(**config), PORTFOLIO, cash, book, as_of=D1,
                                     instruments=(AAPL, MSFT), last_prices=last_prices, open_orders=open_orders)


# ------------------------------------------------------------------ the arithmetic
def test_split_two_for_one_doubles_quantity_halves_cost_and_keeps_value() -> None:
    # Act
    after = holding_after(action(SPLIT, ratio=2.0), 300.0, 40.0, 12.5, 50.0)

    # Assert
    assert (after.quantity, after.average_cost, after.realized_pnl, after.last_price) == (600.0, 20.0, 12.5, 25.0)
    assert after.cash == 0.0 and after.fractional_shares == 0.0
    assert after.quantity * after.last_price == 300.0 * 50.0  # market value continuous


def test_reverse_split_with_fraction_pays_cash_in_lieu_at_the_previous_close() -> None:
    # Act: 1-for-10 of 1,005 shares bought at 4.00, last close 5.00 -> 100 shares and 0.5 share in cash
    after = holding_after(action(SPLIT, ratio=0.1), 1005.0, 4.0, 0.0, 5.0)

    # Assert
    assert after.quantity == 100.0
    assert after.average_cost == pytest.approx(40.0)
    assert after.fractional_shares == pytest.approx(0.5)
    assert after.cash_in_lieu_price == pytest.approx(50.0)
    assert after.cash == pytest.approx(25.0)  # 0.5 new share at 5.00 / 0.1
    assert after.realized_pnl == pytest.approx(0.5 * (50.0 - 40.0))
    assert after.quantity * after.last_price + after.cash == pytest.approx(1005.0 * 5.0)  # no jump in value


def test_reverse_split_of_a_short_buys_back_its_fraction() -> None:
    # Act
    after = holding_after(action(SPLIT, ratio=0.1), -1005.0, 4.0, 0.0, 5.0)

    # Assert
    assert after.quantity == -100.0
    assert after.cash == pytest.approx(-25.0)
    assert after.realized_pnl == pytest.approx(-0.5 * (50.0 - 40.0))


def test_split_ratio_float_noise_is_not_a_fraction() -> None:
    # 30 x 0.1 = 3.0000000000000004 in floats: three whole shares, nothing paid in lieu
    after = holding_after(action(SPLIT, ratio=0.1), 30.0, 10.0, 0.0, 10.0)

    assert after.quantity == 3.0 and after.cash == 0.0 and after.fractional_shares == 0.0


def test_reverse_split_below_one_share_closes_the_position_in_cash() -> None:
    after = holding_after(action(SPLIT, ratio=0.1), 5.0, 4.0, 1.0, 5.0)

    assert after.quantity == 0.0 and after.average_cost == 0.0
    assert after.cash == pytest.approx(25.0)
    assert after.realized_pnl == pytest.approx(1.0 + 5.0 * (5.0 - 4.0))


@pytest.mark.parametrize(("quantity", "cash"), [(200.0, 100.0), (-200.0, -100.0)])
def test_dividend_credits_a_long_and_charges_a_short(quantity: float, cash: float) -> None:
    after = holding_after(action(DIVIDEND, amount=0.5), quantity, 30.0, 0.0, 31.0)

    assert after.cash == cash
    assert (after.quantity, after.average_cost, after.realized_pnl, after.last_price) == (quantity, 30.0, 0.0, 31.0)


def test_delisting_closes_the_position_at_its_price_and_books_the_pnl() -> None:
    after = holding_after(action(DELISTING, amount=2.0), 100.0, 5.0, 1.0, 3.0)

    assert (after.quantity, after.average_cost) == (0.0, 0.0)
    assert after.cash == 200.0
    assert after.realized_pnl == 1.0 + 100.0 * (2.0 - 5.0)


def test_split_restates_a_partly_filled_order_in_new_shares() -> None:
    # Act: 100 ordered, 40 filled at 50; a 2-for-1 split
    change = order_after(action(SPLIT, ratio=2.0), 100.0, 40.0, 50.0, limit_price=52.0)

    # Assert: 80 filled at 25, 120 remaining, limit 26
    assert change is not None and change.cancel_reason is None
    assert (change.quantity, change.filled_quantity, change.average_fill_price) == (200.0, 80.0, 25.0)
    assert (change.limit_price, change.stop_price) == (26.0, None)


def test_reverse_split_rounds_an_order_down_to_whole_shares_or_cancels_it() -> None:
    kept = order_after(action(SPLIT, ratio=0.1), 25.0, 0.0, None)
    gone = order_after(action(SPLIT, ratio=0.1), 5.0, 0.0, None)

    assert kept is not None and kept.quantity == 2.0 and kept.cancel_reason is None
    assert gone is not None and "less than one share" in gone.cancel_reason
    assert order_after(action(DIVIDEND, amount=1.0), 5.0, 0.0, None) is None


# ------------------------------------------------------------------ reading actions
def test_actions_from_frame_are_validated_and_ordered_dividend_split_delisting() -> None:
    # Arrange
    frame = pl.DataFrame({
        "action_id": ["C", "B", "A"], "instrument_id": [AAPL.value] * 3, "session_date": [D2] * 3,
        "action_type": ["DELISTING", "SPLIT", "DIVIDEND"], "ratio": [None, 2.0, None], "amount": [1.0, None, 0.1],
    })

    # Act
    actions = corporate_actions_from_frame(frame)

    # Assert
    assert [a.action_type for a in actions] == [DIVIDEND, SPLIT, DELISTING]


@pytest.mark.parametrize(("kind", "ratio", "amount", "message"), [
    ("SPLIT", None, None, "needs a ratio"),
    ("SPLIT", 0.0, None, "ratio must be > 0"),
    ("DIVIDEND", None, -1.0, "amount must be >= 0"),
    ("DELISTING", None, None, "needs an amount"),
    ("MERGER", None, 1.0, "must be SPLIT, DIVIDEND or DELISTING"),
])
def test_invalid_action_row_is_refused_naming_its_id(kind, ratio, amount, message) -> None:
    frame = pl.DataFrame({"action_id": ["BAD-1"], "instrument_id": [AAPL.value], "session_date": [D2],
                          "action_type": [kind], "ratio": [ratio], "amount": [amount]},
                         schema_overrides={"ratio": pl.Float64, "amount": pl.Float64})

    with pytest.raises(DataValidationError, match=message) as err:
        corporate_actions_from_frame(frame)
    assert "BAD-1" in str(err.value)
    with pytest.raises(InvalidValueError):
        CorporateAction("X", AAPL, D2, SPLIT)


def test_tradable_targets_leave_out_delisted_instruments() -> None:
    weights = {AAPL: 0.1, MSFT: 0.2}

    assert tradable_targets(weights, frozenset({AAPL.value})) == {MSFT: 0.2}
    assert tradable_targets(weights, frozenset()) is weights


# ------------------------------------------------------------------ through the object engine's broker
def test_broker_split_restates_position_order_limit_and_keeps_equity() -> None:
    # Arrange: 100 AAPL at cost 40, close 50; a working GTC limit buy of 10 at 48
    limit = make_order("L1", quantity=10.0, session_date=D1, order_type=OrderType.LIMIT, limit_price=48.0,
                       time_in_force=TimeInForce.GTC)
    book = resumed({AAPL: (100.0, 40.0)}, last_prices={AAPL: 50.0}, open_orders=(limit,))
    before = book.account_state().equity

    # Act
    applied = book.apply_corporate_actions([action(SPLIT, ratio=2.0)])

    # Assert
    position = book.positions()[AAPL]
    assert (position.quantity, position.average_cost) == (200.0, 20.0)
    order = book.order(OrderId("L1"))
    assert (order.quantity, order.limit_price, order.status) == (20.0, 24.0, OrderStatus.SUBMITTED)
    assert book.account_state().equity == before
    assert len(applied) == 1 and applied[0].quantity == 100.0 and applied[0].notional == 0.0
    meta = json.loads(applied[0].metadata)
    assert meta["corporate_action_id"] == "CA1" and meta["quantity_after"] == 200.0 and meta["orders_restated"] == 1


def test_broker_split_restates_a_stop_price() -> None:
    stop = make_order("S1", side=OrderSide.SELL, quantity=50.0, session_date=D1, order_type=OrderType.STOP,
                      stop_price=45.0, time_in_force=TimeInForce.GTC)
    book = resumed({AAPL: (100.0, 40.0)}, last_prices={AAPL: 50.0}, open_orders=(stop,))

    book.apply_corporate_actions([action(SPLIT, ratio=0.5)])

    order = book.order(OrderId("S1"))
    assert (order.quantity, order.stop_price) == (25.0, 90.0)


def test_per_share_commission_after_a_split_is_charged_on_the_shares_traded() -> None:
    # Arrange: 100 shares, a 2-for-1 split, then the whole position is sold at the (halved) close
    book = resumed({AAPL: (100.0, 40.0)}, last_prices={AAPL: 50.0},
                   commission={"model": "per_share", "per_share": 0.01, "minimum": 0.0})
    book.apply_corporate_actions([action(SPLIT, ratio=2.0)])
    book.submit(make_order("O1", side=OrderSide.SELL, quantity=200.0, session_date=D2, status=OrderStatus.NEW))

    # Act
    fills = book.process_fills(snapshot(D2, {AAPL: bar(25.0), MSFT: bar(10.0)}))

    # Assert
    assert [f.quantity for f in fills] == [200.0]
    assert fills[0].commission == pytest.approx(200 * 0.01)


def test_broker_delisting_closes_the_position_and_cancels_orders_with_the_reason() -> None:
    carried = make_order("O9", side=OrderSide.SELL, quantity=40.0, session_date=D1)
    book = resumed({AAPL: (100.0, 5.0)}, cash=1_000.0, last_prices={AAPL: 3.0}, open_orders=(carried,))

    applied = book.apply_corporate_actions([action(DELISTING, amount=2.0)])

    assert AAPL not in book.positions()
    assert book.state().positions[AAPL].realized_pnl == 100.0 * (2.0 - 5.0)
    assert book.state().cash == 1_200.0
    order = book.order(OrderId("O9"))
    assert order.status is OrderStatus.CANCELLED and "delisted on 2024-01-03 at 2" in order.reason
    assert book.open_orders() == []
    assert (applied[0].quantity, applied[0].price, applied[0].notional) == (100.0, 2.0, 200.0)


def test_action_without_position_or_order_changes_nothing() -> None:
    book = resumed({MSFT: (10.0, 5.0)}, last_prices={MSFT: 5.0})

    assert book.apply_corporate_actions([action(DIVIDEND, amount=1.0), action(SPLIT, ratio=3.0)]) == []
    assert book.state().cash == 100_000.0


def test_action_of_a_session_already_processed_is_refused() -> None:
    book = resumed({AAPL: (10.0, 5.0)})

    with pytest.raises(ExecutionError, match="processed to 2024-01-02"):
        book.apply_corporate_actions([action(DIVIDEND, amount=1.0, session=D1)])


def test_apply_execution_plan_records_the_action_first_and_a_closed_row_for_a_delisting() -> None:
    # Arrange
    book = resumed({AAPL: (100.0, 5.0), MSFT: (10.0, 10.0)}, last_prices={AAPL: 3.0, MSFT: 10.0})
    records = ExecutionRecords()
    market = snapshot(D2, {AAPL: bar(math.nan), MSFT: bar(10.0)})

    # Act
    apply_execution_plan(broker=book, planner=OrderPlanner(execution_config()), market=market,
                         target_weights={MSFT: 0.0001}, run_id="R", decision_id="D", records=records,
                         corporate_actions=[action(DELISTING, amount=2.0)])

    # Assert
    first = records.executed_actions[0]
    assert (first["action_id"], first["action_type"], first["quantity"], first["notional"]) == (
        "R:BOOK:CA1", "DELISTING", 100.0, 200.0)
    closed = [r for r in records.positions_snapshots if r["instrument_id"] == AAPL.value]
    assert [(r["quantity"], r["realized_pnl"], r["metadata"]) for r in closed] == [(0.0, -300.0, '{"closed": true}')]
