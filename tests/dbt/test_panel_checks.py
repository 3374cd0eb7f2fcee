"""The panels' dbt tests as the Dagster panel asset runs them (``panel_build_args``): a build for
a session window tests the rows of that window only (macros/tests/get_where_subquery.sql) and
still fails on a bad row inside it; a build over all history, or a command without a window,
tests every row. The dbt unit tests, which the asset leaves out, run here. Both backends.

The market is built once per backend (module fixture ``built``, the asset's build over every
session). A test that plants a bad row puts the row back before it ends.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import polars as pl
import pytest
from panel_data import CALENDAR, MARKET_ID, PANELS, fill_market, synthetic_frames
from sharing import backend_params, new_location

from prometheus_lib.storage.dbt import DbtRun, dbt_session, dbt_target_env, panel_build_args, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import PgDatabases

START, END = date(2024, 1, 2), date(2024, 3, 28)
SESSIONS = CALENDAR.sessions(START, END)
EARLIER = SESSIONS[len(SESSIONS) // 2]  # a session well before the last one
N_INSTRUMENTS = 6
HIGH_AT_LEAST_LOW = "stg_market__prices_daily_high_at_least_low"
LOG_MATCHES_SIMPLE = "returns_daily_log_matches_simple"


@dataclass(frozen=True)
class Built:
    location: dict[str, str]
    target: dict[str, str]
    work: Path  # the dbt work folder of every command here (one parse per backend)
    run: DbtRun  # the full build


@pytest.fixture(scope="module", params=backend_params("panel_checks"))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases) -> Built:
    """A small market in a fresh warehouse of each backend, built by the asset's `dbt build` over every session."""
    folder = tmp_path_factory.mktemp("panel_checks")
    location = new_location(request.param, folder, pg_databases)
    fill_market(location, synthetic_frames(N_INSTRUMENTS, START, END), START, END)
    target = dbt_target_env(location["backend"], location.get("duckdb_path"), location.get("postgres_url"))
    run = run_dbt(panel_build_args(), target, folder / "dbt", panel_env(START, END, MARKET_ID))
    return Built(location, target, folder / "dbt", run)


def _build(built: Built, start: date, end: date) -> DbtRun:
    return run_dbt(panel_build_args(), built.target, built.work, panel_env(start, end, MARKET_ID))


@functools.cache
def _instrument() -> str:
    """The instrument planted on: the first (by id) priced on EARLIER and END (any may be delisted)."""
    prices = synthetic_frames(N_INSTRUMENTS, START, END)["prices_daily"].filter(pl.col("session_date").is_in([EARLIER, END]))
    return sorted(prices.group_by("instrument_id").len().filter(pl.col("len") == 2)["instrument_id"])[0]


@contextmanager
def _planted(built: Built, table: str, column: str, bad: str, session: date) -> Iterator[None]:
    """``column`` of _instrument()'s row of ``session`` in ``table`` set to the SQL ``bad``, put back on exit."""
    where = "where session_date = {p} and instrument_id = {p}"
    with open_warehouse(**built.location, migrate=False) as wh:
        p = wh.placeholder
        key = [session, _instrument()]
        row = wh.query(f"select {column} from historical.{table} " + where.format(p=p), key)
        assert row.height == 1 and row[column][0] is not None, f"no {column} of {key[1]} on {session}"
        wh.execute(f"update historical.{table} set {column} = {bad} " + where.format(p=p), key)
    try:
        yield
    finally:
        with open_warehouse(**built.location, migrate=False) as wh:
            p = wh.placeholder
            wh.execute(f"update historical.{table} set {column} = {p} " + where.format(p=p), [row[column][0], *key])


def _bad_bar(built: Built, session: date):
    """One bar of ``session`` with its high below its low."""
    return _planted(built, "prices_daily", "high", "low * 0.5", session)


def _bad_return(built: Built, session: date):
    """One returns_daily row of ``session`` whose log return disagrees with its simple return."""
    return _planted(built, "returns_daily", "return_log", "return_log + 0.5", session)


def test_build_over_all_sessions_runs_models_and_data_tests_only(built: Built) -> None:
    # Arrange, Act: the fixture's build over every session
    run = built.run

    # Assert: every panel built, every data test passed; no unit test, no macro test, no text view
    assert run.returncode == 0, (run.failed, run.stdout[-3000:])
    for panel in PANELS:
        assert run.results[panel]["status"] == "success", panel
    kinds = {r["unique_id"].split(".")[0] for r in run.results.values()}
    assert kinds == {"model", "test"}, kinds
    assert not [name for name in run.results if "stg_text__" in name or name.startswith("assert_")]
    assert sum(r["unique_id"].startswith("test.") for r in run.results.values()) >= 80


