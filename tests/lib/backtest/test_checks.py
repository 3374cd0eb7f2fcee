"""The strategy data-quality rules: targets and book, each with a planted fault."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from prometheus_lib.backtest.checks import check_book, check_targets

D1, D2 = date(2024, 1, 2), date(2024, 1, 3)


def _targets(weights: list[tuple[date, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(weights, schema=["session_date", "instrument_id", "target_weight"], orient="row")


MEMBERS = pl.DataFrame([(D1, "A", True), (D1, "B", True), (D1, "C", False), (D2, "A", True), (D2, "B", True)],
                       schema=["session_date", "instrument_id", "included"], orient="row")


def test_check_targets_with_valid_weights_passes():
    outcome = check_targets(_targets([(D1, "A", 0.5), (D1, "B", 0.5), (D2, "A", 0.3)]), MEMBERS, max_position_weight=0.5)
    assert outcome.passed and "3 target weights over 2 sessions" in outcome.description


@pytest.mark.parametrize("weights,problem", [
    ([(D1, "A", 0.6)], "weights_out_of_range"),
    ([(D1, "A", float("nan"))], "weights_out_of_range"),
    ([(D1, "A", -0.1)], "weights_out_of_range"),
    ([(D1, "A", 0.5), (D1, "B", 0.5), (D1, "B", 0.1)], "sessions_over_fully_invested"),
    ([(D1, "C", 0.1)], "targets_outside_universe"),
])
def test_check_targets_with_planted_fault_fails_naming_it(weights, problem):
    outcome = check_targets(_targets(weights), MEMBERS, max_position_weight=0.5)
    assert not outcome.passed and outcome.metadata[problem] >= 1 and problem in outcome.description


def _book(cash2: float = 40.0, fill_qty: float = 10.0, fill_order: str = "O1"):
    equity = pl.DataFrame({"session_date": [D1, D2], "equity": [100.0, 101.0], "cash": [100.0, cash2]})
    positions = pl.DataFrame({"session_date": [D2], "market_value": [61.0]})
    orders = pl.DataFrame({"order_id": ["O1"], "quantity": [10.0]})
    fills = pl.DataFrame({"order_id": [fill_order], "quantity": [fill_qty]})
    return equity, positions, orders, fills


def test_check_book_with_consistent_book_passes():
    assert check_book(*_book(), max_leverage=1.0).passed


@pytest.mark.parametrize("kwargs,problem", [
    ({"cash2": 41.0}, "sessions_not_reconciling"),
    ({"fill_qty": 11.0}, "overfilled_orders"),
    ({"fill_order": "O9"}, "fills_without_order_in_range"),
])
def test_check_book_with_planted_fault_fails_naming_it(kwargs, problem):
    outcome = check_book(*_book(**kwargs), max_leverage=1.0)
    assert not outcome.passed and outcome.metadata[problem] == 1


def test_check_book_with_cash_borrowed_beyond_leverage_fails():
    equity = pl.DataFrame({"session_date": [D1], "equity": [100.0], "cash": [-30.0]})
    positions = pl.DataFrame({"session_date": [D1], "market_value": [130.0]})
    empty = pl.DataFrame({"order_id": [], "quantity": []}, schema={"order_id": pl.String, "quantity": pl.Float64})
    assert not check_book(equity, positions, empty, empty, max_leverage=1.2).passed
    assert check_book(equity, positions, empty, empty, max_leverage=1.5).passed
