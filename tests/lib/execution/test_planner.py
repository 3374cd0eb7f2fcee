"""Specification of the order planner: targets to orders, sells first, within leverage.

Expected quantities are computed by hand in the comments. Unless a test says otherwise the
planner has no minimum trade value, no cost buffer, lot size 1, no cash buffer and
``max_leverage`` 1, so the arithmetic stays visible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prometheus_lib.config.models import ExecutionConfig
from prometheus_lib.errors import ExecutionError, InvalidValueError
from prometheus_lib.execution.domain import InstrumentId, OrderSide, OrderType, PortfolioId, Position, TimeInForce
from prometheus_lib.execution.planner import OrderPlan, OrderPlanner

SESSION = date(2024, 3, 1)
BOOK = PortfolioId("BOOK_1")


# ------------------------------------------------------------------ builders
def iid(symbol: str) -> InstrumentId:
    """The instrument id of ``symbol`` in a test market."""
    return InstrumentId(f"US_EQ:{symbol}")


def by_id(values: Mapping[str, Any] | None) -> dict[InstrumentId, Any] | None:
    """Re-key a symbol mapping by instrument id."""
    return None if values is None else {iid(s): v for s, v in values.items()}


def planner(cost_buffer_bps: float = 0.0, max_position_weight: float | None = None, allow_short: bool = False,
            **config: Any) -> OrderPlanner:
    """A planner with the test defaults above, overridden by ``config`` fields."""
    fields = {"min_trade_value": 0.0, "lot_size": 1, "max_leverage": 1.0, "cash_buffer": 0.0, **config}
    return OrderPlanner(ExecutionConfig(**fields), cost_buffer_bps=cost_buffer_bps,
                        max_position_weight=max_position_weight, allow_short=allow_short)


def run_plan(planner_: OrderPlanner, *, cash: float, prices: Mapping[str, float | None],
             holdings: Mapping[str, float] | None = None, weights: Mapping[str, float] | None = None,
             quantities: Mapping[str, float] | None = None, lots: Mapping[str, int] | None = None,
             average_costs: Mapping[str, float] | None = None, decision_id: str | None = None) -> OrderPlan:
    """Plan with symbol-keyed inputs; a price of None leaves the instrument out of ``prices``."""
    positions = {
        iid(s): Position(iid(s), q, (average_costs or {}).get(s, 0.0)) for s, q in (holdings or {}).items()
    }
    return planner_.plan(
        portfolio_id=BOOK,
        session_date=SESSION,
        positions=positions,
        cash=cash,
        prices={iid(s): p for s, p in prices.items() if p is not None},
        target_weights=by_id(weights),
        target_quantities=by_id(quantities),
        lot_sizes=by_id(lots),
        decision_id=decision_id,
        order_id_prefix="BOOK_1-20240301-",
    )


def trades(plan: OrderPlan) -> list[tuple[str, str, float]]:
    """The plan's orders as (side, symbol, quantity), in emission order."""
    return [(o.side.value, o.instrument_id.value.removeprefix("US_EQ:"), o.quantity) for o in plan.orders]


def skipped(plan: OrderPlan) -> dict[str, str]:
    """The plan's skipped instruments as symbol -> reason."""
    return {i.value.removeprefix("US_EQ:"): reason for i, reason in plan.skipped}


