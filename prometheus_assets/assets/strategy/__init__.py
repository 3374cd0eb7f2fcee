"""A strategy as two session-partitioned assets: its decisions and its book. A backfill is a backtest.

* ``<strategy>/decisions`` runs the strategy engine at every session of the partition range and
  writes instrument_scores, universes, universe_members, target_portfolios,
  portfolio_risk_reports, engine_decisions and decision_outcomes.
* ``<strategy>/book`` executes those targets through the BacktestBroker, session by session,
  starting from the book saved at the session before the range (positions and cash at T-1 feed
  T), and writes orders, fills, positions_snapshots, executed_actions, backtest_trades,
  backtest_daily_equity, then backtest_runs (config and metrics over the run's whole curve).

Both carry a single-run backfill policy: a range is one run. Why two assets and not one per
table: Dagster's bookkeeping costs a few milliseconds per materialised (asset, session) on the
embedded SQLite storage, so the session-partitioned asset count is what a ten-year backtest
pays for; the tables each asset writes are listed in its metadata, and every session still has
its own materialisation (lineage per session in the UI).

Rows belong to a run id: the run tag ``prometheus/backtest_run_id`` or, by default,
``<strategy>-<config hash>``. Re-materialising a range with the same id replaces exactly those
sessions of that run; runs with different ids coexist.

A run launched by ``prometheus backtest`` also carries the tag
``prometheus/backtest_staging_run_id``: its assets (and checks) write and read under that
staging id, and the command promotes the complete result to the run id afterwards
(``prometheus_lib.backtest.rerun``). A re-execution of such a run (from the UI) has a parent run
and writes under the run id directly, like any run launched from the UI.
"""

import json
import time
from datetime import date, datetime, timezone

import dagster as dg
import numpy as np
import polars as pl

from prometheus_assets.assets.assessment import assessment_key
from prometheus_assets.constants import HISTORICAL, RUNTIME, STRATEGY_GROUP_PREFIX
from prometheus_assets.markets import MarketScope
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.analytics import compute_metrics
from prometheus_lib.assessment.engine import run_id_of as assessment_run_id
from prometheus_lib.backtest.runner import (
    BacktestData,
    load_book_state,
    run_decisions,
    run_execution,
)
from prometheus_lib.config.models import StrategyConfig
from prometheus_lib.errors import DataValidationError
from prometheus_lib.execution.domain import InstrumentId
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.strategies.baseline import BaselineStrategy, lookback_sessions

RUN_ID_TAG = "prometheus/backtest_run_id"
STAGING_RUN_ID_TAG = "prometheus/backtest_staging_run_id"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"  # set on re-executions
MODE = "BACKTEST"
DECISION_TABLES = ("instrument_scores", "universes", "universe_members", "target_portfolios",
                   "portfolio_risk_reports", "engine_decisions", "decision_outcomes")
BOOK_TABLES = ("orders", "fills", "positions_snapshots", "executed_actions", "backtest_trades",
               "backtest_daily_equity", "backtest_runs")


def default_run_id(strategy: StrategyConfig) -> str:
    """The run id of a strategy's backtest when the run does not name one."""
    return f"{strategy.strategy_id}-{strategy.config_hash()[:8]}"


def result_run_id(context: dg.AssetExecutionContext, strategy: StrategyConfig) -> str:
    """The backtest run id whose result this Dagster run makes (tag, else the strategy's default)."""
    return context.run.tags.get(RUN_ID_TAG) or default_run_id(strategy)


def run_id_of(context: dg.AssetExecutionContext, strategy: StrategyConfig) -> str:
    """The run id this Dagster run writes and reads rows under.

    The staging id of a ``prometheus backtest`` run (promoted to the run id once complete),
    else the result's run id (:func:`result_run_id`). A re-execution of a staged run writes
    under the run id: its staging set is gone by then (promoted or discarded).
    """
    tags = context.run.tags
    staging = tags.get(STAGING_RUN_ID_TAG)
    if staging and PARENT_RUN_ID_TAG not in tags:
        return staging
    return result_run_id(context, strategy)


