"""dbt in this process (prometheus_lib.storage.dbt): a session parses the project once and runs
every later command, of any panel window, on that manifest; results come back in memory; the
window's environment variables are set for the command only; the DuckDB file is released when a
command ends. Real dbt on a real warehouse of each backend.

The market is filled once per backend (module fixture ``market``); each test builds into a
work folder of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from panel_data import CALENDAR, MARKET_ID, fill_market, synthetic_frames
from sharing import backend_params, new_location

from prometheus_lib.storage.dbt import DbtSession, dbt_session, dbt_target_env, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

if TYPE_CHECKING:
    from conftest import PgDatabases

START, END = date(2024, 1, 2), date(2024, 3, 28)
N_INSTRUMENTS = 6
HIGH_AT_LEAST_LOW = "stg_market__prices_daily_high_at_least_low"


def _target(location: dict[str, str]) -> dict[str, str]:
    return dbt_target_env(location["backend"], location.get("duckdb_path"), location.get("postgres_url"))


def _returns_rows(location: dict[str, str], start: date, end: date) -> int:
    with open_warehouse(**location, migrate=False) as wh:
        return wh.row_count("returns_daily", start, end)


@pytest.fixture(scope="module", params=backend_params("dbt_session"))
def market(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           pg_databases: PgDatabases) -> dict[str, str]:
    """A small synthetic market in a fresh warehouse of each backend (prices START..END)."""
    location = new_location(request.param, tmp_path_factory.mktemp("dbt_session"), pg_databases)
    fill_market(location, synthetic_frames(N_INSTRUMENTS, START, END), START, END)
    return location


def test_session_with_two_windows_parses_once_and_builds_both(market: dict[str, str], tmp_path: Path) -> None:
    # Arrange
    session = DbtSession(_target(market), tmp_path)
    sessions = CALENDAR.sessions(START, END)
    cut = sessions[len(sessions) // 2]

    # Act: the first window parses the project, the second runs on the same manifest
    first = session.invoke(["run", "--select", "+returns_daily"], panel_env(START, cut, MARKET_ID))
    manifest = session.manifest()
    second = session.invoke(["run", "--select", "int_sessions returns_daily"],
                            panel_env(CALENDAR.next_session(cut), END, MARKET_ID))

    # Assert
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert session.manifest() is manifest  # no second parse
    assert first.results["returns_daily"]["status"] == "success"
    assert set(second.results) == {"int_sessions", "returns_daily"}
    assert "Completed successfully" in second.stdout
    assert not (tmp_path / "target" / "run_results.json").exists()  # results in memory only
    with open_warehouse(**market, migrate=False) as wh:
        prices = wh.row_count("prices_daily", START, END)
    assert _returns_rows(market, START, cut) + _returns_rows(market, CALENDAR.next_session(cut), END) == prices


def test_invoke_with_on_node_result_hands_each_node_event_as_the_node_finishes(market: dict[str, str],
                                                                               tmp_path: Path) -> None:
    # Arrange
    seen: list[tuple[datetime, dict[str, Any]]] = []

    def on_node_result(event: dict[str, Any]) -> None:
        seen.append((datetime.now(UTC).replace(tzinfo=None), event))

    # Act: a chain of three models (one after the other on both backends)
    run = DbtSession(_target(market), tmp_path).invoke(["run", "--select", "+returns_daily"],
                                                       panel_env(START, END, MARKET_ID), on_node_result=on_node_result)

    # Assert: dbt's JSON log events (what dagster-dbt translates), the first one handed over
    # before the last model even started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    names = [e["data"]["node_info"]["node_name"] for _, e in seen]
    assert names == ["stg_market__prices_daily", "int_sessions", "returns_daily"]
    assert {e["info"]["name"] for _, e in seen} == {"LogModelResult"}
    assert all(e["data"]["node_info"]["node_status"] == "success" for _, e in seen)
    last_started = min(datetime.fromisoformat(t["started_at"].rstrip("Z")) for t in run.results["returns_daily"]["timing"])
    assert seen[0][0] <= last_started


def test_run_dbt_with_same_warehouse_and_work_dir_reuses_one_session(market: dict[str, str], tmp_path: Path) -> None:
    # Arrange
    target = _target(market)

    # Act
    run = run_dbt(["run", "--select", "+int_sessions"], target, tmp_path, panel_env(START, END, MARKET_ID))

    # Assert: later commands for this warehouse and folder find the parsed session; others do not
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    session = dbt_session(target, tmp_path)
    assert session.is_parsed
    assert dbt_session(target, tmp_path) is session
    assert dbt_session(target, tmp_path / "other") is not session


def test_invoke_with_window_sets_its_environment_for_the_command_only(market: dict[str, str], tmp_path: Path) -> None:
    # Arrange
    assert "PROMETHEUS_PANEL_MIN_DATE" not in os.environ

    # Act
    run = run_dbt(["run", "--select", "+int_sessions"], _target(market), tmp_path, panel_env(START, END, MARKET_ID))

    # Assert
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not {k for k in os.environ if k.startswith(("PROMETHEUS_PANEL_", "PROMETHEUS_DBT_", "PROMETHEUS_PG_"))}


def test_test_command_with_bad_bar_returns_code_1_and_the_failing_test(market: dict[str, str], tmp_path: Path) -> None:
    # Arrange: the market staging views, then a bar with high < low on a session after the market's
    target = _target(market)
    built = run_dbt(["run", "--select", "path:models/staging/market"], target, tmp_path)
    assert built.returncode == 0, built.stdout[-3000:]
    bad_day = CALENDAR.next_session(END)
    with open_warehouse(**market, migrate=False) as wh:
        p = wh.placeholder
        wh.execute("insert into historical.prices_daily (instrument_id, session_date, market_id, open, high, low, close, "
                   f"volume, currency, source, ingested_at) values ({p}, {p}, {p}, 10.0, 9.0, 11.0, 10.0, 100.0, "
                   "'USD', 'test', current_timestamp)", ["SYN0001", bad_day, MARKET_ID])

    # Act
    try:
        run = run_dbt(["test", "--select", "stg_market__prices_daily"], target, tmp_path)
    finally:
        with open_warehouse(**market, migrate=False) as wh:
            wh.execute(f"delete from historical.prices_daily where session_date = {wh.placeholder}", [bad_day])

    # Assert
    assert run.returncode == 1, run.stdout[-3000:]
    assert run.failed == {HIGH_AT_LEAST_LOW: "fail"}
    assert run.results[HIGH_AT_LEAST_LOW]["failures"] == 1
    assert HIGH_AT_LEAST_LOW in run.stdout


def test_new_process_with_same_work_dir_loads_the_project_from_its_partial_parse(market: dict[str, str],
                                                                                tmp_path: Path) -> None:
    # Arrange: this process parsed the project into the work folder (as a Dagster run's first
    # panel build does in $PROMETHEUS_HOME/dbt/<target>-<hash>)
    target = _target(market)
    assert DbtSession(target, tmp_path).parse(write_json=False).returncode == 0
    perf = tmp_path / "target" / "perf_info.json"
    perf.unlink()

    # Act: a new process loads the project and builds one session there, as the next run's would
    code = ("import json, sys; from datetime import date; from prometheus_lib.storage.dbt import DbtSession, panel_env; "
            "s = DbtSession(json.loads(sys.argv[1]), sys.argv[2]); s.manifest(); d = date.fromisoformat(sys.argv[3]); "
            "sys.exit(s.invoke(['run', '--select', '+returns_daily'], panel_env(d, d, 'US_EQ')).returncode)")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(target), str(tmp_path), END.isoformat()],
                          capture_output=True, text=True, check=False, timeout=300)

    # Assert: no file parsed again (the window, set for the command only, did not reach the parse)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads(perf.read_text())
    assert info["is_partial_parse_enabled"]
    assert info["parsed_path_count"] == 0, info


def test_invoke_with_unknown_flag_returns_code_2_and_the_error(market: dict[str, str], tmp_path: Path) -> None:
    # Act
    run = run_dbt(["run", "--no-such-flag"], _target(market), tmp_path)

    # Assert
    assert run.returncode == 2
    assert "no-such-flag" in run.stderr
    assert run.results == {}


def test_duckdb_file_after_a_command_is_writable_by_another_process(tmp_path: Path) -> None:
    # Arrange: a DuckDB warehouse of its own (the file is what this is about)
    location = {"backend": "duckdb", "duckdb_path": str(tmp_path / "warehouse.duckdb")}
    fill_market(location, synthetic_frames(N_INSTRUMENTS, START, END), START, END)
    run = run_dbt(["run", "--select", "+int_sessions"], _target(location), tmp_path / "dbt", panel_env(START, END, MARKET_ID))
    assert run.returncode == 0, run.stdout[-3000:]

    # Act: DuckDB lets one process at a time open a file for writing
    proc = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
                               "con.execute('create or replace table main.probe as select 1 as x'); con.close()",
         location["duckdb_path"]],
        capture_output=True, text=True, check=False, timeout=120,
    )

    # Assert
    assert proc.returncode == 0, proc.stderr
