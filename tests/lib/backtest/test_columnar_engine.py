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
from prometheus_lib.execution.corporate_actions import CORPORATE_ACTION_COLUMNS
from prometheus_lib.execution.domain import InstrumentId, Order, OrderId, OrderSide, OrderType, PortfolioId, Position
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


# ------------------------------------------------------------------ corporate actions through both engines
# The synthetic market's raw prices are turned into a split, a dividend or a delisting of one
# instrument from the ex-date T on, while the panels (built by dbt on the unchanged prices) play
# the part of the adjusted panels; the book must apply the action and both engines must agree.

T_INDEX = 40
EX_DATE = BACKTEST_SESSIONS[T_INDEX]
BEFORE_EX = BACKTEST_SESSIONS[T_INDEX - 1]


def _actions(*rows: tuple) -> pl.DataFrame:
    """corporate_actions rows from (action_id, instrument_id, session, type, ratio, amount) tuples."""
    return pl.DataFrame(
        [dict(zip(CORPORATE_ACTION_COLUMNS, r)) for r in rows],
        schema={"action_id": pl.String, "instrument_id": pl.String, "session_date": pl.Date,
                "action_type": pl.String, "ratio": pl.Float64, "amount": pl.Float64},
    )


def _with_actions(frames, prices: pl.DataFrame, actions: pl.DataFrame) -> BacktestData:
    panels = {k: v for k, v in frames.items() if k != "instruments"}
    return BacktestData.from_frames(SESSIONS, {**panels, "prices_daily": prices, "corporate_actions": actions},
                                    frames["instruments"])


def _from_ex_date(prices: pl.DataFrame, iid: str, **columns: pl.Expr) -> pl.DataFrame:
    on = (pl.col("instrument_id") == iid) & (pl.col("session_date") >= EX_DATE)
    return prices.with_columns(*[pl.when(on).then(e).otherwise(pl.col(c)).alias(c) for c, e in columns.items()])


def _close(prices: pl.DataFrame, iid: str, session: date) -> float:
    return prices.filter((pl.col("instrument_id") == iid) & (pl.col("session_date") == session))["close"].item()


def _book_at(run, session: date) -> tuple[dict[str, float], dict[str, list[dict]]]:
    """Held quantities and open orders (by instrument) of a run at the close of ``session``."""
    f = run.frames()
    snaps = f["positions_snapshots"].filter((pl.col("session_date") == session) & (pl.col("quantity") != 0))
    held = dict(zip(snaps["instrument_id"].to_list(), snaps["quantity"].to_list()))
    row = f["backtest_daily_equity"].filter(pl.col("session_date") == session)["exposure_metrics_json"].item()
    opens: dict[str, list[dict]] = {}
    for o in json.loads(row)["open_orders"]:
        opens.setdefault(o["instrument_id"], []).append(o)
    return held, opens


def _pick(held: dict[str, float], opens: dict[str, list], need_order: bool, odd: bool = False) -> str:
    names = [i for i in sorted(held) if (i in opens or not need_order) and (not odd or held[i] % 10 != 0)]
    assert names, "the base run must hold a name at T-1" + (" with a working order" if need_order else "")
    return max(names, key=lambda i: (i in opens, abs(held[i])))


def _action_rows(run, kind: str) -> pl.DataFrame:
    return run.frames()["executed_actions"].filter(pl.col("action_type") == kind)


@pytest.fixture(scope="module")
def volume_capped(frames, targets) -> dict:
    """Execution settings whose volume cap binds on about half the orders, remainders carried.

    The cap is set from the market itself (the median order's share of its session's volume), so
    the carried orders the corporate-action cases need exist whatever the volumes.
    """
    run = _run(_data(frames), strategy_config(max_participation=None), targets, "objects")
    orders = run.frames()["orders"].join(frames["prices_daily"].select("instrument_id", "session_date", "volume"),
                                         on=["instrument_id", "session_date"])
    share = float((orders["quantity"] / orders["volume"]).median())
    return {"max_participation": share, "remainder": "carry"}


CORPORATE_CASES = {
    # case: (config, action type, ratio or amount, needs a carried order on the name)
    "split 2-for-1, volume-capped carried orders": ("volume capped", "SPLIT", 2.0, True),
    "split 2-for-1, next open": ("next open, carry at 2 %", "SPLIT", 2.0, True),
    "reverse split 1-for-10 with a fraction": ("platform defaults", "SPLIT", 0.1, False),
    "reverse split 1-for-10, lots of 100 and per-share commission": (
        "lots of 100, sqrt impact, per share", "SPLIT", 0.1, False),
    "dividend on a long": ("platform defaults", "DIVIDEND", 0.75, False),
    "dividend on a long, next open": ("next open, carry at 2 %", "DIVIDEND", 0.75, False),
    "delisting with a carried order": ("next open, carry at 2 %", "DELISTING", None, True),
    "delisting with a volume-capped carried order": ("volume capped", "DELISTING", None, True),
}