def _run_metadata(context: dg.AssetExecutionContext, strategy: StrategyConfig, run_id: str) -> dict[str, str]:
    result = result_run_id(context, strategy)
    return {"run_id": result} if result == run_id else {"run_id": result, "staging_run_id": run_id}


def strategy_keys(strategy_id: str) -> tuple[dg.AssetKey, dg.AssetKey]:
    """Asset keys of a strategy's decisions and book."""
    base = strategy_id.lower()
    return dg.AssetKey([RUNTIME, base, "decisions"]), dg.AssetKey([RUNTIME, base, "book"])


def strategy_group(strategy_id: str) -> str:
    """Asset group of a strategy's assets."""
    return f"{STRATEGY_GROUP_PREFIX}{strategy_id.lower()}"


def _scope(table: str, values: dict[str, str]) -> dict[str, str]:
    return {c: values[c] for c in get_table(table).scope_columns}


def _write_all(wh, frames: dict[str, pl.DataFrame], start: date, end: date, values: dict[str, str]) -> dict[str, int]:
    """Replace the range of every table in one transaction; return the rows written per table."""
    with wh.transaction():
        return {table: wh.write_partition(table, frame, start, end, _scope(table, values)).rows_written
                for table, frame in frames.items()}


def _history_sessions(platform: PlatformResource, market_id: str, start: date, end: date, lookback: int) -> list[date]:
    cal = platform.calendar(market_id)
    first = cal.session_offset(start, -lookback) if lookback else start
    first = max(first, cal.first_session)
    return cal.sessions(first, end)


