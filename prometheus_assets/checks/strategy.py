"""Checks of a strategy's assets: valid targets (blocking the book) and a book that reconciles.

They run inside the backtest's Dagster run and read the rows it wrote: under its staging id for a
``prometheus backtest`` run (``run_id_of``), which the check's metadata names (``run_id``).
"""

import dataclasses

import dagster as dg

from prometheus_assets.assets.strategy import MODE, run_id_of, strategy_keys
from prometheus_assets.checks import _range, to_result
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.backtest.checks import check_book, check_targets
from prometheus_lib.config.models import StrategyConfig


def _with_run_id(outcome, run_id: str) -> dg.AssetCheckResult:
    return to_result(dataclasses.replace(outcome, metadata={**outcome.metadata, "run_id": run_id}))


def build_strategy_checks(partitions_def: dg.PartitionsDefinition, strategy: StrategyConfig) -> list[dg.AssetChecksDefinition]:
    """Return the checks of ``strategy``'s decisions and book."""
    decisions_key, book_key = strategy_keys(strategy.strategy_id)
    portfolio_id = strategy.portfolios[0].portfolio_id

    @dg.asset_check(asset=decisions_key, name="targets_valid", blocking=True, partitions_def=partitions_def,
                    description="Target weights are finite, within [0, max_position_weight], sum to at most 1 "
                                "per session and only name instruments in the universe.")
    def targets_valid(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        run_id = run_id_of(context.op_execution_context, strategy)
        with warehouse.open() as wh:
            targets = wh.read_table("target_portfolios", start, end,
                                    {"run_id": run_id, "portfolio_id": portfolio_id, "mode": MODE})
            members = wh.read_table("universe_members", start, end,
                                    {"run_id": run_id, "strategy_id": strategy.strategy_id})
        return _with_run_id(check_targets(targets, members, max_position_weight=strategy.max_position_weight), run_id)

    @dg.asset_check(asset=book_key, name="book_reconciles", partitions_def=partitions_def,
                    description="Equity equals cash plus positions every session; no order is overfilled; "
                                "every fill has its order; cash stays within max_leverage.")
    def book_reconciles(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        run_id = run_id_of(context.op_execution_context, strategy)
        scope = {"run_id": run_id, "portfolio_id": portfolio_id, "mode": MODE}
        with warehouse.open() as wh:
            equity = wh.read_table("backtest_daily_equity", start, end, {"run_id": run_id})
            positions = wh.read_table("positions_snapshots", start, end, scope)
            orders = wh.read_table("orders", None, end, scope)  # earlier orders may fill in the range
            fills = wh.read_table("fills", start, end, scope)
        return _with_run_id(check_book(equity, positions, orders, fills, max_leverage=strategy.execution.max_leverage), run_id)

    return [targets_valid, book_reconciles]