# ------------------------------------------------------------------ targets to orders
def test_plan_with_empty_book_and_target_weights_buys_each_target_value():
    # Arrange: equity 100,000 -> A 50,000 / 50 = 1000, B 30,000 / 20 = 1500, C 20,000 / 33 = 606.06 -> 606
    planner_ = planner()

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 50.0, "B": 20.0, "C": 33.0},
                    weights={"A": 0.5, "B": 0.3, "C": 0.2}, decision_id="DECISION_7")

    # Assert
    assert trades(plan) == [("BUY", "A", 1000.0), ("BUY", "B", 1500.0), ("BUY", "C", 606.0)]
    assert [o.order_id.value for o in plan.orders] == [f"BOOK_1-20240301-0000{n}" for n in (1, 2, 3)]
    assert all(o.order_type is OrderType.MARKET and o.time_in_force is TimeInForce.DAY for o in plan.orders)
    assert all(o.decision_id == "DECISION_7" and o.portfolio_id == BOOK for o in plan.orders)
    assert plan.equity == 100_000.0
    assert plan.expected_cash_after == pytest.approx(2.0)  # 100,000 - 50,000 - 30,000 - 19,998
    assert plan.expected_gross_exposure == pytest.approx(99_998.0)
    assert plan.funding_scale == 1.0
    assert plan.skipped == () and plan.adjustments == ()


def test_plan_with_rebalance_emits_sells_before_buys_and_closes_untargeted_holdings():
    # Arrange: cash 40,000 + A 1000 x 50 + C 100 x 100 = equity 100,000.
    # A 0.2 -> 400 (sell 600); B 0.6 -> 60,000 / 20 = 3000 (buy); C not targeted -> sell 100.
    planner_ = planner()

    # Act
    plan = run_plan(planner_, cash=40_000.0, prices={"A": 50.0, "B": 20.0, "C": 100.0},
                    holdings={"A": 1000.0, "C": 100.0}, weights={"B": 0.6, "A": 0.2})

    # Assert
    assert trades(plan) == [("SELL", "A", 600.0), ("SELL", "C", 100.0), ("BUY", "B", 3000.0)]
    assert [o.order_id.value[-5:] for o in plan.orders] == ["00001", "00002", "00003"]
    assert plan.expected_cash_after == pytest.approx(20_000.0)  # 40,000 + 30,000 + 10,000 - 60,000


@pytest.mark.parametrize(
    ("weights", "quantities"),
    [({"A": 1.0, "B": 0.5}, None), (None, {"A": 100.0, "B": 10.0})],
    ids=["weights", "quantities"],
)
def test_plan_with_zero_cash_and_nothing_to_sell_plans_no_buys(weights, quantities):
    # Arrange: fully invested in A (100 x 10), no cash; B would need cash the book does not have.
    planner_ = planner()

    # Act
    plan = run_plan(planner_, cash=0.0, prices={"A": 10.0, "B": 10.0}, holdings={"A": 100.0},
                    weights=weights, quantities=quantities)

    # Assert
    assert plan.orders == ()
    assert "not funded" in skipped(plan)["B"]
    assert plan.funding_scale == 0.0
    assert plan.expected_cash_after == 0.0


@pytest.mark.parametrize(
    ("price", "weight", "lot", "expected"),
    [
        (30.0, 0.5, 100, 1600.0),  # 50,000 / 30 = 1666.7 -> 1600
        (7.0, 0.3, 100, 4200.0),  # 30,000 / 7 = 4285.7 -> 4200
        (10.0, 0.5, 100, 5000.0),  # exactly 50 lots
        (45.0, 0.1, 10, 220.0),  # per-instrument lot of 10: 10,000 / 45 = 222.2 -> 220
        (29.0, 0.29, 1, 1000.0),  # 0.29 * 100,000 / 29 is 999.9999999999999 in floats: still 1000
    ],
)
def test_plan_with_lot_size_rounds_target_down_to_whole_lots(price, weight, lot, expected):
    # Arrange: config lot 100; the instrument's own lot comes from lot_sizes.
    planner_ = planner(lot_size=100)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": price}, weights={"A": weight}, lots={"A": lot})

    # Assert
    assert trades(plan) == [("BUY", "A", expected)]


def test_plan_with_target_below_one_lot_skips_it_with_reason():
    # Arrange: 10,000 / 250 = 40 units, below one lot of 100
    planner_ = planner(lot_size=100)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 250.0}, weights={"A": 0.1})

    # Assert
    assert plan.orders == ()
    assert skipped(plan) == {"A": "target of 40 units is less than one lot of 100"}


