"""Specification of the backtest loop: state carried across runs, run-scoped rows, outcomes, weights, strategy."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import date

import numpy as np
import polars as pl
import pytest
from backtest_providers import (
    BACKTEST_SESSIONS,
    SESSIONS,
    Backtest,
    assert_rows_match,
    run_backtest,
    scope_values,
    shared_market,
    strategy_config,
    write_frames,
)
from panel_data import MARKET_ID

from prometheus_lib.backtest.runner import PANEL_TABLES, BacktestData, BookState, delete_run, load_book_state
from prometheus_lib.config.models import BaselineStrategyConfig, PortfolioConfig, StrategyConfig
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse
from prometheus_lib.strategies.baseline import BaselineStrategy, cap_weights

CONFIGS = {
    "defaults": strategy_config(),
    # a 1 % volume cap with carried remainders: orders stay open, partly filled, across the split
    "carry": strategy_config(max_participation=0.01, remainder="carry"),
    "next_open": strategy_config(fill_at="next_open", max_participation=0.01),
}
SPLIT = 50  # the second run starts at BACKTEST_SESSIONS[SPLIT] (carry: 2 of 6 open orders partly filled)
RUN_ID = "RUN"
# Fields that depend on realised P&L, which a resumed book sums in another order (equal to rounding).
REALIZED_FIELDS = {"positions_snapshots": ("realized_pnl",), "backtest_trades": ("pnl",), "fills": ("metadata",)}


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def _module_warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                      pg_databases) -> Iterator[Warehouse]:
    # One database per backend for the module: creating and dropping a PostgreSQL database
    # costs seconds (a checkpoint each), and every test clears the runs it writes first.
    if request.param == "duckdb":
        location = {"backend": "duckdb", "duckdb_path": str(tmp_path_factory.mktemp("runs") / "warehouse.duckdb")}
    else:
        location = {"backend": "postgres", "postgres_url": pg_databases.create("prom_backtest")}
    wh = open_warehouse(**location)
    yield wh
    wh.close()


@pytest.fixture
def warehouse(_module_warehouse: Warehouse) -> Warehouse:
    """A migrated warehouse on DuckDB and on PostgreSQL, holding no rows of the runs these tests write."""
    for run_id in (RUN_ID, "OTHER"):
        delete_run(_module_warehouse, run_id)
    return _module_warehouse


@pytest.fixture(scope="module")
def one_run(market_data: BacktestData) -> Callable[[str], Backtest]:
    """The whole range in one call, per config name (memoised)."""
    runs: dict[str, Backtest] = {}

    def get(name: str) -> Backtest:
        if name not in runs:
            runs[name] = run_backtest(market_data, CONFIGS[name], run_id=RUN_ID)
        return runs[name]

    return get


def _second_strategy(config: StrategyConfig, data: BacktestData, first: Backtest) -> BaselineStrategy:
    # As the decisions asset does: seed the engine with the targets of the last `horizon`
    # sessions so that decision outcomes continue across the split.
    h = config.baseline.outcome_horizon_sessions
    engine = BaselineStrategy(config, data.index, data.sectors, RUN_ID)
    prior = {}
    for session in list(first.targets)[-h:]:
        weights = np.zeros(len(data.index))
        for iid, w in first.targets[session].items():
            weights[data.index.positions[str(iid)]] = w
        prior[session] = (engine.decision_id(session), weights)
    return BaselineStrategy(config, data.index, data.sectors, RUN_ID, prior_targets=prior)


def _in_two(
    data: BacktestData, config: StrategyConfig, book: Callable[[Backtest], BookState]
) -> tuple[Backtest, Backtest]:
    first = run_backtest(data, config, BACKTEST_SESSIONS[:SPLIT], run_id=RUN_ID)
    second = run_backtest(data, config, BACKTEST_SESSIONS[SPLIT:], run_id=RUN_ID, start=book(first),
                          strategy=_second_strategy(config, data, first))
    return first, second


def _joined(first: Backtest, second: Backtest) -> dict[str, pl.DataFrame]:
    a, b = first.frames(), second.frames()
    return {t: pl.concat([a[t], b[t]]) for t in a}


def _open_partial_orders(book: BookState) -> int:
    return sum(1 for o in book.open_orders if o.filled_quantity > 0)


# ------------------------------------------------------------------ state carry
@pytest.mark.parametrize("name", list(CONFIGS))
def test_run_in_two_with_final_book_carried_equals_one_run(market_data: BacktestData, one_run, name: str) -> None:
    # Arrange
    whole = one_run(name)

    # Act
    first, second = _in_two(market_data, CONFIGS[name], lambda run: run.execution.final)

    # Assert
    joined = _joined(first, second)
    for table, frame in whole.frames().items():
        assert_rows_match(table, joined[table], frame)
    assert second.execution.final == whole.execution.final
    if name == "carry":
        assert _open_partial_orders(first.execution.final) > 0, "the split must cut through partly filled orders"
    if name == "next_open":
        assert first.execution.final.open_orders, "orders planned at the last close fill at the next open"


def _through_warehouse(wh: Warehouse, config: StrategyConfig) -> Callable[[Backtest], BookState]:
    def book(first: Backtest) -> BookState:
        first_range = (BACKTEST_SESSIONS[0], BACKTEST_SESSIONS[SPLIT - 1])
        write_frames(wh, first.frames(), *first_range, scope_values(config, RUN_ID))
        return load_book_state(wh, run_id=RUN_ID, portfolio=config.portfolios[0], before=BACKTEST_SESSIONS[SPLIT])

    return book


def test_load_book_state_with_saved_run_restores_the_final_book(
    market_data: BacktestData, warehouse: Warehouse
) -> None:
    # Arrange
    config = CONFIGS["carry"]
    first = run_backtest(market_data, config, BACKTEST_SESSIONS[:SPLIT], run_id=RUN_ID)
    final = first.execution.final

    # Act
    loaded = _through_warehouse(warehouse, config)(first)

    # Assert
    assert (loaded.as_of, loaded.cash, loaded.peak_equity, loaded.month_to_date_shares) == (
        final.as_of, final.cash, final.peak_equity, final.month_to_date_shares)
    # the open orders come back whole, the reason they are still working included
    assert loaded.open_orders == final.open_orders
    assert any(o.reason and o.reason.endswith("; carried") for o in loaded.open_orders)
    assert _open_partial_orders(loaded) > 0
    # the same fills; the loader gives them in (session, fill id) order, the engine in the order
    # they happened (sells before buys): only each order's own sequence matters, and it is kept
    def canonical(fills):
        return sorted(fills, key=lambda f: (f.session_date, str(f.fill_id)))

    assert canonical(loaded.open_order_fills) == canonical(final.open_order_fills)
    for order in {f.order_id for f in final.open_order_fills}:
        assert [f for f in loaded.open_order_fills if f.order_id == order] == [
            f for f in final.open_order_fills if f.order_id == order]
    assert loaded.positions == final.positions  # open ones, and closed ones with their realised P&L
    # market_value / quantity gives back the close to within a rounding step
    assert loaded.last_prices == pytest.approx({i: final.last_prices[i] for i in loaded.last_prices}, rel=1e-15)


@pytest.mark.parametrize("name", ["defaults", "carry"])
def test_run_in_two_with_book_loaded_from_warehouse_equals_one_run(
    market_data: BacktestData, warehouse: Warehouse, one_run, name: str
) -> None:
    # Arrange
    config, whole = CONFIGS[name], one_run(name)

    # Act
    first, second = _in_two(market_data, config, _through_warehouse(warehouse, config))

    # Assert: every row the same; the realised-P&L fields only to rounding
    joined = _joined(first, second)
    for table, frame in whole.frames().items():
        skip = list(REALIZED_FIELDS.get(table, ()))
        assert_rows_match(table, joined[table].drop(skip), frame.drop(skip))
    for table in ("fills", "backtest_trades"):
        assert_rows_match(table, joined[table], whole.frames()[table], rel=1e-9)


# A position closed before the split keeps its realised P&L through the warehouse: the session it
# closes writes a quantity-0 snapshot row that load_book_state reads back.
def test_run_in_two_with_book_loaded_from_warehouse_keeps_realized_pnl_of_closed_positions(
    market_data: BacktestData, one_run, tmp_path
) -> None:
    # Arrange
    config, whole = CONFIGS["defaults"], one_run("defaults")

    # Act
    with open_warehouse("duckdb", str(tmp_path / "runs.duckdb")) as wh:
        first, second = _in_two(market_data, config, _through_warehouse(wh, config))

    # Assert
    assert_rows_match("positions_snapshots", _joined(first, second)["positions_snapshots"],
                      whole.frames()["positions_snapshots"])


# ------------------------------------------------------------------ a position without a close
def _frames_with_gap(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestData, list[date]]:
    # The first instrument held at the split loses its bars for five sessions around it.
    location = shared_market(tmp_path_factory, "base")
    with open_warehouse(**location) as wh:
        frames = {t: wh.read_table(t, scope={"market_id": MARKET_ID}) for t in PANEL_TABLES}
        instruments = wh.read_table("instruments", scope={"market_id": MARKET_ID})
    data = BacktestData.from_frames(SESSIONS, frames, instruments)
    held = run_backtest(data, CONFIGS["defaults"], BACKTEST_SESSIONS[:SPLIT]).execution.final.positions
    victim = min(str(i) for i, p in held.items() if not p.is_flat)
    gap = BACKTEST_SESSIONS[SPLIT - 2: SPLIT + 3]
    prices = frames["prices_daily"].filter(~((pl.col("instrument_id") == victim) & pl.col("session_date").is_in(gap)))
    return BacktestData.from_frames(SESSIONS, {**frames, "prices_daily": prices}, instruments), gap


def test_run_with_position_without_close_values_it_at_its_last_close_and_resumes_so(
    tmp_path_factory: pytest.TempPathFactory, tmp_path
) -> None:
    # Arrange
    data, gap = _frames_with_gap(tmp_path_factory)
    config = CONFIGS["defaults"]
    whole = run_backtest(data, config, run_id=RUN_ID)

    # Act
    with open_warehouse("duckdb", str(tmp_path / "runs.duckdb")) as wh:
        first, second = _in_two(data, config, _through_warehouse(wh, config))

    # Assert: the snapshots' market values add up to the account's, in the gap too
    frames = whole.frames()
    values = frames["positions_snapshots"].group_by("session_date").agg(pl.col("market_value").sum())
    check = frames["backtest_daily_equity"].join(values, on="session_date")
    np.testing.assert_allclose(check["equity"] - check["cash"], check["market_value"], rtol=1e-12)
    # and the resumed book values the position as the continuous one did (to the rounding of
    # market_value / quantity, the last price the warehouse keeps)
    resumed = [r["equity"] for r in second.execution.backtest_daily_equity]
    continuous = [r["equity"] for r in whole.execution.backtest_daily_equity[SPLIT:]]
    np.testing.assert_allclose(resumed, continuous, rtol=1e-14)
    assert frames["orders"].filter(pl.col("session_date").is_in(gap)).height > 0


# ------------------------------------------------------------------ run-scoped rows
def _count(wh: Warehouse, table: str, run_id: str) -> int:
    return wh.row_count(table, scope={"run_id": run_id})


def test_write_with_same_run_id_again_replaces_its_rows_and_other_runs_stay(
    market_data: BacktestData, warehouse: Warehouse
) -> None:
    # Arrange
    config = CONFIGS["defaults"]
    sessions = BACKTEST_SESSIONS[:15]
    start, end = sessions[0], sessions[-1]
    other = run_backtest(market_data, config, sessions, run_id="OTHER").frames()
    write_frames(warehouse, other, start, end, scope_values(config, "OTHER"))
    write_frames(warehouse, run_backtest(market_data, config, sessions, run_id=RUN_ID).frames(), start, end,
                 scope_values(config, RUN_ID))

    # Act
    again = run_backtest(market_data, config, sessions, run_id=RUN_ID).frames()
    written = write_frames(warehouse, again, start, end, scope_values(config, RUN_ID))

    # Assert
    for table, frame in again.items():
        assert frame.height > 0, table
        assert written[table] == frame.height == _count(warehouse, table, RUN_ID), table
        assert _count(warehouse, table, "OTHER") == other[table].height, table
        scope = {"run_id": RUN_ID}
        assert_rows_match(table, warehouse.read_table(table, scope=scope), frame)
        assert_rows_match(table, warehouse.read_table(table, scope={"run_id": "OTHER"}), other[table])


# ------------------------------------------------------------------ decision outcomes
def test_decision_outcomes_with_horizon_score_the_decision_that_many_sessions_earlier(
    market_data: BacktestData, one_run
) -> None:
    # Arrange
    run, config = one_run("defaults"), CONFIGS["defaults"]
    h = config.baseline.outcome_horizon_sessions
    market_data.tm.advance_to(SESSIONS[-1])
    closes = market_data.tm.read("prices_daily").select("instrument_id", "session_date", "close")
    close = {(r[0], r[1]): r[2] for r in closes.iter_rows()}
    mkt = market_data.tm.read("factors_daily").filter(pl.col("factor_id") == config.benchmark_factor)
    mkt_return = dict(zip(mkt["session_date"].to_list(), mkt["factor_return"].to_list()))
    frames = run.frames()
    decided = set(frames["engine_decisions"]["decision_id"].to_list())

    # Act
    outcomes = frames["decision_outcomes"].to_dicts()

    # Assert
    assert len(outcomes) == len(BACKTEST_SESSIONS) - h
    for o in outcomes:
        k = SESSIONS.index(o["outcome_date"])
        assert o["decision_date"] == SESSIONS[k - h] and o["horizon_sessions"] == h
        assert o["decision_id"] == f"{RUN_ID}:{config.strategy_id}:{o['decision_date'].isoformat()}"
        assert o["decision_id"] in decided
        weights = run.targets[o["decision_date"]]
        expected = sum(w * (close[(str(i), o["outcome_date"])] / close[(str(i), o["decision_date"])] - 1.0)
                       for i, w in weights.items())
        assert o["realized_return"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        bench = math.prod(1.0 + mkt_return[s] for s in SESSIONS[k - h + 1: k + 1]) - 1.0
        assert json.loads(o["metrics_json"])["benchmark_return"] == pytest.approx(bench, rel=1e-12)


# ------------------------------------------------------------------ cap_weights
@pytest.mark.parametrize(
    ("raw", "cap", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], 0.5, [0.25, 0.25, 0.25, 0.25]),  # nothing binds
        ([1.0, 2.0, 3.0, 4.0, 100.0], 0.3, [0.07, 0.14, 0.21, 0.28, 0.3]),  # 0.7 spread pro rata
        ([1.0, 4.0, 5.0], 0.4, [0.2, 0.4, 0.4]),  # 5 capped, then 4 (0.48 after the first spread)
        ([1.0, 2.0, 3.0], 0.2, [0.2, 0.2, 0.2]),  # 3 x 0.2 < 1: all capped, 0.4 stays in cash
        ([0.0, 0.0], 0.5, [0.0, 0.0]),
        ([], 0.5, []),
    ],
)
def test_cap_weights_with_cap_returns_water_filled_weights(raw: list[float], cap: float, expected: list[float]) -> None:
    # Act
    weights = cap_weights(np.array(raw), cap)

    # Assert
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cap", [0.05, 0.1, 0.3])
def test_cap_weights_with_random_raw_sums_to_min_of_one_and_n_caps_and_respects_cap(seed: int, cap: float) -> None:
    # Arrange
    rng = np.random.default_rng(seed)
    raw = rng.lognormal(0.0, 1.5, int(rng.integers(3, 40)))

    # Act
    weights = cap_weights(raw, cap)

    # Assert
    assert weights.sum() == pytest.approx(min(1.0, raw.size * cap), rel=1e-12)
    assert weights.max() <= cap + 1e-12
    free = weights < cap - 1e-12  # uncapped names keep their relative sizes
    if free.sum() >= 2:
        np.testing.assert_allclose(weights[free] / weights[free].sum(), raw[free] / raw[free].sum(), rtol=1e-9)


# ------------------------------------------------------------------ the strategy on hand-made data
HAND_SESSIONS = [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11)]
NOW = HAND_SESSIONS[5]  # the last two sessions are the future
HAND = {  # instrument: (close, volume, z(MOM), z(LOWVOL), vol_63d, sector)
    "A": (100.0, 1e5, 1.5, -0.5, 0.20, "TECH"),  # score 2.0
    "B": (50.0, 1e5, 1.0, 0.5, 0.40, "TECH"),  # score 0.5
    "C": (20.0, 1e6, 0.5, -1.0, 0.02, "UTIL"),  # score 1.5, vol floored to 0.05
    "D": (10.0, 1e2, 2.0, 0.0, 0.30, "TECH"),  # score 2.0, traded value 1,000 a day: illiquid
    "E": (30.0, 1e5, -1.0, 0.0, 0.25, "UTIL"),  # score -1.0: a candidate ranked 4th
    "F": (40.0, 1e5, 0.8, -2.0, None, "UTIL"),  # score 2.8, no 63-session volatility
}
HAND_CONFIG = StrategyConfig(
    strategy_id="HAND", name="hand-made", market_id=MARKET_ID, universe_size=3, max_position_weight=0.5,
    baseline=BaselineStrategyConfig(liquidity_window=5, min_history_sessions=5, min_adv_value=1e6,
                                    volatility_floor=0.05, outcome_horizon_sessions=2),
    portfolios=(PortfolioConfig(portfolio_id="HAND_MAIN", name="hand-made book"),),
)


def _hand_frames(future: bool) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Constant values each session; with ``future``, absurd values after NOW that would flip everything."""
    rows: dict[str, list[dict]] = {t: [] for t in PANEL_TABLES}
    for k, s in enumerate(HAND_SESSIONS):
        later = s > NOW
        if later and not future:
            continue
        for n, (iid, (close, volume, z_mom, z_vol, vol, _)) in enumerate(HAND.items()):
            flip = -1.0 if later else 1.0
            rows["prices_daily"].append({"instrument_id": iid, "session_date": s, "close": 1e6 if later else close,
                                         "volume": 1.0 if later else volume})
            rows["returns_daily"].append({"instrument_id": iid, "session_date": s,
                                          "return_simple": 5.0 if later else 0.01 * ((k + n) % 3 - 1)})
            rows["volatility_daily"].append({"instrument_id": iid, "session_date": s,
                                             "vol_21d": vol, "vol_63d": 1e-6 if later else vol})
            for factor, z, beta in (("MOM", flip * z_mom, None), ("LOWVOL", flip * z_vol, None), ("MKT", None, 1.0)):
                rows["instrument_factors_daily"].append({"instrument_id": iid, "session_date": s, "factor_id": factor,
                                                         "exposure_z": z, "beta": beta})
        rows["factors_daily"].append({"factor_id": "MKT", "session_date": s, "factor_return": 0.001})
    schema = {"vol_21d": pl.Float64, "vol_63d": pl.Float64, "exposure_z": pl.Float64, "beta": pl.Float64}
    frames = {t: pl.DataFrame(r, schema_overrides={k: v for k, v in schema.items() if k in r[0]})
              for t, r in rows.items()}
    instruments = pl.DataFrame({"instrument_id": list(HAND), "sector": [v[5] for v in HAND.values()],
                                "lot_size": [1] * len(HAND)})
    return frames, instruments


