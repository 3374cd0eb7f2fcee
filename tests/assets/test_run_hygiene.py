"""Run hygiene: a run whose process died is failed (by the next `prometheus` command and by the
run-monitoring daemon's health check), and `prometheus gc` applies the run retention."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.launcher import LaunchRunContext
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, GRPC_INFO_TAG
from dagster._daemon.monitoring.run_monitoring import monitor_started_run
from dagster._serdes import deserialize_value
from providers import ROOT, make_config_dir

from prometheus_assets import cli
from prometheus_assets import run_hygiene
from prometheus_assets.run_hygiene import (
    HOST_TAG,
    LAUNCH_HOST_TAG,
    PID_TAG,
    PROC_START_TAG,
    PrometheusRunLauncher,
    RunOwner,
    collect_garbage,
    is_this_host,
    owner_tags,
    process_start_time,
    reap_dead_runs,
    retention_days,
    run_owner,
    this_host,
)

BIN = Path(sys.executable).parent
PARTS = dg.DailyPartitionsDefinition(start_date="2024-01-01")


# ---------------------------------------------------------------- helpers
def _started_run_id(runs_db: Path) -> str | None:
    """The id of a STARTED run in ``runs_db``, read only: opening a DagsterInstance on storage another
    process is still creating races its schema stamping (two alembic heads)."""
    if not runs_db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("select run_id from runs where status = 'STARTED' limit 1").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return None
    return row[0] if row else None


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _instance() -> dg.DagsterInstance:
    """The persistent instance `prometheus` sets up under the test's DAGSTER_HOME (repo dagster.yaml)."""
    cli.dagster_home()
    return dg.DagsterInstance.get()


def _add_run(instance: dg.DagsterInstance, status: DagsterRunStatus, tags: dict[str, str]) -> str:
    run = instance.add_run(dg.DagsterRun(job_name="some_job", run_id=str(uuid.uuid4()), status=status, tags=tags))
    return run.run_id


def _status(instance: dg.DagsterInstance, run_id: str) -> DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    events = instance.all_logs(run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED})
    return events[-1].message if events else ""


