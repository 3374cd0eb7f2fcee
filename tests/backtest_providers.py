"""Builders for the backtest tests: a dbt-built synthetic market shared by xdist workers, configs, runs.

``shared_market`` builds a synthetic market's panels once per test session *across* xdist
workers (a file lock in the workers' common temp folder; the first worker builds, the others
wait and reuse the file) and hands every caller its own copy of the DuckDB file, because a
DuckDB file takes one writer at a time and dbt costs seconds per build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from panel_data import CALENDAR, MARKET_ID, build_panels, fill_market, synthetic_frames

from prometheus_lib.backtest.runner import (
    BacktestData,
    BookState,
    DecisionRows,
    ExecutionRows,
    run_decisions,
    run_execution,
)
from prometheus_lib.config.models import (
    BaselineStrategyConfig,
    ExecutionConfig,
    PortfolioConfig,
    StrategyConfig,
)
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse
from prometheus_lib.strategies.baseline import BaselineStrategy

N_INSTRUMENTS = 40
HISTORY_START = date(2022, 1, 3)
HISTORY_END = date(2023, 6, 30)
BACKTEST_START = date(2023, 1, 3)
SESSIONS = CALENDAR.sessions(HISTORY_START, HISTORY_END)
BACKTEST_SESSIONS = [s for s in SESSIONS if s >= BACKTEST_START]
# Only the panels a backtest reads (correlation_panels is not one), and ``dbt run``: the dbt
# suite tests the models; here they are inputs.
PANEL_SELECT = "staging +returns_daily +volatility_daily +factors_daily +instrument_factors_daily"
# Columns stamped with the wall clock when rows are made: never part of a comparison.
CLOCK_COLUMNS = ("created_at", "ingested_at")

PricesTransform = Callable[[pl.DataFrame], pl.DataFrame]


def strategy_config(**execution: Any) -> StrategyConfig:
    """The strategy the backtest tests run: 12 of 40 names, default costs unless ``execution`` overrides.

    The defaults are the platform's (fills at the close, 5 bps slippage, IBKR tiered
    commission, 10 % of volume, remainder cancelled); the outcome horizon is 5 sessions so
    that a half-year backtest scores many decisions.
    """
    return StrategyConfig(
        strategy_id="BT_TEST",
        name="backtest test strategy",
        market_id=MARKET_ID,
        universe_size=12,
        max_position_weight=0.12,
        baseline=BaselineStrategyConfig(outcome_horizon_sessions=5),
        execution=ExecutionConfig(**execution),
        portfolios=(
            PortfolioConfig(portfolio_id="BT_TEST_MAIN", name="backtest test book", initial_capital=10_000_000.0),
        ),
    )


def _shared_dir(factory: pytest.TempPathFactory) -> Path:
    # Under xdist every worker's basetemp is <root>/popen-gw<N>; the root is common to all.
    base = factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


def shared_market(
    factory: pytest.TempPathFactory,
    name: str,
    transform: PricesTransform | None = None,
) -> dict[str, str]:
    """Return the location of a private copy of market ``name``, built (prices + panels) once per test session.

    ``transform`` changes the synthetic prices before they are written (its name must change
    with it: ``name`` keys the build).
    """
    shared = _shared_dir(factory) / "backtest_markets"
    shared.mkdir(exist_ok=True)
    built = shared / f"{name}.duckdb"
    done = shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            frames = synthetic_frames(N_INSTRUMENTS, HISTORY_START, HISTORY_END)
            if transform is not None:
                frames = {**frames, "prices_daily": transform(frames["prices_daily"])}
            location = {"backend": "duckdb", "duckdb_path": str(built)}
            fill_market(location, frames, HISTORY_START, HISTORY_END)
            run = build_panels(location, HISTORY_START, HISTORY_END, select=PANEL_SELECT,
                               work=shared / f"{name}_dbt", command="run")
            assert run.returncode == 0 and not run.failed, (run.failed, run.stdout[-3000:])
            done.touch()
    copy = factory.mktemp(name) / "warehouse.duckdb"
    shutil.copyfile(built, copy)
    return {"backend": "duckdb", "duckdb_path": str(copy)}


def load_data(location: Mapping[str, str], sessions: Sequence[date] = SESSIONS) -> BacktestData:
    """Load ``BacktestData`` for ``sessions`` from the warehouse at ``location``."""
    with open_warehouse(**location) as wh:
        return BacktestData.load(wh, market_id=MARKET_ID, sessions=sessions)


@dataclass(frozen=True)
class Backtest:
    """A backtest's output: the strategy rows, the execution rows, and the targets."""

    decisions: DecisionRows
    execution: ExecutionRows
    targets: dict

    def frames(self) -> dict[str, pl.DataFrame]:
        """Every table's frame, decisions then execution."""
        return {**self.decisions.frames(), **self.execution.frames()}


def run_backtest(
    data: BacktestData,
    config: StrategyConfig,
    sessions: Sequence[date] = BACKTEST_SESSIONS,
    *,
    run_id: str = "BT",
    start: BookState | None = None,
    strategy: BaselineStrategy | None = None,
) -> Backtest:
    """Run decisions then execution over ``sessions`` (from a fresh book unless ``start``)."""
    portfolio = config.portfolios[0]
    strategy = strategy or BaselineStrategy(config, data.index, data.sectors, run_id)
    rows, targets = run_decisions(data, strategy, portfolio, sessions, run_id=run_id)
    book = start or BookState.initial(portfolio.initial_capital)
    execution = run_execution(data, config, portfolio, sessions, targets, run_id=run_id, start=book)
    return Backtest(rows, execution, targets)


