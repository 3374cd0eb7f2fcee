"""Golden figures: a fixed market (seed 7, 40 instruments) and config give these exact results.

Any change in the synthetic market, the dbt panels, the strategy, the planner, the simulator
or the costs moves at least one of these numbers. When a change is intended, regenerate them:
run

    .venv/bin/python -m pytest -q tests/lib/backtest/test_backtest_golden.py -p no:cacheprovider

and every failure prints the current figures as a ``GOLDEN = {...}`` literal to paste below
(say in the commit why they moved).

Floats are compared to 1e-9 relative: dbt's DuckDB build sums floats in parallel and moves
panel values in their last bits between builds (see test_backtest_lookahead.py), far below that.
"""

from __future__ import annotations

import numpy as np
import pytest
from backtest_providers import BACKTEST_SESSIONS, Backtest, order_list_sha256, run_backtest, strategy_config

from prometheus_lib.analytics import compute_metrics
from prometheus_lib.backtest.runner import BacktestData

# The platform's execution defaults (close fills, 5 bps, IBKR tiered) with a 1 % volume cap,
# so that some orders are cut and cancelled.
CONFIG = strategy_config(max_participation=0.01)
RUN_ID = "GOLDEN"

GOLDEN = {
    "sessions": 124,
    "orders": 1536,
    "fills": 1455,
    "cancelled_orders": 321,
    "final_equity": 10983452.799958143,
    "cumulative_return": 0.09834527999581444,
    "sharpe_ratio": 1.199490134811388,
    "max_drawdown": -0.06305422042459641,
    "commission": 3594.2700000000004,
    # sha256 of [order_id, side, quantity rounded to 1e-6, status] of every order, in id order
    "orders_sha256": "8e50a0e8cd0cf258fbf13e634890efd6a2e3eb0c1aef2cebbdef0c8eb1562093",
}


@pytest.fixture(scope="module")
def golden_run(market_data: BacktestData) -> Backtest:
    """The golden backtest: 2023-01-03..2023-06-30."""
    return run_backtest(market_data, CONFIG, BACKTEST_SESSIONS, run_id=RUN_ID)


def _figures(run: Backtest) -> dict[str, object]:
    frames = run.execution.frames()
    equity = frames["backtest_daily_equity"]["equity"].to_numpy()
    initial = CONFIG.portfolios[0].initial_capital
    metrics = compute_metrics(np.concatenate([[initial], equity]))
    orders = frames["orders"]
    return {
        "sessions": len(equity),
        "orders": orders.height,
        "fills": frames["fills"].height,
        "cancelled_orders": int((orders["status"] == "CANCELLED").sum()),
        "final_equity": float(equity[-1]),
        "cumulative_return": metrics.cumulative_return,
        "sharpe_ratio": metrics.sharpe_ratio,
        "max_drawdown": metrics.max_drawdown,
        "commission": float(frames["fills"]["commission"].sum()),
        "orders_sha256": order_list_sha256(orders),
    }


def _literal(figures: dict[str, object]) -> str:
    body = "".join(f"    {k!r}: {v!r},\n" for k, v in figures.items()).replace("'", '"')
    return "current figures, to paste if the change is intended:\nGOLDEN = {\n" + body + "}"


@pytest.mark.parametrize("key", [k for k, v in GOLDEN.items() if not isinstance(v, float)])
def test_backtest_with_fixed_seed_and_config_reproduces_exact_figure(golden_run: Backtest, key: str) -> None:
    # Act
    figures = _figures(golden_run)

    # Assert
    assert figures[key] == GOLDEN[key], _literal(figures)


@pytest.mark.parametrize("key", [k for k, v in GOLDEN.items() if isinstance(v, float)])
def test_backtest_with_fixed_seed_and_config_reproduces_statistic(golden_run: Backtest, key: str) -> None:
    # Act
    figures = _figures(golden_run)

    # Assert
    assert figures[key] == pytest.approx(GOLDEN[key], rel=1e-9), _literal(figures)