def test_plan_with_odd_lot_target_quantity_rounds_toward_zero_and_reports_it():
    # Arrange: 150 held; target 250 -> 200 at lot 100 -> buy 50
    planner_ = planner(lot_size=100)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0}, holdings={"A": 150.0}, quantities={"A": 250.0})

    # Assert
    assert trades(plan) == [("BUY", "A", 50.0)]
    assert plan.adjustments == ("target quantity of US_EQ:A rounded toward zero from 250 to 200 (lot 100)",)


# ------------------------------------------------------------------ minimum trade value
@pytest.mark.parametrize(
    ("holding", "target", "expected_trades", "expected_skipped"),
    [
        (100.0, 105.0, [], {"A": "trade value 50.00 is below min_trade_value 1,000.00"}),
        (100.0, 95.0, [], {"A": "trade value 50.00 is below min_trade_value 1,000.00"}),
        (100.0, 200.0, [("BUY", "A", 100.0)], {}),  # exactly 1,000: not below
        (10.0, 0.0, [("SELL", "A", 10.0)], {}),  # a full close of 100 goes through
        (-10.0, 0.0, [("BUY", "A", 10.0)], {}),  # so does covering a short
    ],
    ids=["small-buy", "small-sell", "at-minimum", "full-close", "full-cover"],
)
def test_plan_with_min_trade_value_skips_small_trades_except_full_closes(
    holding, target, expected_trades, expected_skipped
):
    # Arrange
    planner_ = planner(min_trade_value=1_000.0)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0}, holdings={"A": holding}, quantities={"A": target})

    # Assert
    assert trades(plan) == expected_trades
    assert skipped(plan) == expected_skipped


# ------------------------------------------------------------------ caps, leverage, buffers
@pytest.mark.parametrize(
    ("cap", "expected_a", "expected_adjustments"),
    [
        (None, 2500.0, ()),
        (0.1, 1000.0, ("target weight of US_EQ:A clipped from 0.25 to 0.1 (max_position_weight 0.1)",)),
    ],
)
def test_plan_with_max_position_weight_clips_larger_weights(cap, expected_a, expected_adjustments):
    # Arrange: equity 100,000, prices 10: A 0.25 -> 2500 (1000 at the cap), B 0.05 -> 500
    planner_ = planner(max_position_weight=cap)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0, "B": 10.0}, weights={"A": 0.25, "B": 0.05})

    # Assert
    assert trades(plan) == [("BUY", "A", expected_a), ("BUY", "B", 500.0)]
    assert plan.adjustments == expected_adjustments


@pytest.mark.parametrize(
    ("leverage", "expected_a", "expected_b", "expected_cash", "expected_scale"),
    [
        # A 80,000 / 100 = 800, B 70,000 / 50 = 1400: gross 150,000 = 1.5 x equity, cash -50,000
        (1.5, 800.0, 1400.0, -50_000.0, 1.0),
        # 150,000 of buys on 100,000 of cash: scaled by 2/3 -> A 533.3 -> 533, B 933.3 -> 933
        (1.0, 533.0, 933.0, 50.0, 2 / 3),  # cash 100,000 - 53,300 - 46,650
    ],
)
def test_plan_with_max_leverage_scales_buys_pro_rata_to_fit(
    leverage, expected_a, expected_b, expected_cash, expected_scale
):
    # Arrange
    planner_ = planner(max_leverage=leverage)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 100.0, "B": 50.0}, weights={"A": 0.8, "B": 0.7})

    # Assert
    assert trades(plan) == [("BUY", "A", expected_a), ("BUY", "B", expected_b)]
    assert plan.expected_cash_after == pytest.approx(expected_cash)
    assert plan.expected_gross_exposure <= leverage * plan.equity
    assert plan.funding_scale == pytest.approx(expected_scale)
    assert len(plan.adjustments) == (expected_scale < 1.0)


