"""Data-quality rules of a strategy's outputs: valid targets, and a book that reconciles.

Both take the frames of one run id and session range (as written to the warehouse) and return a
``CheckOutcome`` (ERROR severity) whose metadata carries a few failing examples.
"""

from __future__ import annotations

import polars as pl

from prometheus_lib.data.quality import CheckOutcome, Severity

_EXAMPLES = 5
# Relative tolerance of the book identity equity = cash + positions (float sums of ~50 values).
_RECONCILE_RTOL = 1e-9


def _examples(frame: pl.DataFrame) -> list[dict]:
    return [{k: (str(v) if v is not None else None) for k, v in r.items()} for r in frame.head(_EXAMPLES).to_dicts()]


def check_targets(targets: pl.DataFrame, members: pl.DataFrame, *, max_position_weight: float) -> CheckOutcome:
    """Target weights are finite, in [0, cap], sum to at most 1 per session, and only name universe members."""
    bad_weight = targets.filter(
        ~pl.col("target_weight").is_finite()
        | (pl.col("target_weight") < 0)
        | (pl.col("target_weight") > max_position_weight * (1 + 1e-12))
    )
    sums = targets.group_by("session_date").agg(pl.col("target_weight").sum().alias("total"))
    over = sums.filter(pl.col("total") > 1 + 1e-9).sort("session_date")
    included = members.filter(pl.col("included")).select("session_date", "instrument_id")
    outside = targets.join(included, on=["session_date", "instrument_id"], how="anti")
    problems = {
        "weights_out_of_range": bad_weight.height,
        "sessions_over_fully_invested": over.height,
        "targets_outside_universe": outside.height,
    }
    return _outcome(problems, f"{targets.height} target weights over {sums.height} sessions are valid",
                    "invalid targets", {"max_position_weight": max_position_weight}, bad_weight, over, outside)


def check_book(equity: pl.DataFrame, positions: pl.DataFrame, orders: pl.DataFrame, fills: pl.DataFrame,
               *, max_leverage: float) -> CheckOutcome:
    """Each session's equity equals cash plus positions; no order is overfilled; cash stays within leverage."""
    held = positions.group_by("session_date").agg(pl.col("market_value").sum().alias("positions_value"))
    book = equity.join(held, on="session_date", how="left").with_columns(pl.col("positions_value").fill_null(0.0))
    off = book.filter(
        (pl.col("equity") - pl.col("cash") - pl.col("positions_value")).abs()
        > _RECONCILE_RTOL * pl.max_horizontal(pl.col("equity").abs(), pl.lit(1.0))
    )
    filled = fills.group_by("order_id").agg(pl.col("quantity").sum().alias("filled"))
    overfilled = orders.join(filled, on="order_id").filter(pl.col("filled") > pl.col("quantity") * (1 + 1e-9))
    orphan = fills.join(orders.select("order_id"), on="order_id", how="anti")
    borrowed = book.filter(pl.col("cash") < -(max_leverage - 1.0) * pl.col("equity") - 1e-6 * pl.col("equity").abs())
    problems = {
        "sessions_not_reconciling": off.height,
        "overfilled_orders": overfilled.height,
        "fills_without_order_in_range": orphan.height,
        "sessions_beyond_leverage": borrowed.height,
    }
    return _outcome(problems, f"book reconciles over {book.height} sessions ({orders.height} orders, {fills.height} fills)",
                    "book does not reconcile", {"max_leverage": max_leverage}, off, overfilled, orphan, borrowed)


def _outcome(problems: dict[str, int], ok: str, failed: str, settings: dict, *offenders: pl.DataFrame) -> CheckOutcome:
    """An ERROR-severity outcome: passed when every problem count is 0; counts, settings and example rows as metadata."""
    passed = not any(problems.values())
    description = ok if passed else f"{failed}: " + ", ".join(f"{k}={v}" for k, v in problems.items() if v)
    examples = [row for frame in offenders for row in _examples(frame)]
    return CheckOutcome(passed, Severity.ERROR, description, {**problems, **settings, "examples": examples})