@pytest.mark.parametrize("case", list(CORPORATE_CASES))
def test_corporate_action_on_a_held_name_is_applied_identically_by_both_engines(frames, targets, volume_capped,
                                                                                case):
    # Arrange: the base run says what the book holds (and has working) at T-1
    config_name, kind, value, need_order = CORPORATE_CASES[case]
    config = strategy_config(**(volume_capped if config_name == "volume capped" else CONFIGS[config_name]))
    base = _run(_data(frames), config, targets, "objects")
    held, opens = _book_at(base, BEFORE_EX)
    iid = _pick(held, opens, need_order, odd=(kind == "SPLIT" and value < 1 and config.execution.lot_size == 1))
    prices = frames["prices_daily"]
    previous_close = _close(prices, iid, BEFORE_EX)
    if kind == "SPLIT":
        prices = _from_ex_date(prices, iid, open=pl.col("open") / value, close=pl.col("close") / value,
                               volume=pl.col("volume") * value)
        row = ("CA-1", iid, EX_DATE, "SPLIT", value, None)
    elif kind == "DIVIDEND":
        drop = 1.0 - value / previous_close  # the ex-date drop; the panels stay total-return
        prices = _from_ex_date(prices, iid, open=pl.col("open") * drop, close=pl.col("close") * drop)
        row = ("CA-1", iid, EX_DATE, "DIVIDEND", None, value)
    else:
        value = _close(prices, iid, EX_DATE)
        prices = prices.filter(~((pl.col("instrument_id") == iid) & (pl.col("session_date") > EX_DATE)))
        row = ("CA-1", iid, EX_DATE, "DELISTING", None, value)
    data = _with_actions(frames, prices, _actions(row))

    # Act
    objects = _run(data, config, targets, "objects")
    columnar = _run(data, config, targets, "columnar")

    # Assert: byte-equal rows and end books, and the action did what its rule says
    assert_same_execution(columnar, objects)
    assert objects.frames()["executed_actions"].height > 100
    held_then, opens_then = _book_at(objects, BEFORE_EX)
    quantity = held_then[iid]
    rows = _action_rows(objects, kind)
    assert rows.height == 1
    r = rows.row(0, named=True)
    meta = json.loads(r["metadata"])
    assert (r["action_id"], r["instrument_id"], r["session_date"], r["quantity"]) == (
        "COL:BT_TEST_MAIN:CA-1", iid, EX_DATE, quantity)
    assert meta["corporate_action_id"] == "CA-1"
    first_of_day = objects.frames()["executed_actions"].filter(pl.col("session_date") == EX_DATE).row(0, named=True)
    assert first_of_day["action_type"] == kind  # applied before anything else of the session
    if kind == "SPLIT":
        whole = math.copysign(math.floor(abs(quantity * value) + 1e-9), quantity)
        assert meta["quantity_after"] == whole
        assert r["notional"] == pytest.approx((quantity * value - whole) * previous_close / value)
        assert meta["orders_restated"] == len(opens_then.get(iid, []))
        if need_order:
            assert meta["orders_restated"] > 0
    elif kind == "DIVIDEND":
        assert (r["price"], r["notional"]) == (value, quantity * value)
    else:
        assert (r["price"], r["notional"]) == (value, quantity * value)
        assert meta["orders_cancelled"] == len(opens_then[iid]) > 0
        cancels = objects.frames()["executed_actions"].filter(
            (pl.col("action_type") == "ORDER_CANCELLED") & (pl.col("session_date") == EX_DATE)
            & (pl.col("instrument_id") == iid))
        assert cancels.height == len(opens_then[iid])
        assert cancels["metadata"].str.contains("delisted on").all()
        snaps = objects.frames()["positions_snapshots"].filter(pl.col("instrument_id") == iid)
        assert snaps.filter(pl.col("session_date") > EX_DATE).is_empty()
        closed = snaps.filter(pl.col("session_date") == EX_DATE).row(0, named=True)
        assert (closed["quantity"], closed["metadata"]) == (0.0, '{"closed": true}')
        assert objects.frames()["orders"].filter(
            (pl.col("instrument_id") == iid) & (pl.col("session_date") >= EX_DATE)).is_empty()
        assert InstrumentId(iid) not in objects.final.positions or objects.final.positions[InstrumentId(iid)].quantity == 0