@pytest.mark.parametrize(
    ("cash_buffer", "expected_a", "expected_cash"),
    [(0.0, 10_000.0, 0.0), (0.05, 9_500.0, 5_000.0), (0.2, 8_000.0, 20_000.0)],
)
def test_plan_with_cash_buffer_keeps_that_share_of_equity_in_cash(cash_buffer, expected_a, expected_cash):
    # Arrange: weight 1 of 100,000 after the buffer, price 10
    planner_ = planner(cash_buffer=cash_buffer)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0}, weights={"A": 1.0})

    # Assert
    assert trades(plan) == [("BUY", "A", expected_a)]
    assert plan.expected_cash_after == pytest.approx(expected_cash)


@pytest.mark.parametrize(
    ("cash_buffer", "expected_a", "expected_cash"),
    [
        # 100,000 x (1 + 10 bps) > 100,000: scaled to 9990.01 -> 9990; cash 100,000 - 99,900 - 99.90
        (0.0, 9_990.0, 0.1),
        # 99,000 + 99 of costs fits: cash 100,000 - 99,000 - 99
        (0.01, 9_900.0, 901.0),
    ],
)
def test_plan_with_cost_buffer_leaves_cash_for_commission_and_slippage(cash_buffer, expected_a, expected_cash):
    # Arrange
    planner_ = planner(cost_buffer_bps=10.0, cash_buffer=cash_buffer)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0}, weights={"A": 1.0})

    # Assert
    assert trades(plan) == [("BUY", "A", expected_a)]
    assert plan.expected_cash_after == pytest.approx(expected_cash)
    assert plan.estimated_costs == pytest.approx(expected_a * 10.0 * 0.001)


def test_plan_with_negative_weight_and_shorts_allowed_sells_short():
    # Arrange: equity 100,000: A -0.2 -> -2000 (sell short), B 0.5 -> 5000; gross 70,000
    planner_ = planner(allow_short=True)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0, "B": 10.0}, weights={"A": -0.2, "B": 0.5})

    # Assert
    assert trades(plan) == [("SELL", "A", 2000.0), ("BUY", "B", 5000.0)]
    assert plan.expected_gross_exposure == pytest.approx(70_000.0)
    assert plan.expected_cash_after == pytest.approx(70_000.0)  # 100,000 + 20,000 - 50,000


def test_plan_with_short_leg_rounded_past_the_cash_limit_scales_down_one_more_lot():
    # Arrange: A 1.0 -> 10,000 long, B -0.001 -> 10 short, 100 bps of costs, no borrowing.
    # Cash binds: scale 100,000 / (99,900 + 1,001) = 0.99107 -> A 9910, B -9.91 -> -9, and the
    # smaller short leaves cash at 100,000 + 90 - 99,100 - 991.90 = -1.90. One lot less of A:
    # 100,000 + 90 - 99,090 - 991.80 = 8.20.
    planner_ = planner(cost_buffer_bps=100.0, allow_short=True)

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": 10.0, "B": 10.0}, weights={"A": 1.0, "B": -0.001})

    # Assert
    assert trades(plan) == [("SELL", "B", 9.0), ("BUY", "A", 9909.0)]
    assert plan.expected_cash_after == pytest.approx(8.2)


# ------------------------------------------------------------------ missing prices
@pytest.mark.parametrize(
    ("bad_price", "reason"),
    [
        (None, "no price"),
        (math.nan, "price must be a finite number > 0, was nan"),
        (math.inf, "price must be a finite number > 0, was inf"),
        (0.0, "price must be a finite number > 0, was 0.0"),
        (-5.0, "price must be a finite number > 0, was -5.0"),
    ],
    ids=["missing", "nan", "inf", "zero", "negative"],
)
def test_plan_with_unusable_price_skips_the_instrument_with_reason(bad_price, reason):
    # Arrange
    planner_ = planner()

    # Act
    plan = run_plan(planner_, cash=100_000.0, prices={"A": bad_price, "B": 10.0}, weights={"A": 0.3, "B": 0.1})

    # Assert
    assert trades(plan) == [("BUY", "B", 1000.0)]
    assert skipped(plan) == {"A": reason}