def comparable(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without wall-clock columns, sorted by the table's primary key."""
    frame = frame.drop([c for c in CLOCK_COLUMNS if c in frame.columns])
    return frame.sort(list(get_table(table).primary_key))


def assert_rows_match(table: str, actual: pl.DataFrame, expected: pl.DataFrame, rel: float = 0.0) -> None:
    """Assert two frames of ``table`` hold the same rows (wall-clock columns aside).

    ``rel == 0`` means bit for bit. Otherwise floats, and numbers inside JSON columns, may
    differ by ``rel`` (relative, and absolute near zero); everything else must be equal.
    """
    a, b = comparable(table, actual), comparable(table, expected)
    assert a.shape == b.shape, f"{table}: {a.shape} rows/columns, expected {b.shape}"
    t = get_table(table)
    # JSON is compared as data: PostgreSQL's jsonb keeps the values, not the text's layout.
    documents = [c for c in a.columns if t.column(c).type.name == "JSON"]
    if rel == 0.0:
        from polars.testing import assert_frame_equal

        assert_frame_equal(a.drop(documents), b.drop(documents), check_exact=True)
        for c in documents:
            parsed = [[None if x is None else json.loads(x) for x in f[c].to_list()] for f in (a, b)]
            assert parsed[0] == parsed[1], f"{table}.{c} differs"
        return
    for c in a.columns:
        kind = t.column(c).type.name
        if a[c].dtype.is_float():
            x, y = a[c].to_numpy(), b[c].to_numpy()
            assert np.array_equal(np.isnan(x), np.isnan(y)), f"{table}.{c}: missing values differ"
            np.testing.assert_allclose(x, y, rtol=rel, atol=rel, equal_nan=True, err_msg=f"{table}.{c}")
        elif kind == "JSON":
            for n, (x, y) in enumerate(zip(a[c].to_list(), b[c].to_list())):
                _assert_json_close(None if x is None else json.loads(x), None if y is None else json.loads(y),
                                   rel, f"{table}.{c}[{n}]")
        else:
            assert a[c].to_list() == b[c].to_list(), f"{table}.{c} differs"


def _assert_json_close(x: Any, y: Any, rel: float, where: str) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        assert x.keys() == y.keys(), f"{where}: keys {sorted(x)} != {sorted(y)}"
        for k in x:
            _assert_json_close(x[k], y[k], rel, f"{where}.{k}")
    elif isinstance(x, list) and isinstance(y, list):
        assert len(x) == len(y), f"{where}: lengths {len(x)} != {len(y)}"
        for n, (u, v) in enumerate(zip(x, y)):
            _assert_json_close(u, v, rel, f"{where}[{n}]")
    elif isinstance(x, float) and isinstance(y, float | int):
        assert y == pytest.approx(x, rel=rel, abs=rel), where
    else:
        assert x == y, f"{where}: {x!r} != {y!r}"


def rows_until(table: str, frame: pl.DataFrame, session: date) -> pl.DataFrame:
    """The rows of ``frame`` whose session (the table's partition column) is at or before ``session``."""
    return frame.filter(pl.col(date_column(table)) <= session)


def date_column(table: str) -> str:
    """The session column a table is partitioned by."""
    column = get_table(table).partition_column
    assert column is not None, table
    return column


def write_frames(
    warehouse: Warehouse,
    frames: Mapping[str, pl.DataFrame],
    start: date,
    end: date,
    values: Mapping[str, str],
) -> dict[str, int]:
    """Write each frame as the partition ``start..end`` of its table, scoped by the table's scope columns."""
    written = {}
    for table, frame in frames.items():
        scope = {c: values[c] for c in get_table(table).scope_columns}
        written[table] = warehouse.write_partition(table, frame, start, end, scope).rows_written
    return written


def scope_values(config: StrategyConfig, run_id: str) -> dict[str, str]:
    """Values of every run table's scope columns for ``config``'s book in ``run_id``."""
    return {"run_id": run_id, "strategy_id": config.strategy_id, "portfolio_id": config.portfolios[0].portfolio_id,
            "mode": "BACKTEST", "market_id": config.market_id}


def order_list_sha256(orders: pl.DataFrame) -> str:
    """sha256 of the orders' ids, sides, quantities (rounded to 1e-6) and statuses, in id order."""
    rows = [
        [r["order_id"], r["side"], round(r["quantity"], 6), r["status"]]
        for r in orders.sort("order_id").iter_rows(named=True)
    ]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def perturb_after(session: date, seed: int = 11) -> PricesTransform:
    """A prices transform that scales every OHLC bar after ``session`` by a random factor and the volume by another."""

    def transform(prices: pl.DataFrame) -> pl.DataFrame:
        rng = np.random.default_rng(seed)
        after = pl.col("session_date") > session
        price_factor = pl.Series(np.exp(rng.normal(0.0, 0.05, prices.height)))
        volume_factor = pl.Series(rng.uniform(0.3, 3.0, prices.height))
        out = prices.with_columns(
            *[pl.when(after).then(pl.col(c) * price_factor).otherwise(pl.col(c)).alias(c)
              for c in ("open", "high", "low", "close", "adjusted_close")],
            pl.when(after).then(pl.col("volume") * volume_factor).otherwise(pl.col("volume")).alias("volume"),
        )
        return out

    return transform