# ---------------------------------------------------------------- dead processes
@pytest.mark.slow
def test_killed_cli_run_is_failed_at_next_command_and_a_new_run_succeeds(tmp_path):
    # Arrange: `prometheus ingest` over half a year, killed with SIGKILL once its run is STARTED
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "PROMETHEUS_"))}
    home = tmp_path / "home" / "dagster"
    env.update(PROMETHEUS_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(home),
               PROMETHEUS_CONFIG_DIR=str(make_config_dir(tmp_path, n_instruments=4)))
    victim = subprocess.Popen([str(BIN / "prometheus"), "ingest", "--start", "2024-01-02", "--end", "2024-06-28"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started_id = None
    deadline = time.monotonic() + 120
    while started_id is None and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.2)
        started_id = _started_run_id(home / "history" / "runs.db")
    assert started_id is not None, f"the run never showed as STARTED: {victim.stderr.read() if victim.poll() is not None else ''}"
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the storage is set up by now
        started = instance.get_run_by_id(started_id)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _status(instance, started.run_id) == DagsterRunStatus.STARTED  # nobody said it died

    # Act: the next command, a short ingest, on the warehouse the killed process held (its locks
    # are flock/fcntl locks, released by the kernel with the process: a stale lock file never blocks)
    proc = subprocess.run([str(BIN / "prometheus"), "ingest", "--start", "2024-01-02", "--end", "2024-01-03"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)

    # Assert: the killed run is FAILURE, naming its dead process; the new run succeeded
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run {started.run_id[:8]} (ingest) was STARTED but its process (pid {victim.pid}" in proc.stderr
    assert started.tags[PID_TAG] == str(victim.pid) and started.tags[HOST_TAG] and started.tags[PROC_START_TAG]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _status(instance, started.run_id) == DagsterRunStatus.FAILURE
        message = _failure_message(instance, started.run_id)
        assert f"pid {victim.pid}" in message and "died without finishing the run" in message
        newest = instance.get_runs(limit=1)[0]
        assert newest.run_id != started.run_id and newest.status == DagsterRunStatus.SUCCESS


LOCAL_GRPC = '{"host": "localhost", "port": 4000}'  # what `dagster dev`'s code server puts in dagster/grpc_info


def _report_pid(instance: dg.DagsterInstance, run_id: str, pid: int) -> None:
    """The run worker's first engine event, as a UI-launched run records it."""
    run = instance.get_run_by_id(run_id)
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))


def test_monitoring_daemon_health_check_fails_only_runs_whose_process_is_gone():
    # Arrange: the instance `prometheus` configures, and STARTED runs with live, dead, recycled,
    # rebooted, remote and unknown owners
    instance = _instance()
    live = owner_tags()
    assert live[PROC_START_TAG].startswith("boot:") and ":ticks:" in live[PROC_START_TAG]
    boot, ticks = live[PROC_START_TAG].removeprefix("boot:").rsplit(":ticks:", 1)
    dead = _dead_pid()
    runs = {
        "live": _add_run(instance, DagsterRunStatus.STARTED, live),
        "dead": _add_run(instance, DagsterRunStatus.STARTED, {PID_TAG: str(dead), HOST_TAG: live[HOST_TAG]}),
        # this very pid, but the process that owned the run started at other ticks: the pid was recycled
        "recycled": _add_run(instance, DagsterRunStatus.STARTED,
                             {**live, PROC_START_TAG: f"boot:{boot}:ticks:{int(ticks) + 1}"}),
        # this very pid and ticks, but of another boot: the machine rebooted, the owner is gone
        "rebooted": _add_run(instance, DagsterRunStatus.STARTED,
                             {**live, PROC_START_TAG: f"boot:00000000-0000-0000-0000-000000000000:ticks:{ticks}"}),
        # tagged before the boot/ticks form: the start time in epoch seconds, compared with tolerance
        "old_form_live": _add_run(instance, DagsterRunStatus.STARTED,
                                  {**live, PROC_START_TAG: f"{process_start_time(os.getpid()):.2f}"}),
        "old_form_recycled": _add_run(instance, DagsterRunStatus.STARTED,
                                      {**live, PROC_START_TAG: f"{process_start_time(os.getpid()) - 1000:.2f}"}),
        "remote": _add_run(instance, DagsterRunStatus.STARTED, {PID_TAG: str(dead), HOST_TAG: "another-host"}),
        "unknown": _add_run(instance, DagsterRunStatus.STARTED, {}),
        # launched from the UI of this host: the launcher's host tag, the worker's pid in an engine event
        "ui_dead": _add_run(instance, DagsterRunStatus.STARTED, {GRPC_INFO_TAG: LOCAL_GRPC, LAUNCH_HOST_TAG: this_host()}),
        "ui_no_pid_yet": _add_run(instance, DagsterRunStatus.STARTED,
                                  {GRPC_INFO_TAG: LOCAL_GRPC, LAUNCH_HOST_TAG: this_host()}),
        # launched from a UI on another host sharing the storage, or before the launch-host tag existed
        "ui_other_host": _add_run(instance, DagsterRunStatus.STARTED,
                                  {GRPC_INFO_TAG: LOCAL_GRPC, LAUNCH_HOST_TAG: "another-host"}),
        "ui_untagged": _add_run(instance, DagsterRunStatus.STARTED, {GRPC_INFO_TAG: LOCAL_GRPC}),
    }
    for name in ("ui_dead", "ui_other_host", "ui_untagged"):
        _report_pid(instance, runs[name], dead)

    # Act: one pass of Dagster's run-monitoring daemon over them
    for run_id in runs.values():
        monitor_started_run(instance, None, instance.get_run_record_by_id(run_id), logging.getLogger("test"))

    # Assert
    assert isinstance(instance.run_launcher, PrometheusRunLauncher)
    assert instance.run_monitoring_enabled and instance.run_monitoring_poll_interval_seconds == 30
    assert instance.run_monitoring_start_timeout_seconds == 180 and instance.run_monitoring_max_resume_run_attempts == 0
    statuses = {name: _status(instance, run_id).value for name, run_id in runs.items()}
    assert statuses == {"live": "STARTED", "dead": "FAILURE", "recycled": "FAILURE", "rebooted": "FAILURE",
                        "old_form_live": "STARTED", "old_form_recycled": "FAILURE", "remote": "STARTED",
                        "unknown": "STARTED", "ui_dead": "FAILURE", "ui_no_pid_yet": "STARTED",
                        "ui_other_host": "STARTED", "ui_untagged": "STARTED"}
    assert f"pid {dead} on" in _failure_message(instance, runs["dead"])
    assert "Marked failed by the run monitoring daemon" in _failure_message(instance, runs["ui_dead"])
    instance.dispose()


def test_ui_run_owner_comes_from_the_launch_host_tag_never_from_a_localhost_grpc_tag(monkeypatch):
    # Arrange: this machine's FQDN resolving to "localhost" (as on many hosts) must not make a
    # "localhost" tag local; UI runs whose worker pid (a dead one) is known
    monkeypatch.setattr(run_hygiene.socket, "getfqdn", lambda *a: "localhost")
    instance = _instance()
    dead = _dead_pid()
    runs = {
        "untagged": _add_run(instance, DagsterRunStatus.STARTED, {GRPC_INFO_TAG: LOCAL_GRPC}),
        "empty_grpc_host": _add_run(instance, DagsterRunStatus.STARTED, {GRPC_INFO_TAG: '{"host": "", "port": 4000}'}),
        "launch_localhost": _add_run(instance, DagsterRunStatus.STARTED,
                                     {GRPC_INFO_TAG: LOCAL_GRPC, LAUNCH_HOST_TAG: "localhost"}),
        "other_host": _add_run(instance, DagsterRunStatus.STARTED,
                               {GRPC_INFO_TAG: LOCAL_GRPC, LAUNCH_HOST_TAG: "another-host"}),
        "here": _add_run(instance, DagsterRunStatus.STARTED, {GRPC_INFO_TAG: LOCAL_GRPC, LAUNCH_HOST_TAG: this_host()}),
        # a code server with a real host name is where the worker runs, whoever launched the run
        "remote_code_server": _add_run(instance, DagsterRunStatus.STARTED,
                                       {GRPC_INFO_TAG: '{"host": "code-host", "port": 4000}', LAUNCH_HOST_TAG: this_host()}),
    }
    for run_id in runs.values():
        _report_pid(instance, run_id, dead)

    # Act
    owners = {name: run_owner(instance, instance.get_run_by_id(run_id)) for name, run_id in runs.items()}
    reaped = reap_dead_runs(instance)

    # Assert: only the run launched here is judged (and reaped); the others are left alone
    assert owners["untagged"] is None and owners["empty_grpc_host"] is None and owners["launch_localhost"] is None
    assert owners["other_host"].host == "another-host" and not owners["other_host"].local
    assert owners["remote_code_server"].host == "code-host" and not owners["remote_code_server"].local
    assert owners["here"] == RunOwner(dead, this_host(), started_by=owners["here"].started_by, source="engine event")
    assert [r.run_id for r in reaped] == [runs["here"]]
    assert not is_this_host("localhost") and not is_this_host("") and not is_this_host("127.0.0.1")
    assert is_this_host(this_host())
    instance.dispose()


def test_launcher_tags_the_run_with_this_host_before_launching(monkeypatch):
    # Arrange: the default launcher's gRPC launch replaced by a recorder
    instance = _instance()
    run_id = _add_run(instance, DagsterRunStatus.NOT_STARTED, {})
    seen = []
    monkeypatch.setattr(run_hygiene.DefaultRunLauncher, "launch_run",
                        lambda self, context: seen.append(dict(context.dagster_run.tags)))

    # Act
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=instance.get_run_by_id(run_id), workspace=None))

    # Assert: tagged in storage, and the run handed on carries the tag
    assert instance.get_run_by_id(run_id).tags[LAUNCH_HOST_TAG] == this_host()
    assert seen == [{LAUNCH_HOST_TAG: this_host()}]
    instance.dispose()


