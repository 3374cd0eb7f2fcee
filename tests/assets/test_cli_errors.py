"""User errors at the command line: one line naming the culprit, a non-zero exit, no traceback
unless ``--debug``; a strategy in any configured market gets its own backtest job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from providers import ROOT, make_config_dir

BIN = Path(sys.executable).parent


def _prometheus(tmp_path: Path, config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "PROMETHEUS_"))}
    env.update(PROMETHEUS_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "home" / "dagster"),
               PROMETHEUS_CONFIG_DIR=str(config_dir))
    return subprocess.run([str(BIN / "prometheus"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _bad_strategies(config_dir: Path) -> Path:
    path = config_dir / "strategies.yaml"
    path.write_text(path.read_text().replace("      momentum_weight:", "      momentum_lookback: 100000\n      momentum_weight:", 1))
    return path


def test_cli_with_config_error_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    # Arrange
    path = _bad_strategies(make_config_dir(tmp_path))

    # Act
    proc = _prometheus(tmp_path, path.parent, "instance")

    # Assert
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"prometheus: {path}: strategies[US_CORE_LONG_EQ].baseline.momentum_lookback: unknown key (was 100000)"]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_with_config_error_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    # Arrange
    path = _bad_strategies(make_config_dir(tmp_path))

    # Act: --debug after the sub-command
    proc = _prometheus(tmp_path, path.parent, "instance", "--debug")

    # Assert
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "momentum_lookback: unknown key" in proc.stderr


@pytest.mark.slow
def test_backtest_before_any_data_says_so_in_a_few_lines(tmp_path: Path) -> None:
    # Arrange: a fresh home, nothing ingested
    config_dir = make_config_dir(tmp_path)

    # Act
    proc = _prometheus(tmp_path, config_dir, "backtest", "--strategy", "US_CORE_LONG_EQ",
                       "--start", "2024-01-02", "--end", "2024-03-01")

    # Assert: the failed step's own message, not Dagster's wrapper or a traceback
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1
    assert len(lines) <= 3, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert any("DataValidationError: no prices_daily rows for market US_EQ" in ln and "ingest them first" in ln
               for ln in lines), proc.stderr


def test_strategy_on_a_non_primary_market_gets_its_own_job_on_that_market_sessions(tmp_path: Path) -> None:
    # Arrange: a second strategy trading EU_EQ
    from prometheus_assets.definitions import backtest_job_name, build_definitions
    from prometheus_assets.resources import WarehouseResource

    config_dir = make_config_dir(tmp_path)
    path = config_dir / "strategies.yaml"
    doc = yaml.safe_load(path.read_text())
    eu = {**doc["strategies"][0], "strategy_id": "EU_CORE", "market_id": "EU_EQ",
          "portfolios": [{**doc["strategies"][0]["portfolios"][0], "portfolio_id": "EU_CORE_MAIN", "base_currency": "EUR"}]}
    doc["strategies"].append(eu)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    # Act
    defs = build_definitions(str(config_dir), WarehouseResource(backend="duckdb", duckdb_path=str(tmp_path / "w.duckdb")))
    eu_job = defs.resolve_job_def(backtest_job_name("EU_CORE"))
    us_job = defs.resolve_job_def(backtest_job_name("US_CORE_LONG_EQ"))

    # Assert: each on its own exchange's sessions (2024-05-01 is a Xetra holiday, an NYSE session)
    assert "2024-05-01" in us_job.partitions_def.get_partition_keys()
    assert "2024-05-01" not in eu_job.partitions_def.get_partition_keys()
    assert "2024-04-30" in eu_job.partitions_def.get_partition_keys()
