"""The cockpit end to end: the CLI's runs on a persistent instance (SQLite or PostgreSQL) and
the real Dagster webserver serving this code location.

``prometheus main`` on the default instance runs once (the module fixture ``main_run``) for the
summary test and the webserver test, which serves that instance; both stay on one xdist worker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
from providers import ROOT, make_config_dir

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, config_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "PROMETHEUS_"))}
    env.update(
        PROMETHEUS_HOME=str(tmp_path / "home"),
        DAGSTER_HOME=str(tmp_path / "home" / "dagster"),
        PROMETHEUS_CONFIG_DIR=str(config_dir),
        **extra,
    )
    return env


def _pg_env(pg_url: str) -> dict[str, str]:
    u = urlparse(pg_url)
    return {"DAGSTER_PG_HOST": u.hostname or "127.0.0.1", "DAGSTER_PG_PORT": str(u.port or 5432),
            "DAGSTER_PG_USER": u.username or "postgres", "DAGSTER_PG_PASSWORD": u.password or "",
            "DAGSTER_PG_DB": u.path.lstrip("/")}


def _main(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prometheus"), "main", "--start", "2024-01-02", "--end", "2024-01-05"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


@dataclass(frozen=True)
class MainRun:
    tmp_path: Path
    env: dict[str, str]
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> MainRun:
    """``prometheus main`` with a small market on the default (DuckDB + SQLite) instance."""
    tmp_path = tmp_path_factory.mktemp("cli_main")
    env = _env(tmp_path, make_config_dir(tmp_path))
    return MainRun(tmp_path, env, _main(tmp_path, env))


@pytest.mark.xdist_group("cli_main")
def test_main_command_with_small_market_runs_one_run_and_prints_summary(main_run: MainRun):
    # Arrange, Act: the fixture's main command
    tmp_path, proc = main_run.tmp_path, main_run.proc

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "main job: succeeded" in out and "sessions 2024-01-02..2024-01-05" in out
    # every market with data ran its own main job on its own sessions (Tokyo is closed until 4 January)
    assert "main_EU_EQ job: succeeded" in out and "main_JP_EQ job: succeeded" in out
    assert "(JP_EQ, run " in out and "sessions 2024-01-04..2024-01-05" in out
    assert "historical.prices_daily" in out and "runtime.instruments" in out
    assert "historical.returns_daily" in out and "historical.factors_daily" in out
    assert "Rows per table and market:" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("US_EQ"))
    assert header.split() == ["US_EQ", "EU_EQ", "JP_EQ"]  # rows per table, one column per market
    prices = next(line for line in out.splitlines() if line.strip().startswith("historical.prices_daily"))
    assert all(int(n.replace(",", "")) > 0 for n in prices.split()[1:])
    assert "Checks:" in out and "0 failed (ERROR)" in out
    checks = [line.split()[0] for line in out.splitlines() if " 0 failed (ERROR)" in line]
    assert checks == ["US_EQ", "EU_EQ", "JP_EQ"]  # checks per market, none failed
    assert str(tmp_path / "home" / "warehouse" / "prometheus.duckdb") in out
    # the runs live in the persistent SQLite instance under DAGSTER_HOME, so the UI shows them
    dagster_home = tmp_path / "home" / "dagster"
    settings = (dagster_home / "dagster.yaml").read_text()
    assert "postgres" not in settings and "PrometheusSqliteEventLogStorage" in settings  # tuned SQLite event log
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = {r.job_name: r for r in instance.get_runs()}
        assert sorted(runs) == ["main", "main_EU_EQ", "main_JP_EQ"]  # one run per market
        assert runs["main"].tags["dagster/asset_partition_range_start"] == "2024-01-02"
        assert runs["main_EU_EQ"].tags["dagster/asset_partition_range_start"] == "2024-01-02"
        assert runs["main_JP_EQ"].tags["dagster/asset_partition_range_start"] == "2024-01-04"


def test_main_command_with_bad_range_names_the_parameter(tmp_path):
    env = _env(tmp_path, make_config_dir(tmp_path))
    proc = subprocess.run([str(BIN / "prometheus"), "main", "--start", "2024-01-06", "--end", "2024-01-10"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--start 2024-01-06 is not a session partition" in proc.stderr


def test_main_command_with_postgres_dagster_storage_records_runs_in_postgres(tmp_path, pg_databases):
    # Arrange: Dagster's own storage in PostgreSQL, configured by the repo's dagster.yaml
    pg_url = pg_databases.create("prom_dagster")
    env = _env(tmp_path, make_config_dir(tmp_path), **_pg_env(pg_url))

    # Act
    proc = _main(tmp_path, env)

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import psycopg

    with psycopg.connect(pg_url) as con:
        runs = con.execute("SELECT pipeline_name, status FROM runs").fetchall()
        events = con.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'").fetchone()[0]
    assert sorted(runs) == [("main", "SUCCESS"), ("main_EU_EQ", "SUCCESS"), ("main_JP_EQ", "SUCCESS")]
    assert events >= 4 * 6  # 4 sessions x the session-partitioned tables


def test_main_command_with_postgres_warehouse_writes_postgres(tmp_path, pg_url):
    env = _env(tmp_path, make_config_dir(tmp_path), PROMETHEUS_WAREHOUSE_URL=pg_url)
    proc = _main(tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Warehouse: postgresql://" in proc.stdout
    import psycopg

    with psycopg.connect(pg_url) as con:
        sessions = dict(con.execute("SELECT market_id, count(DISTINCT session_date) FROM historical.prices_daily "
                                    "GROUP BY market_id").fetchall())
        assert sessions == {"US_EQ": 4, "EU_EQ": 4, "JP_EQ": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
@pytest.mark.xdist_group("cli_main")
def test_webserver_with_workspace_serves_assets_checks_and_runs(main_run: MainRun):
    # Arrange: one run in the instance (the fixture's), then the real webserver on the same DAGSTER_HOME
    env = main_run.env
    assert main_run.proc.returncode == 0, main_run.proc.stdout + main_run.proc.stderr
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                             "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("dagster-webserver did not come up")
                time.sleep(1)

        # Act
        data = _graphql(port, """{
          workspaceOrError { ... on Workspace { locationEntries { name loadStatus
            locationOrLoadError { __typename } } } }
          assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } }
          runsOrError { ... on Runs { results { jobName status } } }
        }""")["data"]

        # Assert
        entries = data["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [("prometheus", "RepositoryLocation")]
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert "historical/prices_daily" in nodes and "runtime/instruments" in nodes
        checks = {c["name"] for c in nodes["historical/prices_daily"]["assetChecksOrError"]["checks"]}
        assert {"schema", "unique_key", "sessions", "ohlc_consistency", "freshness"} <= checks
        assert sorted(r["jobName"] for r in data["runsOrError"]["results"]) == ["main", "main_EU_EQ", "main_JP_EQ"]
        assert {r["status"] for r in data["runsOrError"]["results"]} == {"SUCCESS"}
        assert "EU_EQ/historical/prices_daily" in nodes and "JP_EQ/historical/corporate_actions" in nodes
    finally:
        proc.terminate()
        proc.wait(timeout=30)