def test_ui_worker_start_is_compared_with_a_wide_wall_clock_margin():
    # Arrange: this process as a UI run's worker, its pid event recorded some time before its
    # start time as read now (as after a forward step of the wall clock)
    me, start = os.getpid(), process_start_time(os.getpid())

    # Act, Assert: a step of a minute is tolerated; a process started 10 min after the event is not the worker
    assert RunOwner(me, this_host(), started_by=start - 60).alive()
    assert not RunOwner(me, this_host(), started_by=start - 600).alive()
    assert RunOwner(me, this_host(), started_by=start + 3600).alive()


def test_without_proc_owner_tags_fall_back_to_the_create_time(monkeypatch):
    # Arrange: a platform without /proc (psutil's create time instead)
    pytest.importorskip("psutil")
    monkeypatch.setattr(run_hygiene, "_has_proc", lambda: False)

    # Act
    tags = owner_tags()

    # Assert: the old float form, compared with tolerance; a boot/ticks tag falls back to the pid's existence
    start = float(tags[PROC_START_TAG])
    assert abs(start - time.time()) < 86400 * 365
    me = os.getpid()
    assert RunOwner(me, this_host(), started=start).alive()
    assert not RunOwner(me, this_host(), started=start - 1000).alive()
    assert RunOwner(me, this_host(), boot="some-boot", start_ticks=1).alive()
    assert not RunOwner(_dead_pid(), this_host(), started=start).alive()


