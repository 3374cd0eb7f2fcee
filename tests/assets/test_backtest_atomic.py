"""`prometheus backtest` re-runs are atomic: a run that is killed (inside or outside a warehouse
transaction) or fails leaves the run id's earlier complete result and report as they were, and
the next successful run replaces both whole, leaving no staging rows behind.

Each interruption runs the real command in a subprocess whose code is patched at one point (the
book's computation, the promotion's last UPDATE, or a failing book step); at that point it
prints ``PARKED`` and waits, and the test kills it with SIGKILL from outside. One prepared home
with a first complete result is copied for each case.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from backtest_providers import assert_rows_match
from panel_data import CALENDAR, build_panels, fill_market, synthetic_frames
from providers import ROOT, make_config_dir

from prometheus_lib.backtest import rerun
from prometheus_lib.backtest.runner import RUN_TABLES
from prometheus_lib.storage.factory import open_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backtest_atomic")]

DATA_START, DATA_END = date(2023, 1, 3), date(2024, 3, 28)
BT_START, BT_END = date(2024, 2, 1), date(2024, 3, 15)
STRATEGY = "US_CORE_LONG_EQ"
SESSIONS = CALENDAR.sessions(BT_START, BT_END)

# The command, patched at one point: "book" parks in the book's computation (the decisions'
# staging rows are committed, no transaction is open); "promotion" parks inside the promotion's
# transaction right after its last statement; "failure" makes the book step raise.
_PATCHED_COMMAND = """
import sys, time
import prometheus_assets.assets.strategy as strategy
from prometheus_lib.storage.warehouse import DuckDBWarehouse

def park():
    print("PARKED", file=sys.__stdout__, flush=True)  # the process's stdout (a CLI run captures sys.stdout)
    time.sleep(600)

where = sys.argv.pop(1)
if where == "book":
    strategy.run_execution = lambda *a, **k: park()
elif where == "promotion":
    execute = DuckDBWarehouse.execute
    def execute_then_park(self, sql, params=()):
        execute(self, sql, params)
        if sql.startswith("UPDATE runtime.backtest_runs "):
            park()
    DuckDBWarehouse.execute = execute_then_park
elif where == "failure":
    def fail(*a, **k):
        raise RuntimeError("injected failure in the book")
    strategy.run_execution = fail

from prometheus_assets.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class FirstResult:
    """A home holding one complete backtest result, what it holds, and how to run commands on it."""

    home: Path
    config_dir: Path
    run_id: str
    rows: dict[str, pl.DataFrame]
    report: dict[str, bytes]
    version: str


def _env(home: Path, config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROMETHEUS_"))}
    env.update(PROMETHEUS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), PROMETHEUS_CONFIG_DIR=str(config_dir))
    return env


def _argv() -> list[str]:
    return ["backtest", "--strategy", STRATEGY, "--start", BT_START.isoformat(), "--end", BT_END.isoformat()]


def _backtest(home: Path, config_dir: Path, where: str = "none") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PATCHED_COMMAND, where, *_argv()], cwd=ROOT,
                          env=_env(home, config_dir), capture_output=True, text=True, timeout=300)


