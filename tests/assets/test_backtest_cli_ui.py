"""Backtests from the outside: `prometheus backtest` on the persistent instance, and the same
backfill launched the way the UI's partition dialog does (GraphQL ``launchPartitionBackfill``
to a running webserver and daemon)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml
from panel_data import CALENDAR, build_panels, fill_market, synthetic_frames
from providers import ROOT, make_config_dir

from prometheus_assets.assets.strategy import default_run_id, strategy_keys
from prometheus_lib.config import load_config
from prometheus_lib.storage.factory import open_warehouse

# One xdist worker runs the whole module, so ``prepared_home`` is built once.
pytestmark = pytest.mark.xdist_group("backtest_cli_ui")

BIN = Path(sys.executable).parent
DATA_START, DATA_END = date(2023, 1, 3), date(2024, 3, 28)
BT_START, BT_END = date(2024, 2, 1), date(2024, 3, 15)
STRATEGY = "US_CORE_LONG_EQ"


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory) -> Path:
    """A PROMETHEUS_HOME whose embedded warehouse holds a synthetic market and its panels."""
    base = tmp_path_factory.mktemp("bt_home")
    config_dir = make_config_dir(base, n_instruments=40)
    doc = yaml.safe_load((config_dir / "strategies.yaml").read_text())
    doc["strategies"][0]["universe_size"] = 10
    doc["strategies"][0]["max_position_weight"] = 0.15
    (config_dir / "strategies.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    path = base / "template" / "warehouse" / "prometheus.duckdb"
    path.parent.mkdir(parents=True)
    loc = {"backend": "duckdb", "duckdb_path": str(path)}
    fill_market(loc, synthetic_frames(40, DATA_START, DATA_END, seed=11), DATA_START, DATA_END)
    run = build_panels(loc, DATA_START, DATA_END, command="run")
    assert run.returncode == 0, run.stdout[-3000:]
    return base


def _home(prepared: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    home = tmp_path / "home"
    shutil.copytree(prepared / "template", home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROMETHEUS_"))}
    env.update(PROMETHEUS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
               PROMETHEUS_CONFIG_DIR=str(prepared / "configs"))
    return env, home


def _backtest(env, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prometheus"), "backtest", "--strategy", STRATEGY, "--start", BT_START.isoformat(),
         "--end", BT_END.isoformat(), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def test_backtest_command_with_range_runs_once_prints_tear_sheet_and_writes_report(prepared_home, tmp_path, monkeypatch):
    # Arrange
    env, home = _home(prepared_home, tmp_path)

    # Act
    first = _backtest(env)
    again = _backtest(env)

    # Assert: the tear sheet, the report files, and one run per command on the persistent instance
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    for label in ("Sharpe ratio", "Max drawdown", "VaR 99%", "Information ratio", "Turnover", "Run id"):
        assert label in out, label
    report = [line for line in out.splitlines() if line.startswith("Report: ")][0][len("Report: "):].split(", ")
    png, html = Path(report[0]), Path(report[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in html.read_text()
    assert again.returncode == 0 and "Replaced" in again.stdout
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert [r.job_name for r in runs] == [f"backtest_{STRATEGY}"] * 2
    assert all(r.tags["dagster/asset_partition_range_start"] == BT_START.isoformat() for r in runs)
    run_id = [line.split()[-1] for line in out.splitlines() if line.strip().startswith("Run id")][0]
    with open_warehouse("duckdb", duckdb_path=str(home / "warehouse" / "prometheus.duckdb")) as wh:
        equity = wh.read_table("backtest_daily_equity", scope={"run_id": run_id})
        assert equity.height == len(CALENDAR.sessions(BT_START, BT_END))  # replaced, not duplicated
        assert wh.read_table("backtest_runs")["run_id"].to_list() == [run_id]


def test_backtest_command_with_unknown_strategy_names_the_parameter(prepared_home, tmp_path):
    env, _ = _home(prepared_home, tmp_path)
    proc = subprocess.run([str(BIN / "prometheus"), "backtest", "--strategy", "NOPE", "--start", "2024-02-01",
                           "--end", "2024-02-05"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--strategy" in proc.stderr and "NOPE" in proc.stderr


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_partition_backfill_from_ui_with_range_runs_as_one_run(prepared_home, tmp_path):
    # Arrange: the webserver and the daemon (`dagster dev`) on the prepared home
    env, home = _home(prepared_home, tmp_path)
    subprocess.run([str(BIN / "prometheus"), "instance"], cwd=ROOT, env=env, check=True, capture_output=True)
    env.update(DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS="1")
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                             "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    decisions, book = strategy_keys(STRATEGY)
    partitions = [s.isoformat() for s in CALENDAR.sessions(BT_START, BT_END)]
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("dagster dev did not come up")
                time.sleep(1)

        # Act: what the partition dialog sends for a range of the strategy's assets
        launched = _graphql(port, """
          mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"params": {"partitionNames": partitions,
                        "assetSelection": [{"path": decisions.path}, {"path": book.path}]}})["data"]["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        status, error = None, None
        deadline = time.time() + 400
        while time.time() < deadline:
            data = _graphql(port, """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status numPartitions error { message } } } }""", {"id": launched["backfillId"]})
            status = data["data"]["partitionBackfillOrError"]["status"]
            error = data["data"]["partitionBackfillOrError"].get("error")
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED", "COMPLETED_FAILED", "CANCELED"):
                break
            time.sleep(3)
        runs = _graphql(port, "{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }")
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # dagster dev's daemon and code server can be slow to stop
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)

    # Assert: one run for the whole range, and the book under the strategy's default run id
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (status, error)
    results = runs["data"]["runsOrError"]["results"]
    assert len(results) == 1 and results[0]["status"] == "SUCCESS", results
    run_id = default_run_id(load_config(env["PROMETHEUS_CONFIG_DIR"]).strategy(STRATEGY))
    with open_warehouse("duckdb", duckdb_path=str(home / "warehouse" / "prometheus.duckdb")) as wh:
        eq = wh.read_table("backtest_daily_equity", scope={"run_id": run_id})
    assert eq["session_date"].to_list() == CALENDAR.sessions(BT_START, BT_END)