def test_reap_dead_runs_ends_unstarted_and_cancelling_runs_of_dead_processes():
    # Arrange
    instance = _instance()
    host = owner_tags()[HOST_TAG]
    dead = {PID_TAG: str(_dead_pid()), HOST_TAG: host}
    runs = {status: _add_run(instance, status, dead) for status in
            (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING)}
    finished = _add_run(instance, DagsterRunStatus.SUCCESS, dead)
    mine = _add_run(instance, DagsterRunStatus.STARTED, owner_tags())

    # Act
    reaped = reap_dead_runs(instance)

    # Assert: failed (canceled when it was being cancelled); finished and live runs untouched
    assert {r.run_id for r in reaped} == set(runs.values())
    assert _status(instance, runs[DagsterRunStatus.NOT_STARTED]) == DagsterRunStatus.FAILURE
    assert _status(instance, runs[DagsterRunStatus.STARTING]) == DagsterRunStatus.FAILURE
    assert _status(instance, runs[DagsterRunStatus.CANCELING]) == DagsterRunStatus.CANCELED
    assert _status(instance, finished) == DagsterRunStatus.SUCCESS and _status(instance, mine) == DagsterRunStatus.STARTED
    assert reap_dead_runs(instance) == []  # nothing left
    instance.dispose()


# ---------------------------------------------------------------- retention
@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run())
def prices() -> None:
    """A trivial partitioned asset."""


@dg.asset_check(asset=prices, partitions_def=PARTS)
def positive() -> dg.AssetCheckResult:
    """A partitioned check."""
    return dg.AssetCheckResult(passed=True)


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run())
def broken() -> None:
    """An asset that fails."""
    raise RuntimeError("boom")


DEFS = dg.Definitions(assets=[prices, broken], asset_checks=[positive],
                      jobs=[dg.define_asset_job("prices_job", selection=[prices], partitions_def=PARTS),
                            dg.define_asset_job("broken_job", selection=[broken], partitions_def=PARTS)])


def _range_run(instance: dg.DagsterInstance, job: str, start: str, end: str) -> str:
    result = DEFS.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=False, run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end})
    return result.run_id


def _backdate(home: Path, run_ids: list[str], days: int) -> None:
    """Move runs ``days`` into the past (create, update and end times)."""
    con = sqlite3.connect(str(home / "history" / "runs.db"))
    shift = timedelta(days=days)
    for run_id in run_ids:
        created, updated, ended = con.execute(
            "select create_timestamp, update_timestamp, end_time from runs where run_id = ?", (run_id,)).fetchone()
        con.execute("update runs set create_timestamp = ?, update_timestamp = ?, end_time = ? where run_id = ?",
                    (str(datetime.fromisoformat(created) - shift), str(datetime.fromisoformat(updated) - shift),
                     (ended or 0) - shift.total_seconds(), run_id))
    con.commit()
    con.close()


