"""All panels together: a session-by-session build equals one full build, rolling statistics
computed at the written sessions only (the point form of short runs) equal those of window
functions (the window form of long runs) over the whole history, no panel row at or before T
changes when every price after T changes (no look-ahead), and a build only replaces its own
market's rows. Both backends.

These builds run the models only (`dbt run`); the dbt tests run in the other panel tests. The
full build both tests start from runs once per backend (the module fixture ``full_build``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import polars as pl
import pytest
from panel_data import CALENDAR, MARKET_ID, PANELS, build_panels, fill_market, read_panel, synthetic_frames
from sharing import backend_params, new_location

from prometheus_lib.storage.catalog import ColumnType, get_table
from prometheus_lib.storage.dbt import dbt_target_env, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import PgDatabases

START, END = date(2022, 6, 1), date(2023, 9, 29)
N_INSTRUMENTS = 16


def _frames():
    return synthetic_frames(N_INSTRUMENTS, START, END)


def _run(location, start: date, end: date) -> None:
    run = build_panels(location, start, end, command="run")
    assert run.returncode == 0, run.failed or run.stdout[-3000:]


def _assert_panels_equal(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame], upto: date | None = None) -> None:
    for table in PANELS:
        t = get_table(table)
        left, right = a[table], b[table]
        if upto is not None:
            left = left.filter(pl.col("session_date") <= upto)
            right = right.filter(pl.col("session_date") <= upto)
        assert left.height > 0, f"{table} has no rows to compare"
        assert left.select(t.primary_key).equals(right.select(t.primary_key)), f"{table}: different rows"
        for c in t.columns:
            if c.type is not ColumnType.DOUBLE:
                assert left[c.name].equals(right[c.name]), f"{table}.{c.name} differs"
                continue
            x, y = left[c.name], right[c.name]
            assert x.is_null().equals(y.is_null()), f"{table}.{c.name}: nulls differ"
            diff = (x - y).abs().fill_null(0.0)
            scale = x.abs().fill_null(0.0).clip(lower_bound=1.0)
            assert (diff / scale).max() <= 1e-12, f"{table}.{c.name}: max rel diff {(diff / scale).max()}"


def _panels(location, market_id: str = MARKET_ID) -> dict[str, pl.DataFrame]:
    return {t: read_panel(location, t).filter(pl.col("market_id") == market_id) for t in PANELS}


@dataclass(frozen=True)
class FullBuild:
    location: dict[str, str]
    panels: dict[str, pl.DataFrame]  # every panel as the one full build left it


@pytest.fixture(scope="module", params=backend_params("panels_incremental"))
def full_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               pg_databases: PgDatabases) -> FullBuild:
    """The market in a fresh warehouse of each backend, all panels built in one run, read back."""
    location = new_location(request.param, tmp_path_factory.mktemp("incremental"), pg_databases)
    fill_market(location, _frames(), START, END)
    _run(location, START, END)
    return FullBuild(location, _panels(location))


def test_build_with_sessions_one_by_one_equals_full_build(full_build: FullBuild, pg_databases: PgDatabases,
                                                          tmp_path: Path) -> None:
    # Arrange: a second warehouse with the same market as the fixture's full build
    second = new_location(full_build.location["backend"], tmp_path, pg_databases, name="second")
    fill_market(second, _frames(), START, END)
    last = CALENDAR.sessions(START, END)[-3:]

    # Act: history up to the cut, then one session, then two sessions
    _run(second, START, CALENDAR.previous_session(last[0]))
    _run(second, last[0], last[0])
    _run(second, last[1], last[2])

    # Assert: equal to the one full build
    _assert_panels_equal(full_build.panels, _panels(second))


def test_build_with_point_form_over_all_history_equals_window_form(full_build: FullBuild, pg_databases: PgDatabases,
                                                                     tmp_path: Path) -> None:
    # Arrange: a second warehouse with the same market; the fixture's full build, a long run,
    # computed its rolling statistics with window functions
    second = new_location(full_build.location["backend"], tmp_path, pg_databases, name="second")
    fill_market(second, _frames(), START, END)
    target = dbt_target_env(second["backend"], second.get("duckdb_path"), second.get("postgres_url"))
    last = CALENDAR.sessions(START, END)[-1]

    # Act: every session with the point form (each row's own look-back), then the last session
    # again as a daily run chooses it (a short window: point form)
    forced = run_dbt(["run", "--vars", "{rolling_form: point}"], target, tmp_path / "dbt", panel_env(START, END, MARKET_ID))
    daily = run_dbt(["run", "--select", "marts"], target, tmp_path / "dbt", panel_env(last, last, MARKET_ID))

    # Assert
    assert forced.returncode == 0, forced.failed or forced.stdout[-3000:]
    assert daily.returncode == 0, daily.failed or daily.stdout[-3000:]
    for run in (forced, daily):
        for panel in ("volatility_daily", "factors_daily", "instrument_factors_daily"):
            assert "targets as materialized" in run.results[panel]["compiled_code"], panel
    _assert_panels_equal(full_build.panels, _panels(second))


def test_rebuild_with_prices_changed_after_t_leaves_earlier_rows_and_other_markets_unchanged(
    full_build: FullBuild,
) -> None:
    # Arrange: the fixture's full build, and one row of another market in every panel table
    frames = _frames()
    warehouse_location = full_build.location
    before = full_build.panels
    t = date(2023, 6, 15)
    with open_warehouse(**warehouse_location) as wh:
        for table in PANELS:
            spec = get_table(table)
            ids = [c for c in spec.primary_key if c not in ("session_date", "market_id") and spec.column(c).type is ColumnType.TEXT]
            row = wh.read_table(table).tail(1).with_columns(
                pl.lit("EU_EQ").alias("market_id"), *[(pl.col(c) + "_EU").alias(c) for c in ids]
            )
            d = row["session_date"][0]
            wh.write_partition(table, row, d, d, {"market_id": "EU_EQ"})

    # Act: every price after T changes (and one instrument vanishes after T), then a full rebuild
        wh.execute(
            "UPDATE historical.prices_daily SET open = open * 1.7, high = high * 1.9, low = low * 1.6, "
            "close = close * 1.8, adjusted_close = adjusted_close * 1.8, volume = volume * 3, "
            f"shares_outstanding = shares_outstanding * 2 WHERE session_date > {wh.placeholder}", [t]
        )
        victim = frames["instruments"]["instrument_id"][0]
        wh.execute(f"DELETE FROM historical.prices_daily WHERE session_date > {wh.placeholder} AND instrument_id = {wh.placeholder}",
                   [t, victim])
    _run(warehouse_location, START, END)
    after = _panels(warehouse_location)

    # Assert: rows at or before T identical; rows after T did change (the test can fail)
    _assert_panels_equal(before, after, upto=t)
    later_before = before["returns_daily"].filter(pl.col("session_date") > t)
    later_after = after["returns_daily"].filter(pl.col("session_date") > t)
    assert not later_before.equals(later_after)
    # and the other market's rows were left alone by the market-scoped rebuild
    with open_warehouse(**warehouse_location) as wh:
        for table in PANELS:
            assert wh.row_count(table, scope={"market_id": "EU_EQ"}) == 1, table
