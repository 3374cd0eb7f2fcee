"""The embedded Dagster storage `prometheus` writes: SQLite files in Dagster's layout whose event
log reuses connections with synchronous=NORMAL, and which other processes read as usual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from prometheus_assets.storage import PrometheusSqliteEventLogStorage, sqlite_storage_settings

PARTS = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run())
def first() -> None:
    """A trivial partitioned asset."""


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[first])
def second() -> None:
    """Another, downstream."""


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    settings = {"telemetry": {"enabled": False}, **sqlite_storage_settings(str(tmp_path))}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path


def test_instance_with_prometheus_settings_uses_tuned_event_log_in_dagster_layout(home):
    # Arrange / Act
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        with storage.index_connection() as conn:
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()

    # Assert
    assert isinstance(storage, PrometheusSqliteEventLogStorage)
    assert (sync, journal) == (1, "wal")  # NORMAL, write-ahead log
    assert (home / "history" / "runs" / "index.db").exists() and (home / "history" / "runs.db").exists()


def test_range_run_with_tuned_storage_records_every_partition_and_another_process_reads_them(home):
    # Arrange
    defs = dg.Definitions(assets=[first, second], jobs=[dg.define_asset_job("both", partitions_def=PARTS)])
    job = defs.resolve_job_def("both")

    # Act
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, tags={ASSET_PARTITION_RANGE_START_TAG: "2024-01-01",
                                                                 ASSET_PARTITION_RANGE_END_TAG: "2024-03-31"})
        assert result.success
        materialised = instance.get_materialized_partitions(dg.AssetKey("second"))
    other = subprocess.run(
        [sys.executable, "-c",
         "import dagster as dg\n"
         "with dg.DagsterInstance.get() as i:\n"
         "    print(len(i.get_materialized_partitions(dg.AssetKey('first'))), len(i.get_runs()))"],
        env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=120,
    )

    # Assert: 91 daily partitions per asset, seen by this process and by a fresh one
    assert len(materialised) == 91
    assert other.returncode == 0, other.stderr
    assert other.stdout.split() == ["91", "1"]


def test_commands_started_together_on_a_fresh_home_both_open_the_instance(tmp_path: Path) -> None:
    # Arrange: a fresh home each round (the storage is created by the first opening)
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROMETHEUS_"))}
    outcomes = []
    for round_ in range(3):
        home = tmp_path / f"home{round_}"
        run_env = {**env, "PROMETHEUS_HOME": str(home)}

        # Act: two commands that open the instance, started at once
        procs = [subprocess.Popen([str(bin_dir / "prometheus"), "gc", "--dry-run", "--keep-days", "1"],
                                  env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        outcomes += [(p.wait(timeout=120), p.stdout.read()) for p in procs]

    # Assert: no storage-creation race ("more than one head", "already exists", UNIQUE failed)
    for code, output in outcomes:
        assert code == 0 and "Traceback" not in output, output