def _decide(future: bool):
    frames, instruments = _hand_frames(future)
    data = BacktestData.from_frames(HAND_SESSIONS, frames, instruments)
    engine = BaselineStrategy(HAND_CONFIG, data.index, data.sectors, "HAND_RUN")
    data.tm.advance_to(NOW)
    return data, engine.decide(data.tm)


def test_decide_with_known_scores_and_volatilities_picks_top_liquid_names_with_capped_inverse_vol_weights() -> None:
    # Act
    data, d = _decide(future=False)

    # Assert
    ids = list(data.index.ids)
    got = dict(zip(ids, d.weights.tolist()))
    # 1/vol: A 5, C 20 (floor 0.05), B 2.5 -> C capped at 0.5, the other 0.5 split 2:1
    assert got == pytest.approx({"A": 1 / 3, "B": 1 / 6, "C": 0.5, "D": 0.0, "E": 0.0, "F": 0.0}, rel=1e-12)
    np.testing.assert_allclose(d.scores, [2.0, 0.5, 1.5, 2.0, -1.0, 2.8])
    assert [i for i, x in zip(ids, d.included) if x] == ["A", "B", "C"]
    assert [i for i, x in zip(ids, d.candidates) if x] == ["A", "B", "C", "E"]
    reasons = dict(zip(ids, d.reasons))
    assert reasons["A"] == reasons["B"] == reasons["C"] == []
    assert reasons["D"] == ["average daily value below 1,000,000"]
    assert reasons["E"] == ["ranked below the top 3"]
    assert reasons["F"] == ["no 63-session volatility"]
    assert d.risk["sectors"] == pytest.approx({"TECH": 0.5, "UTIL": 0.5})
    assert d.risk["factors"]["MKT"] == pytest.approx(1.0)
    assert d.decision_id == f"HAND_RUN:HAND:{NOW.isoformat()}"


def test_decide_with_absurd_future_rows_planted_returns_the_same_decision() -> None:
    # Arrange
    _, clean = _decide(future=False)

    # Act
    _, planted = _decide(future=True)

    # Assert
    for name in ("candidates", "scores", "included", "weights"):
        np.testing.assert_array_equal(getattr(planted, name), getattr(clean, name), err_msg=name)
    for name in clean.components:
        np.testing.assert_array_equal(planted.components[name], clean.components[name], err_msg=name)
    assert planted.reasons == clean.reasons
    assert json.dumps(planted.risk, sort_keys=True) == json.dumps(clean.risk, sort_keys=True)