@pytest.mark.parametrize("fill_at", ["close", "next_open"])
def test_dividend_on_a_short_is_paid_by_the_book_in_both_engines(frames, targets, fill_at):
    # Arrange: a book resumed at T-1 short 5,000 shares of a name; a dividend of 0.40 on T
    config = strategy_config(**CONFIGS["platform defaults"], fill_at=fill_at)
    data = _data(frames)
    iid = data.index.ids[5]
    close = _close(frames["prices_daily"], iid, BEFORE_EX)
    short = Position(InstrumentId(iid), -5_000.0, close)
    start = BookState(BEFORE_EX, 10_000_000.0 + 5_000.0 * close, {InstrumentId(iid): short},
                      10_000_000.0, last_prices={InstrumentId(iid): close})
    prices = _from_ex_date(frames["prices_daily"], iid, open=pl.col("open") - 0.4, close=pl.col("close") - 0.4)
    data = _with_actions(frames, prices, _actions(("DIV-1", iid, EX_DATE, "DIVIDEND", None, 0.4)))
    sessions = BACKTEST_SESSIONS[T_INDEX:T_INDEX + 10]

    # Act
    objects = _run(data, config, targets, "objects", sessions, start)
    columnar = _run(data, config, targets, "columnar", sessions, start)

    # Assert
    assert_same_execution(columnar, objects)
    r = _action_rows(objects, "DIVIDEND").row(0, named=True)
    assert (r["quantity"], r["price"], r["notional"]) == (-5_000.0, 0.4, -5_000.0 * 0.4)


def test_corporate_action_after_t_changes_nothing_at_or_before_t(frames, targets, volume_capped):
    """Look-ahead: a split and a delisting dated after T leave every row at or before T as without them."""
    # Arrange
    config = strategy_config(**volume_capped)
    base_data = _data(frames)
    base = _run(base_data, config, targets, "objects")
    held, _ = _book_at(base, BEFORE_EX)
    names = sorted(held, key=lambda i: -abs(held[i]))
    later = BACKTEST_SESSIONS[T_INDEX + 5]
    actions = _actions(("LATE-SPLIT", names[0], later, "SPLIT", 3.0, None),
                       ("LATE-DELIST", names[1], later, "DELISTING", None, 1.0))
    data = _with_actions(frames, frames["prices_daily"], actions)

    # Act
    runs = {engine: _run(data, config, targets, engine) for engine in ("objects", "columnar")}

    # Assert: the actions are not known before their ex-date ...
    data.tm.advance_to(BACKTEST_SESSIONS[T_INDEX + 4])
    assert data.corporate_actions() == () and data.delisted() == frozenset()
    data.tm.advance_to(later)
    assert sorted(a.action_id for a in data.corporate_actions()) == ["LATE-DELIST", "LATE-SPLIT"]
    assert data.delisted() == frozenset({names[1]})
    # ... so every row up to the session before is the run's without them, and later rows are not
    cut = BACKTEST_SESSIONS[T_INDEX + 4]
    fb = base.frames()
    for engine, run in runs.items():
        for name, frame in run.frames().items():
            assert_frame_equal(frame.filter(pl.col("session_date") <= cut),
                               fb[name].filter(pl.col("session_date") <= cut), check_exact=True), (engine, name)
        assert set(_action_rows(run, "SPLIT")["session_date"].to_list()) == {later}
        assert not run.frames()["backtest_daily_equity"].equals(fb["backtest_daily_equity"])
    assert_same_execution(runs["columnar"], runs["objects"])


def test_equity_is_continuous_across_a_split(frames, targets):
    # Arrange: no costs, no volume cap, lots of 1: a split's raw prices must not move equity
    config = strategy_config(slippage={"model": "none"}, commission={"model": "none"}, min_trade_value=0.0,
                             max_participation=None)
    base = _run(_data(frames), config, targets, "columnar")
    held, _ = _book_at(base, BEFORE_EX)
    iid = max(held, key=lambda i: abs(held[i]))
    prices = _from_ex_date(frames["prices_daily"], iid, open=pl.col("open") / 2.0, close=pl.col("close") / 2.0,
                           volume=pl.col("volume") * 2.0)
    split = _actions(("SPLIT-1", iid, EX_DATE, "SPLIT", 2.0, None))

    # Act
    applied = _run(_with_actions(frames, prices, split), config, targets, "columnar")
    ignored = _run(_with_actions(frames, prices, split.clear()), config, targets, "columnar")

    # Assert: the day's equity move is the unsplit market's (whole-share rounding of the rebalance aside)
    def day_move(run) -> float:
        eq = run.frames()["backtest_daily_equity"]
        e = dict(zip(eq["session_date"].to_list(), eq["equity"].to_list()))
        return e[EX_DATE] - e[BEFORE_EX]

    equity = base.frames()["backtest_daily_equity"]["equity"].to_numpy()
    assert abs(day_move(applied) - day_move(base)) < 1e-5 * equity[T_INDEX]
    np.testing.assert_allclose(applied.frames()["backtest_daily_equity"]["equity"].to_numpy(), equity, rtol=1e-4)
    # without the action the book would have lost half the position's value on the ex-date
    assert day_move(ignored) - day_move(base) < -0.4 * held[iid] * _close(frames["prices_daily"], iid, BEFORE_EX)