def test_build_of_one_session_tests_that_session_of_panels_and_prices_only(built: Built) -> None:
    # Act
    run = _build(built, END, END)

    # Assert: the tests of the panels and the prices read the window; reference tests the whole model
    assert run.returncode == 0, (run.failed, run.stdout[-3000:])
    window = f"session_date between cast('{END}' as date) and cast('{END}' as date) and market_id = '{MARKET_ID}'"
    tests = {name: r for name, r in run.results.items() if r["unique_id"].startswith("test.")}
    scoped = {name for name, r in tests.items() if window in r["compiled_code"]}
    for name in ("unique_combination_returns_daily_instrument_id__session_date", LOG_MATCHES_SIMPLE,
                 "unique_combination_correlation_panels_session_date__market_id__panel_id__entity_a__entity_b",
                 "unique_combination_stg_market__prices_daily_instrument_id__session_date", HIGH_AT_LEAST_LOW):
        assert name in scoped, name
    for name in ("unique_combination_stg_market__instruments_instrument_id", "unique_int_sessions_session_date"):
        assert name in tests and name not in scoped, name
    attached = {name: r["unique_id"] for name, r in tests.items()}
    assert all(any(p in attached[n] for p in (*PANELS, "stg_market__prices_daily")) for n in scoped)


def test_build_of_one_session_with_bad_bar_in_it_fails_that_test_and_skips_the_panels(built: Built) -> None:
    # Arrange
    with _bad_bar(built, END):
        # Act
        run = _build(built, END, END)

    # Assert
    assert run.returncode == 1, run.stdout[-3000:]
    assert run.failed[HIGH_AT_LEAST_LOW] == "fail"
    assert run.results[HIGH_AT_LEAST_LOW]["failures"] == 1
    for panel in PANELS:
        assert run.results[panel]["status"] == "skipped", panel


def test_build_of_one_session_with_bad_bar_before_it_passes_and_build_of_all_sessions_fails(built: Built) -> None:
    # Arrange: a bad bar on a session outside the one-session window
    with _bad_bar(built, EARLIER):
        # Act
        one = _build(built, END, END)
        everything = _build(built, START, END)
        no_window = run_dbt(["test", "--select", "stg_market__prices_daily"], built.target, built.work)

    # Assert: the one-session build does not read that session; a build of all history and a
    # test without a window do
    assert one.returncode == 0, (one.failed, one.stdout[-3000:])
    assert one.results[HIGH_AT_LEAST_LOW]["status"] == "pass"
    for run in (everything, no_window):
        assert run.returncode == 1, run.stdout[-3000:]
        assert run.failed[HIGH_AT_LEAST_LOW] == "fail"
        assert run.results[HIGH_AT_LEAST_LOW]["failures"] == 1


def test_panel_test_with_bad_row_fails_in_its_window_and_without_window_passes_in_another(built: Built) -> None:
    # Arrange: a returns_daily row that breaks returns_daily_log_matches_simple (a build would
    # rewrite it: the tests run on their own, as dbt build runs them after the model)
    test = ["test", "--select", "returns_daily"]
    with _bad_return(built, EARLIER):
        # Act
        its_window = run_dbt(test, built.target, built.work, panel_env(EARLIER, EARLIER, MARKET_ID))
        other_window = run_dbt(test, built.target, built.work, panel_env(END, END, MARKET_ID))
        no_window = run_dbt(test, built.target, built.work)

    # Assert
    for run in (its_window, no_window):
        assert run.returncode == 1, run.stdout[-3000:]
        assert run.failed == {LOG_MATCHES_SIMPLE: "fail"}
        assert run.results[LOG_MATCHES_SIMPLE]["failures"] == 1
    assert other_window.returncode == 0, (other_window.failed, other_window.stdout[-3000:])
    assert other_window.results[LOG_MATCHES_SIMPLE]["status"] == "pass"


def test_unit_tests_on_built_warehouse_all_pass(built: Built) -> None:
    # Arrange: every unit test of the project (the asset does not run them)
    unit_tests = {u.name for u in dbt_session(built.target, built.work).manifest().unit_tests.values()}
    assert len(unit_tests) >= 6

    # Act
    run = run_dbt(["test", "--select", "test_type:unit"], built.target, built.work)

    # Assert
    assert run.returncode == 0, (run.failed, run.stdout[-3000:])
    assert set(run.results) == unit_tests
    assert all(r["status"] == "pass" for r in run.results.values())