def test_plan_with_unpriced_holding_keeps_it_and_marks_it_at_average_cost():
    # Arrange: cash 98,000 + A 100 at average cost 20 = equity 100,000; B 0.1 -> 10,000 / 10 = 1000
    planner_ = planner()

    # Act
    plan = run_plan(planner_, cash=98_000.0, prices={"A": None, "B": 10.0}, holdings={"A": 100.0},
                    average_costs={"A": 20.0}, weights={"B": 0.1})

    # Assert
    assert trades(plan) == [("BUY", "B", 1000.0)]
    assert skipped(plan) == {"A": "no price; position of 100 kept, marked at average cost 20"}
    assert plan.equity == 100_000.0
    assert plan.expected_gross_exposure == pytest.approx(12_000.0)  # 2,000 kept + 10,000 bought


# ------------------------------------------------------------------ target quantities
def test_plan_with_target_quantities_trades_the_differences():
    # Arrange: A 300 -> 100 (sell 200), B 0 -> 250 (buy), C 50 held and not targeted (sell 50)
    planner_ = planner()

    # Act
    plan = run_plan(planner_, cash=10_000.0, prices={"A": 10.0, "B": 10.0, "C": 10.0},
                    holdings={"A": 300.0, "C": 50.0}, quantities={"A": 100.0, "B": 250.0})

    # Assert
    assert trades(plan) == [("SELL", "A", 200.0), ("SELL", "C", 50.0), ("BUY", "B", 250.0)]
    assert plan.expected_cash_after == pytest.approx(10_000.0)  # + 2,000 + 500 - 2,500


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("weights", "quantities", "message"),
    [
        (None, None, "give exactly one of target_weights and target_quantities; neither was given"),
        ({"A": 0.5}, {"A": 10.0}, "give exactly one of target_weights and target_quantities; both were given"),
    ],
    ids=["neither", "both"],
)
def test_plan_with_neither_or_both_targets_raises_naming_the_parameters(weights, quantities, message):
    # Arrange
    planner_ = planner()

    # Act / Assert
    with pytest.raises(InvalidValueError, match=message):
        run_plan(planner_, cash=100_000.0, prices={"A": 10.0}, weights=weights, quantities=quantities)


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (math.nan, "target weight of US_EQ:B must be finite, was nan"),
        (math.inf, "target weight of US_EQ:B must be finite, was inf"),
        (-0.1, r"target weight of US_EQ:B must be >= 0 \(shorts are not allowed\), was -0.1"),
    ],
    ids=["nan", "inf", "negative-long-only"],
)
def test_plan_with_invalid_weight_raises_naming_the_instrument(weight, message):
    # Arrange
    planner_ = planner()

    # Act / Assert
    with pytest.raises(InvalidValueError, match=message):
        run_plan(planner_, cash=100_000.0, prices={"A": 10.0, "B": 10.0}, weights={"A": 0.1, "B": weight})


def test_plan_with_weights_and_no_equity_raises():
    # Arrange
    planner_ = planner()

    # Act / Assert
    with pytest.raises(ExecutionError, match="equity must be > 0, was 0"):
        run_plan(planner_, cash=0.0, prices={"A": 10.0}, weights={"A": 0.5})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cost_buffer_bps": -1.0}, "cost_buffer_bps must be >= 0, was -1.0"),
        ({"cost_buffer_bps": 2_000.0}, "cost_buffer_bps must be <= 1000, was 2000.0"),
        ({"max_position_weight": 0.0}, "max_position_weight must be > 0, was 0.0"),
    ],
)
def test_construct_with_invalid_option_raises_naming_it(kwargs, message):
    # Act / Assert
    with pytest.raises(InvalidValueError, match=message):
        planner(**kwargs)