def _kill_when_parked(home: Path, config_dir: Path, where: str, log: Path) -> None:
    """Run the command until it parks at ``where``, then SIGKILL it."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", _PATCHED_COMMAND, where, *_argv()], cwd=ROOT,
                                env=_env(home, config_dir), stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(240, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline()
            assert line == "PARKED\n", (line, log.read_text()[-3000:])
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            timer.cancel()
            proc.kill()
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _line(out: str, label: str) -> str:
    return [line.split()[-1] for line in out.splitlines() if line.strip().startswith(label)][0]


def _rows(home: Path, run_id: str) -> dict[str, pl.DataFrame]:
    with open_warehouse("duckdb", duckdb_path=str(home / "warehouse" / "prometheus.duckdb")) as wh:
        return {t: wh.read_table(t, scope={"run_id": run_id}) for t in RUN_TABLES}


def _run_ids(home: Path) -> set[str]:
    """Every run id with rows in any run-scoped table."""
    with open_warehouse("duckdb", duckdb_path=str(home / "warehouse" / "prometheus.duckdb")) as wh:
        return {r for t in RUN_TABLES for r in wh.read_table(t, columns=["run_id"])["run_id"].unique().to_list()}


def _report(home: Path, run_id: str) -> dict[str, bytes]:
    folder = home / "reports" / run_id
    return {name: (folder / name).read_bytes() for name in ("report.html", "report.png")}


def _reports(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "reports").iterdir())


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> FirstResult:
    """A home whose warehouse holds a synthetic market, its panels and one complete backtest result."""
    base = tmp_path_factory.mktemp("bt_atomic")
    config_dir = make_config_dir(base, n_instruments=40)
    doc = yaml.safe_load((config_dir / "strategies.yaml").read_text())
    doc["strategies"][0]["universe_size"] = 10
    doc["strategies"][0]["max_position_weight"] = 0.15
    (config_dir / "strategies.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    home = base / "home"
    (home / "warehouse").mkdir(parents=True)
    loc = {"backend": "duckdb", "duckdb_path": str(home / "warehouse" / "prometheus.duckdb")}
    fill_market(loc, synthetic_frames(40, DATA_START, DATA_END, seed=11), DATA_START, DATA_END)
    run = build_panels(loc, DATA_START, DATA_END, command="run")
    assert run.returncode == 0, run.stdout[-3000:]
    done = _backtest(home, config_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = _line(done.stdout, "Run id")
    rows = _rows(home, run_id)
    assert all(rows[t].height for t in RUN_TABLES), {t: f.height for t, f in rows.items()}
    version = rerun.published_version(home / "reports", run_id)
    assert version == _line(done.stdout, "Dagster run")
    return FirstResult(home, config_dir, run_id, rows, _report(home, run_id), version)


def _copy(first: FirstResult, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(first.home, home, symlinks=True)
    return home


def _assert_earlier_result_intact(first: FirstResult, home: Path) -> None:
    rows = _rows(home, first.run_id)
    for table in RUN_TABLES:
        assert rows[table].equals(first.rows[table]), table  # bit for bit, clocks included
    assert rerun.published_version(home / "reports", first.run_id) == first.version
    assert _report(home, first.run_id) == first.report


def test_backtest_killed_outside_a_transaction_keeps_the_earlier_result_and_report(first, tmp_path):
    # Arrange
    home = _copy(first, tmp_path)

    # Act: killed while the book computes; the decisions' staging rows are committed
    _kill_when_parked(home, first.config_dir, "book", tmp_path / "stderr.log")

    # Assert: nothing of the run id changed; the staging rows are there, under their own id only
    _assert_earlier_result_intact(first, home)
    staging = _run_ids(home) - {first.run_id}
    assert len(staging) == 1 and rerun.staged_run_id(staging.pop()) == first.run_id
    assert _reports(home) == sorted([f".{first.run_id}~{first.version}", first.run_id])


def test_backtest_with_failing_strategy_step_exits_1_and_keeps_the_earlier_result(first, tmp_path):
    home = _copy(first, tmp_path)

    failed = _backtest(home, first.config_dir, "failure")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "injected failure in the book" in failed.stderr
    assert f"run id {first.run_id} keeps its earlier result" in failed.stderr
    _assert_earlier_result_intact(first, home)
    assert _run_ids(home) == {first.run_id}  # the failed run's staging rows are gone
    assert _reports(home) == sorted([f".{first.run_id}~{first.version}", first.run_id])


def test_backtest_killed_inside_the_promotion_keeps_the_earlier_result_then_a_rerun_replaces_it(
    first, tmp_path, monkeypatch
):
    # Arrange
    home = _copy(first, tmp_path)

    # Act (1): killed inside the promotion's transaction, after its last statement
    _kill_when_parked(home, first.config_dir, "promotion", tmp_path / "stderr.log")

    # Assert (1): the earlier result and report; a complete staging set and an unpublished report beside
    _assert_earlier_result_intact(first, home)
    staging = _run_ids(home) - {first.run_id}
    assert len(staging) == 1
    assert len(_reports(home)) == 3

    # Act (2): a successful re-run
    again = _backtest(home, first.config_dir)

    # Assert (2): replaced whole (rows equal to the first run's but for clocks and the Dagster
    # run), the interrupted run's leftovers gone, the new report published
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Replaced" in again.stdout and "Discarded" in again.stdout
    version = _line(again.stdout, "Dagster run")
    rows = _rows(home, first.run_id)
    assert rows["backtest_runs"]["dagster_run_id"].to_list() == [version] != [first.version]
    for table in RUN_TABLES:
        assert_rows_match(table, rows[table].drop("dagster_run_id", strict=False),
                          first.rows[table].drop("dagster_run_id", strict=False))
    assert _run_ids(home) == {first.run_id}
    assert _reports(home) == sorted([f".{first.run_id}~{version}", first.run_id])
    assert rerun.published_version(home / "reports", first.run_id) == version
    assert _report(home, first.run_id)["report.png"][:8] == b"\x89PNG\r\n\x1a\n"
    # the asset checks ran inside the run on its staging rows, over every session
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    with dg.DagsterInstance.get() as instance:
        checks = [e.dagster_event.event_specific_data
                  for e in instance.all_logs(version, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    assert sorted(c.check_name for c in checks) == ["book_reconciles", "targets_valid"]
    for check in checks:
        assert check.passed, check.description
        assert rerun.staged_run_id(check.metadata["run_id"].value) == first.run_id
    assert any(f"over {len(SESSIONS)} sessions" in (c.description or "") for c in checks)


def test_backtest_with_unsafe_run_id_exits_2_naming_the_parameter_and_changes_nothing(first, tmp_path):
    home = _copy(first, tmp_path)

    proc = subprocess.run([sys.executable, "-m", "prometheus_assets.cli", *_argv(), "--run-id", "../escape"],
                          cwd=ROOT, env=_env(home, first.config_dir), capture_output=True, text=True, timeout=120)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("prometheus: --run-id '../escape'") and "Traceback" not in proc.stderr
    _assert_earlier_result_intact(first, home)
    assert not (tmp_path / "escape").exists()
