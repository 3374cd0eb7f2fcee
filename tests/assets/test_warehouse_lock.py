"""Concurrency from the outside. DuckDB: one writing process; a second `prometheus` command is
refused in one line before anything starts (or waits with --wait, saying for whom), a run in
another process (the UI's) holds the warehouse for its whole run or fails each step in one
line. PostgreSQL: two backtests of different run ids side by side, both right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml
from panel_data import CALENDAR, build_panels, fill_market, synthetic_frames
from providers import ROOT, build_defs, make_config_dir, run_range

from prometheus_assets.cli import failure_lines
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.storage import lock
from prometheus_lib.storage.factory import open_warehouse

BIN = Path(sys.executable).parent


def _env(home: Path, config_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROMETHEUS_"))}
    env.update(PROMETHEUS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), PROMETHEUS_CONFIG_DIR=str(config_dir), **extra)
    return env


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "prometheus"), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_holder(database: Path, pid: int, timeout: float = 120) -> lock.LockHolder:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = lock.read_holder(database)
        if holder is not None and holder.pid == pid:
            return holder
        time.sleep(0.05)
    pytest.fail(f"pid {pid} never took the warehouse lock of {database}")


@pytest.mark.slow
def test_second_command_on_duckdb_is_refused_in_one_line_a_waiting_one_follows_and_the_first_completes(tmp_path: Path) -> None:
    # Arrange: a first command that holds the warehouse (paused once it has it, so the second
    # certainly meets it)
    config_dir = make_config_dir(tmp_path, n_instruments=8)
    home = tmp_path / "home"
    env = _env(home, config_dir)
    database = home / "warehouse" / "prometheus.duckdb"
    first = _start(env, "ingest", "--start", "2024-01-02", "--end", "2024-02-29")
    holder = _wait_for_holder(database, first.pid)
    first.send_signal(signal.SIGSTOP)
    try:
        # Act: a second writer without --wait, and a third that waits
        second = subprocess.run([str(BIN / "prometheus"), "ingest", "--start", "2024-01-02", "--end", "2024-01-31"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        third = _start(env, "migrate", "--wait", "300")
        deadline = time.monotonic() + 60
        while "waiting up to" not in (line := third.stderr.readline()) and time.monotonic() < deadline:
            pass
    finally:
        first.send_signal(signal.SIGCONT)
    first_out, first_err = first.communicate(timeout=300)
    third_out, third_err = third.communicate(timeout=300)

    # Assert: the second refused in one line naming the first, before anything ran
    assert holder.command == "prometheus ingest --start 2024-01-02 --end 2024-02-29"
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stdout == ""
    assert second.stderr.splitlines() == [
        f"prometheus: warehouse {database} is in use by pid {first.pid} (prometheus ingest --start 2024-01-02 "
        f"--end 2024-02-29, since {holder.since.replace('T', ' ').replace('+00:00', ' UTC')}): DuckDB allows one "
        "writing process; wait for it to finish, or queue behind it with --wait SECONDS (PROMETHEUS_LOCK_WAIT)"]
    # the third said whom it waited for, then ran once the first was done
    assert line.startswith(f"prometheus: waiting up to 300 s for the warehouse lock of {database}, held by pid {first.pid} "
                           "(prometheus ingest --start 2024-01-02 --end 2024-02-29, since "), line
    assert third.returncode == 0, third_out + third_err
    assert "migrations applied" in third_out
    # the first completed with its checks; nobody printed a traceback or DuckDB's IO Error
    assert first.returncode == 0, first_out + first_err
    assert "Prometheus ingest job: succeeded" in first_out
    assert " passed, 0 failed (ERROR)" in first_out
    everything = first_out + first_err + second.stderr + third_out + third_err
    assert "Traceback" not in everything and "IO Error" not in everything
    with open_warehouse("duckdb", duckdb_path=str(database)) as wh:
        assert wh.row_count("prices_daily") == 8 * len(CALENDAR.sessions(date(2024, 1, 2), date(2024, 2, 29)))


def _holding_process(database: Path, command: str) -> subprocess.Popen:
    code = (f"import time; from prometheus_lib.storage import lock; lock.acquire({str(database)!r}, command={command!r}); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_run_in_its_own_process_fails_each_step_in_one_line_while_a_command_holds_the_warehouse(tmp_path: Path) -> None:
    # Arrange: a command holds the warehouse; this process plays the run the UI launches
    database = tmp_path / "prometheus.duckdb"
    defs = build_defs(make_config_dir(tmp_path, n_instruments=4), {"backend": "duckdb", "duckdb_path": str(database)})
    proc = _holding_process(database, "prometheus main --no-backtest")
    try:
        # Act
        result = run_range(defs, date(2024, 1, 2), date(2024, 1, 5))
    finally:
        proc.kill()
        proc.wait(timeout=30)

    # Assert: failed steps, each one line naming the holder; no DuckDB IO Error
    lines = failure_lines(result)
    assert not result.success and lines
    for line in lines:
        assert "failed: WarehouseLockedError: warehouse " in line
        assert f"is in use by pid {proc.pid} (prometheus main --no-backtest, since " in line
    messages = [str(ev.event_specific_data.error.to_string()) for ev in result.all_events if ev.event_type_value == "STEP_FAILURE"]
    assert not any("IO Error" in m for m in messages)


def test_run_holds_the_warehouse_lock_from_its_first_step_to_its_end(tmp_path: Path) -> None:
    # Arrange: an extra asset that looks at the lock in the middle of the run
    database = tmp_path / "prometheus.duckdb"
    seen: list[tuple[bool, lock.LockHolder | None]] = []

    @dg.asset
    def probe(warehouse: WarehouseResource) -> None:
        seen.append((lock.held_here(database), lock.read_holder(database)))

    defs = build_defs(make_config_dir(tmp_path, n_instruments=4), {"backend": "duckdb", "duckdb_path": str(database)})
    job = dg.Definitions.merge(defs, dg.Definitions(
        assets=[probe], jobs=[dg.define_asset_job("probe_job", selection=dg.AssetSelection.assets(probe))],
    )).resolve_job_def("probe_job")

    # Act
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())

    # Assert: held by "Dagster run <id> of job probe_job" while the run ran, given back after
    assert result.success
    held, holder = seen[0]
    assert held and holder.pid == os.getpid()
    assert holder.command == f"Dagster run {result.run_id[:8]} of job probe_job"
    assert not lock.held_here(database) and lock.read_holder(database) is None


# ---------------------------------------------------------------- PostgreSQL
DATA_START, DATA_END = date(2023, 1, 3), date(2024, 3, 28)
BT_START, BT_END = date(2024, 3, 1), date(2024, 3, 15)
STRATEGY = "US_CORE_LONG_EQ"


@pytest.mark.slow
@pytest.mark.postgres
def test_two_backtests_of_different_run_ids_at_once_on_postgres_both_succeed_with_their_rows(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: a PostgreSQL warehouse with a market and its panels
    config_dir = make_config_dir(tmp_path, n_instruments=20)
    doc = yaml.safe_load((config_dir / "strategies.yaml").read_text())
    doc["strategies"][0]["universe_size"] = 10
    doc["strategies"][0]["max_position_weight"] = 0.15
    (config_dir / "strategies.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    loc = {"backend": "postgres", "postgres_url": pg_url}
    fill_market(loc, synthetic_frames(20, DATA_START, DATA_END, seed=11), DATA_START, DATA_END)
    built = build_panels(loc, DATA_START, DATA_END, command="run")
    assert built.returncode == 0, built.stdout[-3000:]
    env = _env(tmp_path / "home", config_dir, PROMETHEUS_WAREHOUSE_URL=pg_url)
    args = ("backtest", "--strategy", STRATEGY, "--start", BT_START.isoformat(), "--end", BT_END.isoformat())

    # Act: two run ids at once (no warehouse lock on PostgreSQL)
    runs = {run_id: _start(env, *args, "--run-id", run_id) for run_id in ("PG_CONCURRENT_A", "PG_CONCURRENT_B")}
    outputs = {run_id: proc.communicate(timeout=300) for run_id, proc in runs.items()}

    # Assert: both succeeded, each run id has one row per session, and the same strategy over the
    # same range gave the same book
    for run_id, proc in runs.items():
        assert proc.returncode == 0, outputs[run_id]
        assert "Traceback" not in "".join(outputs[run_id])
    assert not (tmp_path / "home" / "warehouse").exists()  # nothing touched a DuckDB file
    sessions = CALENDAR.sessions(BT_START, BT_END)
    with open_warehouse(**loc) as wh:
        curves = {run_id: wh.read_table("backtest_daily_equity", scope={"run_id": run_id}).sort("session_date")
                  for run_id in runs}
        fills = {run_id: wh.row_count("fills", scope={"run_id": run_id}) for run_id in runs}
        run_ids = sorted(wh.read_table("backtest_runs")["run_id"].to_list())
    assert run_ids == sorted(runs)
    # (both were started together; whether their Dagster runs overlap in time depends on the
    # machine's load, so it is not asserted: neither waited for a lock, as there is none)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records()
    assert len(records) == 2 and all(r.dagster_run.is_success for r in records)
    a, b = curves.values()
    assert a["session_date"].to_list() == b["session_date"].to_list() == sessions
    assert a["equity"].to_list() == b["equity"].to_list()
    assert fills["PG_CONCURRENT_A"] == fills["PG_CONCURRENT_B"] > 0