def build_strategy_assets(partitions_def: dg.PartitionsDefinition, strategy: StrategyConfig,
                          market: MarketScope | None = None) -> list[dg.AssetsDefinition]:
    """Return the decisions and book assets of ``strategy`` over ``partitions_def`` (its market's sessions).

    ``market`` names the assets of the strategy's market that they read (default: unprefixed,
    the primary market's).
    """
    market = market or MarketScope(strategy.market_id, is_primary=True)
    decisions_key, book_key = strategy_keys(strategy.strategy_id)
    portfolio = strategy.portfolios[0]
    market_id = strategy.market_id
    common = dict(
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=strategy_group(strategy.strategy_id),
    )
    def scope_values(run_id: str) -> dict[str, str]:
        return {"run_id": run_id, "strategy_id": strategy.strategy_id,
                "portfolio_id": portfolio.portfolio_id, "mode": MODE, "market_id": market_id}

    panel_deps = [market.key(HISTORICAL, t) for t in
                  ("prices_daily", "returns_daily", "volatility_daily", "instrument_factors_daily", "factors_daily")]

    if strategy.baseline.score_source == "assessment":
        # The decisions read the assessment's instrument_scores of the same sessions.
        panel_deps = [*panel_deps, assessment_key(strategy.strategy_id, "instrument_scores")]

    @dg.asset(
        key=decisions_key,
        deps=panel_deps,
        metadata={"prometheus/tables": list(DECISION_TABLES), "strategy_id": strategy.strategy_id},
        description=f"{strategy.strategy_id}: scores, universe, target weights, risk reports and decisions per session.",
        **common,
    )
    def decisions(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        """Strategy decisions per session: scores, universe, targets, risk, engine decisions and outcomes."""
        t0 = time.perf_counter()
        sessions = keys_to_sessions(context.partition_keys)
        start, end = sessions[0], sessions[-1]
        run_id = run_id_of(context, strategy)
        with warehouse.open() as wh:
            history = _history_sessions(platform, market_id, start, end, lookback_sessions(strategy))
            data = BacktestData.load(wh, market_id=market_id, sessions=history, scores=(
                assessment_run_id(strategy.strategy_id), strategy.strategy_id)
                if strategy.baseline.score_source == "assessment" else None)
            prior = _prior_targets(wh, run_id, portfolio.portfolio_id, history, start, strategy, data)
            engine = BaselineStrategy(strategy, data.index, data.sectors, run_id, prior_targets=prior)
            rows, targets = run_decisions(data, engine, portfolio, sessions, run_id=run_id)
            written = _write_all(wh, rows.frames(), start, end, scope_values(run_id))
        held = [len(t) for t in targets.values()]
        return dg.MaterializeResult(metadata={
            **_run_metadata(context, strategy, run_id),
            "sessions": len(sessions), "first_session": str(start), "last_session": str(end),
            "mean_holdings": float(np.mean(held)) if held else 0.0, "config_hash": strategy.config_hash(),
            "compute_seconds": round(time.perf_counter() - t0, 3),
            **{f"rows/{t}": n for t, n in written.items()},
        })

    @dg.asset(
        key=book_key,
        deps=[decisions_key, market.key(HISTORICAL, "prices_daily"), market.key(HISTORICAL, "volatility_daily"),
              market.key(HISTORICAL, "corporate_actions")],
        metadata={"prometheus/tables": list(BOOK_TABLES), "strategy_id": strategy.strategy_id},
        description=f"{strategy.strategy_id}: the book executed session by session (orders, fills, positions, equity).",
        **common,
    )
    def book(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        """The book executed per session: orders, fills, positions, equity; backtest_runs with metrics."""
        t0 = time.perf_counter()
        sessions = keys_to_sessions(context.partition_keys)
        start, end = sessions[0], sessions[-1]
        run_id = run_id_of(context, strategy)
        cal = platform.calendar(market_id)
        with warehouse.open() as wh:
            previous = cal.previous_session(start) if start > cal.first_session else None
            state = load_book_state(wh, run_id=run_id, portfolio=portfolio, before=start)
            if state.as_of is not None and state.as_of != previous:
                raise DataValidationError(
                    f"backtest run {run_id!r} has its last book at {state.as_of}, not at {previous} (the session "
                    f"before {start}): materialise {strategy.strategy_id}'s book from {cal.next_session(state.as_of)} first"
                )
            data = BacktestData.load(wh, market_id=market_id, sessions=_history_sessions(platform, market_id, start, end, 1))
            targets = _load_targets(wh, run_id, portfolio.portfolio_id, start, end)
            missing = [s for s in sessions if s not in targets]
            if len(missing) == len(sessions):
                raise DataValidationError(
                    f"no target_portfolios rows for run {run_id!r} in {start}..{end}: materialise "
                    f"{decisions_key.to_user_string()} for this range first"
                )
            result = run_execution(data, strategy, portfolio, sessions, targets, run_id=run_id, start=state)
            with wh.transaction():
                written = _write_all(wh, result.frames(), start, end, scope_values(run_id))
                metrics = _write_backtest_run(wh, strategy, run_id, context.run.run_id)
        eq = result.backtest_daily_equity
        return dg.MaterializeResult(metadata={
            **_run_metadata(context, strategy, run_id),
            "sessions": len(sessions), "first_session": str(start), "last_session": str(end),
            "final_equity": float(eq[-1]["equity"]) if eq else None,
            "cumulative_return_run": metrics.get("cumulative_return"), "sharpe_run": metrics.get("sharpe_ratio"),
            "max_drawdown_run": metrics.get("max_drawdown"),
            "compute_seconds": round(time.perf_counter() - t0, 3),
            **{f"rows/{t}": n for t, n in written.items()},
        })

    return [decisions, book]


def _prior_targets(wh, run_id, portfolio_id, history, start, strategy, data) -> dict:
    """Targets of the ``outcome_horizon`` sessions before ``start``, so outcomes continue across runs."""
    h = strategy.baseline.outcome_horizon_sessions
    before = [s for s in history if s < start][-h:]
    if not before:
        return {}
    tp = wh.read_table("target_portfolios", start=before[0], end=before[-1],
                       scope={"run_id": run_id, "portfolio_id": portfolio_id, "mode": MODE})
    out = {}
    for (session,), g in tp.group_by(["session_date"]):
        w = np.zeros(len(data.index))
        for iid, weight in zip(g["instrument_id"].to_list(), g["target_weight"].to_list()):
            k = data.index.position(iid)
            if k is not None:
                w[k] = weight
        out[session] = (f"{run_id}:{strategy.strategy_id}:{session.isoformat()}", w)
    return out


def _load_targets(wh, run_id, portfolio_id, start, end) -> dict[date, dict[InstrumentId, float]]:
    tp = wh.read_table("target_portfolios", start=start, end=end,
                       scope={"run_id": run_id, "portfolio_id": portfolio_id, "mode": MODE})
    out: dict[date, dict[InstrumentId, float]] = {}
    for s, i, w in zip(tp["session_date"].to_list(), tp["instrument_id"].to_list(), tp["target_weight"].to_list()):
        out.setdefault(s, {})[InstrumentId(i)] = w
    # sessions with an empty target (all cash) have a universes row but no target rows
    un = wh.read_table("universes", start=start, end=end, scope={"run_id": run_id})
    for s in un["session_date"].to_list():
        out.setdefault(s, {})
    return out


def backtest_series(wh, run_id: str, market_id: str, benchmark_factor: str):
    """Return (dates, equity, benchmark returns, trade pnl, traded value, start capital) of a run from the warehouse."""
    eq = wh.read_table("backtest_daily_equity", scope={"run_id": run_id}).sort("session_date")
    if eq.is_empty():
        return None
    dates = eq["session_date"].to_list()
    bench = wh.read_table("factors_daily", start=dates[0], end=dates[-1], scope={"market_id": market_id})
    bench = bench.filter(pl.col("factor_id") == benchmark_factor)
    bmap = dict(zip(bench["session_date"].to_list(), bench["factor_return"].to_list()))
    trades = wh.read_table("backtest_trades", scope={"run_id": run_id})
    traded = {}
    for r in eq.iter_rows(named=True):
        traded[r["session_date"]] = json.loads(r["exposure_metrics_json"] or "{}").get("traded_value", 0.0)
    return dates, eq["equity"].to_numpy(), bmap, trades, traded


def run_performance(wh, strategy: StrategyConfig, run_id: str):
    """Return (dates, equity curve with the starting capital first, benchmark curve or None, metrics) of a run."""
    series = backtest_series(wh, run_id, strategy.market_id, strategy.benchmark_factor)
    if series is None:
        return None
    dates, equity, bmap, trades, traded = series
    capital = strategy.portfolios[0].initial_capital
    curve = np.concatenate([[capital], equity])
    bench = np.array([bmap.get(d) if bmap.get(d) is not None else np.nan for d in dates], dtype=float)
    has_bench = bool(np.isfinite(bench).all())
    metrics = compute_metrics(
        curve,
        benchmark_returns=bench if has_bench else None,
        trade_pnl=trades["pnl"].drop_nulls().to_numpy() if trades.height else None,
        traded_value=np.concatenate([[0.0], [traded[d] for d in dates]]),
    )
    bench_curve = capital * np.concatenate([[1.0], np.cumprod(1.0 + bench)]) if has_bench else None
    return dates, curve, bench_curve, metrics


def _json_safe(value):
    """Replace non-finite floats (e.g. the open-ended IBKR tier) by None: JSON has no Infinity."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_backtest_run(wh, strategy: StrategyConfig, run_id: str, dagster_run_id: str) -> dict:
    dates, curve, _, perf = run_performance(wh, strategy, run_id)
    metrics = perf.to_dict()
    metrics["final_equity"] = float(curve[-1])
    metrics["initial_capital"] = float(curve[0])
    row = pl.DataFrame([{
        "run_id": run_id, "strategy_id": strategy.strategy_id, "sleeve_id": strategy.portfolios[0].portfolio_id,
        "start_date": dates[0], "end_date": dates[-1],
        "config_json": json.dumps(_json_safe(strategy.model_dump(mode="json")), sort_keys=True),
        "created_at": datetime.now(timezone.utc), "metrics_json": json.dumps(metrics, sort_keys=True),
        "dagster_run_id": dagster_run_id,
    }], schema=get_table("backtest_runs").polars_schema)
    wh.replace_table("backtest_runs", row, {"run_id": run_id})
    return metrics


__all__ = ["RUN_ID_TAG", "STAGING_RUN_ID_TAG", "backtest_series", "run_performance", "build_strategy_assets", "default_run_id", "strategy_group", "strategy_keys"]