def test_gc_removes_old_runs_but_keeps_recent_ones_and_the_latest_materialisations(monkeypatch, capsys):
    # Arrange: runs over daily partitions; old1 is superseded by old2 (Jan 1-5) and old4 (Jan 6-10),
    # old3 failed; recent failed yesterday
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    instance = _instance()
    home = Path(os.environ["DAGSTER_HOME"])
    old1 = _range_run(instance, "prices_job", "2024-01-01", "2024-01-10")
    old2 = _range_run(instance, "prices_job", "2024-01-01", "2024-01-05")
    old3 = _range_run(instance, "broken_job", "2024-01-01", "2024-01-02")
    old4 = _range_run(instance, "prices_job", "2024-01-06", "2024-01-10")
    recent = _range_run(instance, "broken_job", "2024-01-01", "2024-01-01")
    _backdate(home, [old1, old2, old3, old4], days=10)
    _backdate(home, [recent], days=1)
    shards = home / "history" / "runs"
    assert (shards / f"{old1}.db").exists()

    # Act: the command, keeping five days
    code = cli.main(["gc", "--keep-days", "5"])
    out = capsys.readouterr().out

    # Assert: old1 and old3 removed with their events, check rows and files; the rest kept
    assert code == 0, out
    remaining = {r.run_id for r in instance.get_runs()}
    assert remaining == {old2, old4, recent}
    assert "finished runs before" in out and ": 4; removed 2, kept 2 holding the latest materialisation" in out
    assert f"removed {old1[:8]} prices_job SUCCESS" in out and f"removed {old3[:8]} broken_job FAILURE" in out
    assert "index.db (event index)" in out and " -> " in out and "5 -> 3 runs" in out
    for gone in (old1, old3):
        assert not (shards / f"{gone}.db").exists()
        assert instance.all_logs(gone) == []
    with instance.event_log_storage.index_connection() as conn:
        check_runs = {r[0] for r in conn.execute(AssetCheckExecutionsTable.select().with_only_columns(
            AssetCheckExecutionsTable.c.run_id))}
    assert old1 not in check_runs and {old2, old4} <= check_runs
    # the UI still sees every partition materialised, each by its latest run
    assert instance.get_materialized_partitions(dg.AssetKey("prices")) == {f"2024-01-{d:02d}" for d in range(1, 11)}
    instance.dispose()


def test_gc_keep_days_default_comes_from_dagster_yaml_and_bad_values_are_one_line_errors(capsys):
    # Arrange, Act
    code = cli.main(["gc", "--keep-days", "-3"])
    err = capsys.readouterr().err

    # Assert
    assert retention_days() == 90
    assert code == 2 and err.strip() == "prometheus: --keep-days: expected a number of days >= 0 (was '-3')"
    assert "prometheus:" not in (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").read_text().split("\n", 1)[1]


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_planned_check_rows_store_the_event_without_its_partition_subset(storage, monkeypatch, request):
    # Arrange: the event log `prometheus` configures, embedded or in PostgreSQL
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    if storage == "postgres":
        url = urlparse(request.getfixturevalue("pg_databases").create("prom_dagster"))
        for var, value in (("HOST", url.hostname or "127.0.0.1"), ("PORT", str(url.port or 5432)),
                           ("USER", url.username or "postgres"), ("PASSWORD", url.password or ""),
                           ("DB", url.path.lstrip("/"))):
            monkeypatch.setenv(f"DAGSTER_PG_{var}", value)
    instance = _instance()
    assert type(instance.event_log_storage).__name__ == (
        "PrometheusPostgresEventLogStorage" if storage == "postgres" else "PrometheusSqliteEventLogStorage")

    # Act: a range run of 20 partitions with a partitioned check
    run_id = _range_run(instance, "prices_job", "2024-01-01", "2024-01-20")

    # Assert: one planned row per partition, each naming its partition, with a small event
    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(AssetCheckExecutionsTable.select().where(
            AssetCheckExecutionsTable.c.run_id == run_id,
            AssetCheckExecutionsTable.c.execution_status == "PLANNED")).mappings().all()
    assert sorted(r["partition"] for r in rows) == [f"2024-01-{d:02d}" for d in range(1, 21)]
    for row in rows:
        event = deserialize_value(row["evaluation_event"], dg.EventLogEntry)
        assert event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        assert event.dagster_event.event_specific_data.partitions_subset is None
        assert event.run_id == run_id and event.step_key == "prices_positive"
        assert len(row["evaluation_event"]) < 2000
    # the run's own log keeps the full event; Dagster reads the check history as usual
    planned = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED)
    assert len(planned[0].dagster_event.event_specific_data.partitions_subset.get_partition_keys()) == 20
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("prices"), "positive"), limit=50)
    assert len(history) == 21 and all(isinstance(r.event, dg.EventLogEntry) for r in history)
    instance.dispose()


def test_collect_garbage_dry_run_removes_nothing():
    # Arrange
    instance = _instance()
    run_id = _range_run(instance, "broken_job", "2024-01-01", "2024-01-01")

    # Act
    report = collect_garbage(instance, 0.0, dry_run=True, now=time.time() + 60)

    # Assert
    assert [r[0] for r in report.removed] == [run_id] and instance.get_run_by_id(run_id) is not None
    assert any("would remove" in line for line in report.lines())
    instance.dispose()
