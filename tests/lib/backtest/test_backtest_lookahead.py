"""Specification of point-in-time: nothing after session T changes anything the backtest did up to T.

The market is built twice by dbt: as generated, and with every price bar after T scaled by a
random factor (OHLC together, volume by another). Everything a backtest writes at or before T
(scores, universe members, target weights, risk reports, engine decisions, decision outcomes,
orders, fills, positions, executed actions, trades, equity) must be the same; after T it must not.

One caveat makes the end-to-end comparison tolerant: DuckDB sums floats in parallel, so two
dbt builds of the *same* prices can differ in the last bits of factors_daily and
instrument_factors_daily (seen: 1e-17 to 1e-14). The test is therefore split in two:

* the panels at or before T equal the unperturbed build's to 1e-12 (float noise, not leakage,
  which would move them by the perturbation's size, ~5 %), and the engine's output on them
  matches to 1e-9 with every order quantity and status exact;
* the engine, given panels that are bit-identical up to T and perturbed after it, produces
  bit-identical rows up to T.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from backtest_providers import (
    BACKTEST_SESSIONS,
    SESSIONS,
    Backtest,
    assert_rows_match,
    date_column,
    perturb_after,
    rows_until,
    run_backtest,
    shared_market,
    strategy_config,
)
from panel_data import MARKET_ID

from prometheus_lib.backtest.runner import PANEL_TABLES, BacktestData
from prometheus_lib.errors import LookAheadError
from prometheus_lib.execution.market import InstrumentIndex
from prometheus_lib.execution.time_machine import TimeMachine
from prometheus_lib.storage.factory import open_warehouse

T = BACKTEST_SESSIONS[60]  # 2023-03-30: 60 sessions of the run before it, 63 after
CONFIG = strategy_config(max_participation=0.01)  # volume-capped: cancelled remainders too


def _read(location: dict[str, str]) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    with open_warehouse(**location) as wh:
        frames = {t: wh.read_table(t, scope={"market_id": MARKET_ID}) for t in PANEL_TABLES}
        return frames, wh.read_table("instruments", scope={"market_id": MARKET_ID})


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, pl.DataFrame], pl.DataFrame]]:
    """Panel frames and instruments of the base build and of the build perturbed after T."""
    base = shared_market(tmp_path_factory, "base")
    perturbed = shared_market(tmp_path_factory, f"perturbed_after_{T:%Y%m%d}", perturb_after(T))
    return {"base": _read(base), "perturbed": _read(perturbed)}


@pytest.fixture(scope="module")
def base_run(market_data: BacktestData) -> Backtest:
    """The backtest on the unperturbed market."""
    return run_backtest(market_data, CONFIG)


def _assert_same_until_t_and_different_after(run: Backtest, base: Backtest, rel: float) -> None:
    ours, theirs = run.frames(), base.frames()
    assert set(ours) == set(theirs)
    for table in ours:
        assert_rows_match(table, rows_until(table, ours[table], T), rows_until(table, theirs[table], T), rel)
    assert all(rows_until(t, f, T).height > 0 for t, f in theirs.items()), "every table has rows up to T"
    after = {t: f.filter(pl.col(date_column(t)) > T) for t, f in ours.items()}
    before_equity = theirs["backtest_daily_equity"].filter(pl.col("session_date") > T)["equity"].to_numpy()
    assert not np.allclose(after["backtest_daily_equity"]["equity"].to_numpy(), before_equity, rtol=1e-3)
    base_orders = theirs["orders"].filter(pl.col("session_date") > T).select("order_id", "quantity")
    assert not after["orders"].select("order_id", "quantity").equals(base_orders)


# ------------------------------------------------------------------ dbt panels
def test_build_with_prices_perturbed_after_t_keeps_panels_up_to_t(builds) -> None:
    # Arrange
    (base, _), (perturbed, _) = builds["base"], builds["perturbed"]

    # Act
    pairs = {t: (rows_until(t, perturbed[t], T), rows_until(t, base[t], T)) for t in PANEL_TABLES}

    # Assert
    for table, (ours, theirs) in pairs.items():
        assert theirs.height > 0
        assert_rows_match(table, ours, theirs, rel=1e-12)
    later = perturbed["prices_daily"].filter(pl.col("session_date") > T)
    assert not later["close"].equals(base["prices_daily"].filter(pl.col("session_date") > T)["close"])
    returns_after = perturbed["returns_daily"].filter(pl.col("session_date") > T)["return_simple"].to_numpy()
    base_after = base["returns_daily"].filter(pl.col("session_date") > T)["return_simple"].to_numpy()
    assert np.nanmax(np.abs(returns_after - base_after)) > 0.01


# ------------------------------------------------------------------ the whole chain
def test_backtest_with_prices_perturbed_after_t_matches_up_to_t(builds, base_run: Backtest) -> None:
    # Arrange
    frames, instruments = builds["perturbed"]
    data = BacktestData.from_frames(SESSIONS, frames, instruments)

    # Act
    run = run_backtest(data, CONFIG)

    # Assert: equal up to DuckDB's float noise (see the module docstring), different after T
    _assert_same_until_t_and_different_after(run, base_run, rel=1e-9)


# ------------------------------------------------------------------ the engine alone
def test_backtest_with_panels_after_t_replaced_is_bit_identical_up_to_t(builds, base_run: Backtest) -> None:
    # Arrange: the base build up to T, the perturbed build after it
    (base, instruments), (perturbed, _) = builds["base"], builds["perturbed"]
    spliced = {
        t: pl.concat([base[t].filter(pl.col("session_date") <= T), perturbed[t].filter(pl.col("session_date") > T)])
        for t in PANEL_TABLES
    }
    data = BacktestData.from_frames(SESSIONS, spliced, instruments)
    reference = run_backtest(BacktestData.from_frames(SESSIONS, base, instruments), CONFIG)

    # Act
    run = run_backtest(data, CONFIG)

    # Assert
    _assert_same_until_t_and_different_after(run, reference, rel=0.0)
    # the warehouse-loaded base data and the frames give the same run
    assert_rows_match("backtest_daily_equity", reference.frames()["backtest_daily_equity"],
                      base_run.frames()["backtest_daily_equity"])


# ------------------------------------------------------------------ TimeMachine
D = [date(2024, 1, d) for d in (2, 3, 4, 5, 8)]
INDEX = InstrumentIndex.of(["A", "B"])


def _machine() -> TimeMachine:
    tm = TimeMachine(D)
    frame = pl.DataFrame({
        "session_date": [d for d in D for _ in "AB"],
        "instrument_id": ["A", "B"] * len(D),
        "close": [float(10 * k + j) for k in range(len(D)) for j in range(2)],
    })
    # plant absurd values after D[2]: any leak shows as a huge number
    future = pl.col("session_date") > D[2]
    frame = frame.with_columns(pl.when(future).then(1e12).otherwise(pl.col("close")).alias("close"))
    tm.register("prices_daily", frame)
    tm.advance_to(D[2])
    return tm


@pytest.mark.parametrize("end", [D[3], D[4], date(2024, 2, 1)])
def test_read_with_end_after_current_session_raises_look_ahead_error(end: date) -> None:
    # Arrange
    tm = _machine()

    # Act / Assert
    with pytest.raises(LookAheadError, match=f"up to {end} at session {D[2]}"):
        tm.read("prices_daily", end=end)


def test_read_with_defaults_returns_only_rows_up_to_current_session() -> None:
    # Arrange
    tm = _machine()

    # Act
    everything = tm.read("prices_daily")
    window = tm.read("prices_daily", lookback_sessions=100)
    from_future = tm.read("prices_daily", start=D[3])

    # Assert
    assert everything["session_date"].max() == D[2] and everything.height == 6
    assert window.equals(everything)
    assert from_future.is_empty()
    assert everything["close"].max() < 1e12


def test_matrix_with_long_lookback_ends_at_current_session() -> None:
    # Arrange
    tm = _machine()

    # Act
    window = tm.matrix("prices_daily", "close", INDEX, lookback_sessions=100)
    latest = tm.matrix("prices_daily", "close", INDEX)

    # Assert
    np.testing.assert_array_equal(window, [[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    np.testing.assert_array_equal(latest, [[20.0, 21.0]])
    assert not window.flags.writeable


def test_matrix_after_advancing_back_hides_the_later_sessions_again() -> None:
    # Arrange
    tm = _machine()
    tm.advance_to(D[4])
    assert tm.matrix("prices_daily", "close", INDEX)[-1, 0] == 1e12

    # Act
    tm.advance_to(D[1])
    window = tm.matrix("prices_daily", "close", INDEX, lookback_sessions=100)

    # Assert
    np.testing.assert_array_equal(window, [[0.0, 1.0], [10.0, 11.0]])
    with pytest.raises(LookAheadError):
        tm.read("prices_daily", end=D[2])


def test_matrix_with_filter_places_only_matching_rows_and_skips_rows_off_the_grid() -> None:
    # Arrange: a long table with a factor column, a row for an instrument outside the index and
    # a row dated between sessions (neither lands in the grid)
    tm = TimeMachine(D)
    frame = pl.DataFrame({
        "session_date": [D[0], D[0], D[1], D[1], D[1], date(2024, 1, 6), D[2]],
        "instrument_id": ["A", "B", "A", "B", "Z", "A", "B"],
        "factor_id": ["MOM", "MOM", "MOM", "LOWVOL", "MOM", "MOM", None],
        "exposure_z": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
    })
    tm.register("instrument_factors_daily", frame)
    tm.advance_to(D[2])

    # Act
    mom = tm.matrix("instrument_factors_daily", "exposure_z", INDEX, lookback_sessions=3,
                    filter_column="factor_id", filter_value="MOM")
    low = tm.matrix("instrument_factors_daily", "exposure_z", INDEX, lookback_sessions=3,
                    filter_column="factor_id", filter_value="LOWVOL")
    every = tm.matrix("instrument_factors_daily", "exposure_z", INDEX, lookback_sessions=3)

    # Assert
    np.testing.assert_array_equal(mom, [[1.0, 2.0], [3.0, np.nan], [np.nan, np.nan]])
    np.testing.assert_array_equal(low, [[np.nan, np.nan], [np.nan, 4.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(every, [[1.0, 2.0], [3.0, 4.0], [np.nan, 7.0]])


def test_matrix_after_registering_a_table_again_reads_the_new_rows() -> None:
    # Arrange: grids, placements and converted columns are cached per table; registering the
    # table again must drop them all
    tm = TimeMachine(D)
    tm.register("prices_daily", pl.DataFrame({"session_date": [D[0], D[1]], "instrument_id": ["A", "B"],
                                              "close": [1.0, 2.0]}))
    tm.advance_to(D[1])
    assert tm.matrix("prices_daily", "close", INDEX, lookback_sessions=2)[1, 1] == 2.0

    # Act
    tm.register("prices_daily", pl.DataFrame({"session_date": [D[1]], "instrument_id": ["A"], "close": [9.0]}))
    window = tm.matrix("prices_daily", "close", INDEX, lookback_sessions=2)

    # Assert
    np.testing.assert_array_equal(window, [[np.nan, np.nan], [9.0, np.nan]])