def test_plan_with_bad_lot_size_raises_naming_the_instrument():
    # Arrange
    planner_ = planner()

    # Act / Assert
    with pytest.raises(InvalidValueError, match="lot size of US_EQ:A must be a positive integer, was 0"):
        run_plan(planner_, cash=100_000.0, prices={"A": 10.0}, weights={"A": 0.5}, lots={"A": 0})


# ------------------------------------------------------------------ property: limits always hold
@st.composite
def books(draw: st.DrawFn) -> dict[str, Any]:
    """A random book that starts within its leverage, with random targets and limits."""
    allow_short = draw(st.booleans())
    leverage = draw(st.sampled_from([1.0, 1.5, 2.0, 3.0]))
    symbols = [f"S{k}" for k in range(draw(st.integers(1, 8)))]
    qty = st.integers(-3_000 if allow_short else 0, 3_000).map(float)
    prices = {s: draw(st.floats(0.5, 800.0)) for s in symbols}
    holdings = {s: draw(qty) for s in symbols if draw(st.booleans())}
    gross = sum(abs(q) * prices[s] for s, q in holdings.items())
    net = sum(q * prices[s] for s, q in holdings.items())
    # cash >= gross / L - net keeps the starting gross within L x equity
    cash = gross / leverage - net + draw(st.floats(1.0, 2_000_000.0))
    weight = st.floats(-0.7 if allow_short else 0.0, 0.7)
    return {
        "allow_short": allow_short,
        "leverage": leverage,
        "cost_buffer_bps": draw(st.floats(0.0, 50.0)),
        "cash_buffer": draw(st.floats(0.0, 0.2)),
        "min_trade_value": draw(st.sampled_from([0.0, 500.0, 5_000.0])),
        "lots": {s: draw(st.sampled_from([1, 10, 100])) for s in symbols},
        "prices": prices,
        "holdings": holdings,
        "cash": cash,
        "weights": {s: draw(weight) for s in symbols if draw(st.booleans())},
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books())
def test_plan_with_any_feasible_book_never_breaches_leverage_or_cash_limits(book):
    # Arrange
    planner_ = planner(cost_buffer_bps=book["cost_buffer_bps"], allow_short=book["allow_short"],
                       max_leverage=book["leverage"], cash_buffer=book["cash_buffer"],
                       min_trade_value=book["min_trade_value"])

    # Act
    plan = run_plan(planner_, cash=book["cash"], prices=book["prices"], holdings=book["holdings"],
                    weights=book["weights"], lots=book["lots"])

    # Assert: recompute the outcome from the orders alone, at the given prices
    prices, after = book["prices"], dict(book["holdings"])
    cash = book["cash"]
    for o in plan.orders:
        symbol, signed = o.instrument_id.value.removeprefix("US_EQ:"), o.signed_quantity
        after[symbol] = after.get(symbol, 0.0) + signed
        cash -= signed * prices[symbol] + book["cost_buffer_bps"] / 1e4 * o.quantity * prices[symbol]
    equity = book["cash"] + sum(q * prices[s] for s, q in book["holdings"].items())
    gross = sum(abs(q) * prices[s] for s, q in after.items())
    tolerance = 1e-6 * equity
    assert gross <= book["leverage"] * equity + tolerance
    assert cash >= -(book["leverage"] - 1.0) * equity - tolerance
    assert plan.expected_cash_after == pytest.approx(cash, rel=1e-9, abs=1e-6)
    assert plan.expected_gross_exposure == pytest.approx(gross, rel=1e-9, abs=1e-6)
    sides = [o.side for o in plan.orders]
    assert sides == sorted(sides, key=lambda side: side is OrderSide.BUY)  # sells first
    assert [o.order_id.value[-5:] for o in plan.orders] == [f"{n:05d}" for n in range(1, len(plan.orders) + 1)]
