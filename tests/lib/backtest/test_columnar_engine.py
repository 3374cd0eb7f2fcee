"""The columnar execution engine against the object engine: identical rows, identical end books.

``run_execution`` runs the columnar engine (prometheus_lib/backtest/columnar.py) by default and
the object engine (``BacktestBroker`` + ``MarketSimulator`` behind ``apply_execution_plan``) on
request. Both apply the same rules; these tests run the same targets on the same dbt-built market
through both and require every execution row (in order, JSON text included) and the final book to
be equal, bit for bit, over configurations that exercise each rule: fills at the close and at the
next open, volume caps with the remainder cancelled or carried (partial fills, fills of carried
orders on later sessions), lots and minimum trades, the buying-power cut (slippage above the
planner's cost buffer), every slippage and commission model, missing prices, zero-volume sessions,
and books resumed mid-run with orders still working.
"""

from __future__ import annotations

import gc
import json
import math
from datetime import date

import numpy as np
import polars as pl
import pytest
from backtest_providers import BACKTEST_SESSIONS, SESSIONS, shared_market, strategy_config
from panel_data import MARKET_ID
from polars.testing import assert_frame_equal

from prometheus_lib.backtest.columnar import columnar_supported
from prometheus_lib.backtest.runner import (
    PANEL_COLUMNS,
    BacktestData,
    BookState,
    run_decisions,
    run_execution,
)
from prometheus_lib.errors import DataValidationError
from prometheus_lib.execution.domain import InstrumentId, Order, OrderId, OrderSide, OrderType, PortfolioId
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.strategies.baseline import BaselineStrategy

pytestmark = pytest.mark.xdist_group("backtest_columnar")

CONFIGS = {
    "platform defaults": {},
    "carry at 1 % of volume": {"max_participation": 0.01, "remainder": "carry"},
    "cancel at 2 % of volume": {"max_participation": 0.02, "remainder": "cancel"},
    "next open, carry at 2 %": {"fill_at": "next_open", "max_participation": 0.02, "remainder": "carry"},
    "next open, no cap": {"fill_at": "next_open", "max_participation": None},
    "lots of 100, sqrt impact, per share": {
        "lot_size": 100, "min_trade_value": 50_000.0,
        "slippage": {"model": "sqrt_impact", "impact_coefficient": 0.5},
        "commission": {"model": "per_share", "per_share": 0.01, "minimum": 5.0},
    },
    "buying power cut: 80 bps slippage, no cash buffer": {
        "slippage": {"model": "fixed_bps", "bps": 80.0}, "commission": {"model": "bps", "bps": 5.0},
        "max_participation": None, "cash_buffer": 0.0,
    },
    "leverage 1.5, no costs": {
        "max_leverage": 1.5, "slippage": {"model": "none"}, "commission": {"model": "none"}, "min_trade_value": 0.0,
    },
}


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, pl.DataFrame]:
    location = shared_market(tmp_path_factory, "base")
    with open_warehouse(**location) as wh:
        out = {name: wh.read_table(name, SESSIONS[0], SESSIONS[-1], {"market_id": MARKET_ID}, list(cols))
               for name, cols in PANEL_COLUMNS.items()}
        out["instruments"] = wh.read_table("instruments", scope={"market_id": MARKET_ID})
    return out


def _data(frames: dict[str, pl.DataFrame], prices: pl.DataFrame | None = None) -> BacktestData:
    panels = {k: v for k, v in frames.items() if k != "instruments"}
    if prices is not None:
        panels["prices_daily"] = prices
    return BacktestData.from_frames(SESSIONS, panels, frames["instruments"])


@pytest.fixture(scope="module")
def targets(frames) -> dict:
    config = strategy_config()
    data = _data(frames)
    strategy = BaselineStrategy(config, data.index, data.sectors, "COL")
    _, out = run_decisions(data, strategy, config.portfolios[0], BACKTEST_SESSIONS, run_id="COL")
    return out


def _run(data, config, targets, engine, sessions=BACKTEST_SESSIONS, start=None):
    portfolio = config.portfolios[0]
    start = start or BookState.initial(portfolio.initial_capital)
    return run_execution(data, config, portfolio, sessions, targets, run_id="COL", start=start, engine=engine)


def assert_same_execution(a, b) -> None:
    fa, fb = a.frames(), b.frames()
    assert list(fa) == list(fb)
    for name in fa:
        # rows in the same order, every column exactly (JSON compared as text: byte for byte)
        assert_frame_equal(fa[name], fb[name], check_exact=True, check_dtypes=True), name
    assert a.final == b.final
    assert a.traded_value == b.traded_value


@pytest.mark.parametrize("name", list(CONFIGS))
def test_columnar_engine_writes_what_the_object_engine_writes(frames, targets, name):
    config = strategy_config(**CONFIGS[name])
    data = _data(frames)
    objects = _run(data, config, targets, "objects")
    columnar = _run(data, config, targets, "columnar")
    assert_same_execution(columnar, objects)
    n_orders = objects.frames()["orders"].height
    assert n_orders > 100  # the configuration trades
    if "carry" in name:
        fills = objects.frames()["fills"]
        assert fills.filter(pl.col("fill_id").str.ends_with("-F2")).height > 0  # carried orders filled later
    if name.startswith("buying power"):
        reasons = objects.frames()["orders"]["metadata"].str.contains("insufficient buying power")
        assert reasons.sum() > 0  # the cut happened


def _untradable(prices: pl.DataFrame) -> pl.DataFrame:
    """Knock out closes/opens (NaN and null) and zero some volumes, deterministically."""
    rng = np.random.default_rng(7)
    n = prices.height
    drop_close = rng.random(n) < 0.03
    drop_open = rng.random(n) < 0.03
    no_volume = rng.random(n) < 0.03
    return prices.with_columns(
        pl.when(pl.Series(drop_close)).then(None).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.Series(drop_open)).then(float("nan")).otherwise(pl.col("open")).alias("open"),
        pl.when(pl.Series(no_volume)).then(0.0).otherwise(pl.col("volume")).alias("volume"),
    )


@pytest.mark.parametrize("remainder", ["cancel", "carry"])
@pytest.mark.parametrize("fill_at", ["close", "next_open"])
def test_missing_prices_and_untraded_sessions(frames, targets, fill_at, remainder):
    config = strategy_config(fill_at=fill_at, remainder=remainder, max_participation=0.05)
    data = _data(frames, _untradable(frames["prices_daily"]))
    objects = _run(data, config, targets, "objects")
    columnar = _run(data, config, targets, "columnar")
    assert_same_execution(columnar, objects)
    f = objects.frames()
    # the reasons are on record: cancels in executed_actions, carried orders in the day's open orders
    text = pl.concat([f["executed_actions"]["metadata"], f["backtest_daily_equity"]["exposure_metrics_json"]])
    assert text.str.contains("did not trade").sum() > 0
    if fill_at == "next_open":  # (at the close a missing close means no plan for the name, so no order)
        assert text.str.contains(r"open of \S+ on \S+ is nan").sum() > 0


@pytest.mark.parametrize("fill_at", ["close", "next_open"])
def test_resumed_books_with_working_orders(frames, targets, fill_at):
    """Half a run on one engine, the rest from its end book on the other: equal to one whole run."""
    config = strategy_config(fill_at=fill_at, remainder="carry", max_participation=0.01)
    data = _data(frames)
    whole = _run(data, config, targets, "objects")
    # split after a session that ends with a partly filled order still working (volume-capped)
    ends = [json.loads(r["exposure_metrics_json"])["open_orders"] for r in whole.backtest_daily_equity]
    cut = next(k for k, opens in enumerate(ends) if k > 2 and any(o["filled_quantity"] > 0 for o in opens)) + 1
    first, second = BACKTEST_SESSIONS[:cut], BACKTEST_SESSIONS[cut:]
    for engine_a, engine_b in (("objects", "columnar"), ("columnar", "objects"), ("columnar", "columnar")):
        a = _run(data, config, targets, engine_a, first)
        assert a.final.open_orders, "the split must carry working orders"
        assert any(o.filled_quantity > 0 for o in a.final.open_orders), "and a partly filled one"
        b = _run(data, config, targets, engine_b, second, start=a.final)
        assert b.final == whole.final
        fw = whole.frames()
        for name, frame in b.frames().items():
            tail = fw[name].filter(pl.col("session_date") >= second[0])
            assert_frame_equal(frame, tail, check_exact=True), name


def test_engine_choice(frames, targets):
    data = _data(frames)
    config = strategy_config()
    pf = config.portfolios[0]
    fresh = BookState.initial(pf.initial_capital)
    assert columnar_supported(data, fresh, targets)
    assert not columnar_supported(data, fresh, {date(2023, 1, 3): {InstrumentId("XX:NOT_LISTED"): 0.1}})
    limit = Order(order_id=OrderId("L1"), portfolio_id=PortfolioId(pf.portfolio_id),
                  instrument_id=InstrumentId(data.index.ids[0]), side=OrderSide.BUY, quantity=10.0,
                  session_date=BACKTEST_SESSIONS[0], order_type=OrderType.LIMIT, limit_price=1.0)
    with_limit = BookState(BACKTEST_SESSIONS[0], fresh.cash, {}, fresh.peak_equity, open_orders=(limit,))
    assert not columnar_supported(data, with_limit, targets)
    with pytest.raises(DataValidationError, match="engine must be"):
        _run(data, config, targets, "fast")


def test_bad_target_weight_is_refused_by_both_engines(frames, targets):
    data = _data(frames)
    config = strategy_config()
    session = BACKTEST_SESSIONS[0]
    bad = {session: {InstrumentId(data.index.ids[3]): math.nan}}
    messages = []
    for engine in ("objects", "columnar"):
        with pytest.raises(Exception) as err:
            _run(data, config, bad, engine, [session])
        messages.append((type(err.value), str(err.value)))
    assert messages[0] == messages[1]
    assert data.index.ids[3] in messages[0][1]


def test_garbage_collector_is_restored_after_a_run_and_after_a_failure(frames, targets):
    data = _data(frames)
    config = strategy_config()
    session = BACKTEST_SESSIONS[0]
    assert gc.isenabled()
    _run(data, config, targets, "columnar", [session])
    assert gc.isenabled()
    with pytest.raises(Exception):
        _run(data, config, {session: {InstrumentId(data.index.ids[0]): -1.0}}, "columnar", [session])
    assert gc.isenabled()
    gc.disable()
    try:
        _run(data, config, targets, "columnar", [session])
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
