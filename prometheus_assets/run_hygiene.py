"""Run hygiene: runs whose process died are failed, and old runs are garbage-collected.

**Dead runs.** A Dagster run is recorded as STARTED by the process that runs it and marked
finished by that same process. When the process dies without a word (``kill -9``, the OOM
killer, a machine stop) the run stays STARTED for ever, and because the cockpit's run queue
counts in-progress runs (``run_queue.max_concurrent_runs``), enough of them block every run
launched from the UI ("5 runs are currently in progress. Maximum is 2").

Who owns a run, and whether that owner is alive:

* a run launched by the ``prometheus`` command (``job.execute_in_process`` on the persistent
  instance, no run launcher involved) carries its process as tags: ``prometheus/pid``,
  ``prometheus/host`` and ``prometheus/proc_start``, which identifies the process so a
  recycled pid is not mistaken for the owner: ``boot:<boot id>:ticks:<n>`` (the kernel's boot
  id and the process's start time in clock ticks since boot, field 22 of ``/proc/<pid>/stat``;
  both are immune to wall-clock steps and compared exactly), or, where there is no ``/proc``
  (and for runs tagged before), the start time in epoch seconds;
* a run launched from the UI runs in a run worker the code server starts; the worker records
  ``Started process for run (pid: N)`` as the run's first engine event. The code server is
  started by ``dagster dev`` on the machine whose webserver/daemon launched the run, and
  :class:`PrometheusRunLauncher` tags the run with that machine's host name
  (``prometheus/launch_host``); the ``dagster/grpc_info`` tag only says ``localhost`` there,
  which names no machine once several hosts share PostgreSQL storage, so a UI run without the
  launch-host tag is left alone (unless its code server has a real host name, where the
  worker runs). A process with that pid that started well after the event is not the worker.

A host is this machine only when it equals ``socket.gethostname()`` (or the FQDN); a loopback
name (``localhost``, ``127.0.0.1``, empty) in a tag never does.

Two reapers use the same test:

* :class:`PrometheusRunLauncher` (``run_launcher`` in ``dagster.yaml``): Dagster's default
  launcher plus a worker health check, so the run-monitoring daemon (``prometheus ui``) fails
  a STARTED run whose owner on this host is gone within ``run_monitoring.poll_interval_seconds``.
  Dagster's ``DefaultRunLauncher`` has no health check at all, so without this the daemon only
  times out runs that never *start* (``start_timeout_seconds``) or never finish *cancelling*
  (``cancel_timeout_seconds``).
* :func:`reap_dead_runs`, which every ``prometheus`` command (and ``prometheus gc``) calls at
  start: it needs no daemon, and also covers runs that died before starting (NOT_STARTED,
  STARTING) and while cancelling.

A run whose owner is unknown (no tags and no pid event yet) or on another host is never touched.

**Retention.** :func:`collect_garbage` (``prometheus gc``) deletes finished runs older than the
retention (``prometheus.run_retention_days`` in the repository's ``dagster.yaml``, or
``--keep-days``) with their events, check-execution rows, per-run event-log file and compute
logs, keeps every run that holds the latest materialisation of an asset partition or the latest
result of an asset check (so the UI's asset and check status stay whole), then VACUUMs the
SQLite files and reports the sizes before and after.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from dagster._core.events import DagsterEventType, JobFailureData, RunFailureReason
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import GRPC_INFO_TAG

from prometheus_lib.config.home import REPO_ROOT
from prometheus_lib.errors import ConfigError, PrometheusError

PID_TAG = "prometheus/pid"
HOST_TAG = "prometheus/host"
PROC_START_TAG = "prometheus/proc_start"

#: run statuses that mean "a process is (or should be) working on it"
LIVE_STATUSES = (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
                 DagsterRunStatus.CANCELING)
FINISHED_STATUSES = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
LAUNCH_HOST_TAG = "prometheus/launch_host"
_START_TOLERANCE_S = 2.0  # old float proc_start tags: btime + ticks, read at clock-tick resolution
# A UI run's worker is only known by its pid and the wall-clock time of its pid event; its start
# time as read now (/proc btime + ticks, or psutil) moves with every wall-clock step (NTP step, VM
# resync), so a process counts as "started after the event" (a recycled pid) only beyond this
# margin: a forward clock step larger than this could still make a live worker look recycled,
# and a pid recycled within this margin after the event is taken for the worker.
_WALL_CLOCK_TOLERANCE_S = 120.0
#: names that are no machine in particular: never "this host" on the strength of a tag
_LOOPBACK_HOSTS = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "127.0.0.1", "::1",
                   "0.0.0.0", "::"}  # noqa: S104 - names, not a bind
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

REPO_DAGSTER_YAML = REPO_ROOT / "dagster.yaml"
RETENTION_KEY = "prometheus"  # the block of dagster.yaml that Dagster never sees


class RetentionError(PrometheusError, ValueError):
    """A retention setting or option is invalid."""


# ---------------------------------------------------------------- processes
def this_host() -> str:
    """The host name runs are tagged with."""
    return socket.gethostname()


def _is_loopback(host: str) -> bool:
    return host.strip().lower() in _LOOPBACK_HOSTS or host.startswith("127.")


def is_this_host(host: str) -> bool:
    """Whether ``host`` (from a tag) names this machine: its host name or FQDN, never a loopback name."""
    if _is_loopback(host):
        return False
    return host in (this_host(), socket.getfqdn())


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def boot_id() -> str | None:
    """The kernel's boot id (changes at every boot); None where there is none (no ``/proc``)."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start_ticks(pid: int) -> int | None:
    """Start time of live process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    None when there is no such process (or a zombie). Requires ``/proc``.
    """
    if pid <= 0:
        return None
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X", "x"):  # zombie or dead: killed, not yet reaped by its parent
        return None
    return int(fields[19])  # field 22: starttime


def process_start_time(pid: int) -> float | None:
    """The start time (epoch seconds) of live process ``pid``; None when there is none (or a zombie).

    NaN when the process exists but its start time cannot be read (no ``/proc`` and no psutil).
    Derived from the wall clock (``/proc`` btime, or psutil): it moves when the clock is stepped.
    """
    if pid <= 0:
        return None
    if _has_proc():
        ticks = process_start_ticks(pid)
        return None if ticks is None else _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return math.nan
        return math.nan
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return math.nan


def proc_start_tag(pid: int) -> str | None:
    """The ``prometheus/proc_start`` value identifying live process ``pid`` (see the module docstring)."""
    boot = boot_id() if _has_proc() else None
    if boot is not None:
        ticks = process_start_ticks(pid)
        return None if ticks is None else f"boot:{boot}:ticks:{ticks}"
    start = process_start_time(pid)  # no /proc: psutil's create time
    return None if start is None or math.isnan(start) else f"{start:.2f}"


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run it executes in process."""
    pid = os.getpid()
    tags = {PID_TAG: str(pid), HOST_TAG: this_host()}
    start = proc_start_tag(pid)
    if start is not None:
        tags[PROC_START_TAG] = start
    return tags


def _parse_proc_start(value: str) -> tuple[str, int] | float:
    """A ``prometheus/proc_start`` value: (boot id, start ticks), or epoch seconds (old form, no /proc)."""
    if value.startswith("boot:"):
        boot, sep, ticks = value[len("boot:"):].rpartition(":ticks:")
        if not sep or not boot:
            raise ValueError(f"bad {PROC_START_TAG} value {value!r}")
        return boot, int(ticks)
    return float(value)


@dataclass(frozen=True)
class RunOwner:
    """The process that executes a run: pid on host, and when it started (or at the latest)."""

    pid: int
    host: str
    started: float | None = None  # its start time in epoch seconds, from an old-form tag (or no /proc)
    started_by: float | None = None  # it had started by then (the pid event's wall-clock time)
    source: str = "tags"
    boot: str | None = None  # the boot id and start ticks it was tagged with (exact identity)
    start_ticks: int | None = None

    @property
    def local(self) -> bool:
        return is_this_host(self.host)

    def alive(self) -> bool:
        """Whether the owner still runs (always True for another host: that cannot be seen from here)."""
        if not self.local:
            return True
        if self.boot is not None and self.start_ticks is not None and _has_proc():
            current = boot_id()
            if current is not None:
                if current != self.boot:
                    return False  # the machine rebooted since: every process of that boot is gone
                ticks = process_start_ticks(self.pid)
                return ticks == self.start_ticks  # None: gone; other ticks: the pid was recycled
        start = process_start_time(self.pid)
        if start is None:
            return False
        if math.isnan(start):
            return True
        if self.started is not None and abs(start - self.started) > _START_TOLERANCE_S:
            return False  # the pid was recycled by a process started at another time
        if self.started_by is not None and start > self.started_by + _WALL_CLOCK_TOLERANCE_S:
            return False  # a process started (well) after the worker recorded its pid is not the worker
        return True

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _grpc_host(run: DagsterRun) -> str | None:
    raw = run.tags.get(GRPC_INFO_TAG)
    if not raw:
        return None
    try:
        return str(json.loads(raw).get("host") or "")
    except (ValueError, AttributeError):
        return None


def _ui_worker_host(run: DagsterRun) -> str | None:
    """Where a UI-launched run's worker runs: the code server's host when that is a real name, else
    the machine that launched it (``dagster dev`` starts its code server locally); None when unknown."""
    grpc = _grpc_host(run)
    if grpc is None:  # not launched through a code server: leave it alone
        return None
    launch = run.tags.get(LAUNCH_HOST_TAG)
    if not launch or _is_loopback(launch):  # launched before the tag existed, or by something else
        return None
    return launch if _is_loopback(grpc) else grpc


def run_owner(instance: Any, run: DagsterRun) -> RunOwner | None:
    """Who runs ``run``: its owner tags, else the run worker's pid event; None when not known."""
    tags = run.tags
    if PID_TAG in tags and HOST_TAG in tags:
        try:
            pid = int(tags[PID_TAG])
            start = _parse_proc_start(tags[PROC_START_TAG]) if tags.get(PROC_START_TAG) else None
        except ValueError:
            return None
        if isinstance(start, tuple):
            return RunOwner(pid, tags[HOST_TAG], boot=start[0], start_ticks=start[1], source="tags")
        return RunOwner(pid, tags[HOST_TAG], started=start, source="tags")
    host = _ui_worker_host(run)
    if host is None:
        return None
    for record in instance.event_log_storage.get_logs_for_run(run.run_id, of_type={DagsterEventType.ENGINE_EVENT},
                                                                 limit=20):
        event = record.dagster_event
        data = getattr(event, "event_specific_data", None)
        meta = getattr(data, "metadata", None) or {}
        if "pid" in meta:
            try:
                pid = int(getattr(meta["pid"], "value", meta["pid"]))
            except (TypeError, ValueError):
                continue
            return RunOwner(pid, host, started_by=record.timestamp, source="engine event")
    return None


def _death_message(run: DagsterRun, owner: RunOwner, by: str) -> str:
    command = run.tags.get("prometheus/command")
    what = f"`prometheus {command}`, " if command else ""
    return (f"The process running this run ({what}{owner.describe()}) is gone: it died without finishing the run "
            f"(killed, e.g. kill -9 or out of memory, or the machine stopped). Marked failed by {by}.")


# ---------------------------------------------------------------- the daemon's health check
class PrometheusRunLauncher(DefaultRunLauncher):
    """Dagster's default run launcher with a run-worker health check for run monitoring.

    The monitoring daemon calls :meth:`check_run_worker_health` for every STARTED run every
    ``run_monitoring.poll_interval_seconds``; a run whose owner (see the module docstring) on
    this host is gone is reported FAILED, with the reason, so it no longer counts against the
    run queue. A run whose owner cannot be determined is reported RUNNING (left alone).
    """

    def launch_run(self, context: LaunchRunContext) -> None:
        """Tag the run with this machine's host name (where ``dagster dev`` runs the code server and
        so the run worker), then launch it as Dagster's default launcher does."""
        run = context.dagster_run
        self._instance.add_run_tags(run.run_id, {LAUNCH_HOST_TAG: this_host()})
        run = self._instance.get_run_by_id(run.run_id) or run
        super().launch_run(LaunchRunContext(dagster_run=run, workspace=context.workspace))

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        owner = run_owner(self._instance, run)
        if owner is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "owner unknown")
        if owner.alive():
            return CheckRunHealthResult(WorkerStatus.RUNNING, owner.describe())
        return CheckRunHealthResult(WorkerStatus.FAILED, _death_message(run, owner, "the run monitoring daemon"))


# ---------------------------------------------------------------- the CLI's reaper
@dataclass(frozen=True)
class ReapedRun:
    """A run found without its process, and what it was marked."""

    run_id: str
    job_name: str
    was: str
    now: str
    owner: str

    def line(self) -> str:
        return (f"run {self.run_id[:8]} ({self.job_name}) was {self.was} but its process ({self.owner}) is gone: "
                f"marked {self.now}")


def reap_dead_runs(instance: Any) -> list[ReapedRun]:
    """Mark every unfinished run whose owning process on this host is gone as failed.

    NOT_STARTED, STARTING and STARTED runs become FAILURE (reason UNEXPECTED_TERMINATION, the
    message naming the dead process); a CANCELING run becomes CANCELED, as Dagster's own
    cancel timeout does. Runs of live processes, of other hosts and of unknown owners stay.
    """
    reaped = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=list(LIVE_STATUSES))):
        run = record.dagster_run
        owner = run_owner(instance, run)
        if owner is None or owner.alive():
            continue
        current = instance.get_run_by_id(run.run_id)  # it may have finished meanwhile
        if current is None or current.is_finished:
            continue
        message = _death_message(current, owner, "`prometheus` at its next start")
        if current.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(current, message)
            now = "CANCELED"
        else:
            instance.report_run_failed(current, message,
                                       JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
            now = "FAILURE"
        reaped.append(ReapedRun(run.run_id, run.job_name, current.status.value, now, owner.describe()))
    return reaped


# ---------------------------------------------------------------- retention
def retention_days(path: Path = REPO_DAGSTER_YAML) -> float:
    """``prometheus.run_retention_days`` of the repository's dagster.yaml."""
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    block = settings.get(RETENTION_KEY) or {}
    if not isinstance(block, dict) or "run_retention_days" not in block:
        raise ConfigError(f"{path}: {RETENTION_KEY}.run_retention_days: missing (days of finished runs to keep)")
    return check_keep_days(block["run_retention_days"], f"{path.name}: {RETENTION_KEY}.run_retention_days")


def check_keep_days(value: Any, culprit: str = "--keep-days") -> float:
    """``value`` as a number of days >= 0, or a RetentionError naming ``culprit``."""
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise RetentionError(f"{culprit}: expected a number of days >= 0 (was {value!r})") from None
    if not math.isfinite(days) or days < 0:
        raise RetentionError(f"{culprit}: expected a number of days >= 0 (was {value!r})")
    return days


def _sqlite_event_dir(instance: Any) -> Path | None:
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    storage = instance.event_log_storage
    return Path(storage._base_dir) if isinstance(storage, SqliteEventLogStorage) else None  # noqa: SLF001


def _sqlite_run_db(instance: Any) -> Path | None:
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    storage = instance.run_storage
    if isinstance(storage, SqliteRunStorage):
        path = Path(storage._conn_string.removeprefix("sqlite:///"))  # noqa: SLF001
        return path if path.exists() else None
    return None


def _file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def storage_sizes(instance: Any) -> dict[str, int]:
    """Bytes of Dagster's storage, by part: SQLite files (with their WAL), or PostgreSQL tables."""
    sizes: dict[str, int] = {}
    events = _sqlite_event_dir(instance)
    if events is not None:
        sizes["index.db (event index)"] = _file_size(events / "index.db")
        shards = [p for p in events.glob("*.db") if p.name != "index.db"]
        sizes["per-run event logs"] = sum(_file_size(p) for p in shards)
        runs_db = _sqlite_run_db(instance)
        if runs_db is not None:
            sizes["runs.db (runs, tags, snapshots)"] = _file_size(runs_db)
    else:
        from sqlalchemy import text

        with instance.event_log_storage.index_connection() as conn:
            for table in ("event_logs", "asset_check_executions", "asset_event_tags"):
                sizes[f"{table} (PostgreSQL)"] = int(conn.execute(text(f"select pg_total_relation_size('{table}')")).scalar() or 0)
            sizes["database (PostgreSQL)"] = int(conn.execute(text("select pg_database_size(current_database())")).scalar() or 0)
    logs = Path(os.environ.get("DAGSTER_HOME", "")) / "storage"
    base = getattr(instance.compute_log_manager, "_base_dir", None)
    logs = Path(base) if base else logs
    if logs.is_dir():
        sizes["compute logs"] = sum(p.stat().st_size for p in logs.rglob("*") if p.is_file())
    return sizes


def protected_run_ids(instance: Any) -> set[str]:
    """Runs holding the latest materialisation of an asset partition, or the latest result of a check
    (per asset, check and partition): deleting them would change what the UI shows as current."""
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as C
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as E
    from sqlalchemy import func, select

    latest_mat = (select(func.max(E.c.id))
                  .where(E.c.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION.value, E.c.asset_key.isnot(None))
                  .group_by(E.c.asset_key, E.c.partition))
    latest_check = (select(func.max(C.c.id)).where(C.c.execution_status.in_(["SUCCEEDED", "FAILED"]))
                    .group_by(C.c.asset_key, C.c.check_name, C.c.partition))
    with instance.event_log_storage.index_connection() as conn:
        ids = {r[0] for r in conn.execute(select(E.c.run_id).where(E.c.id.in_(latest_mat)).distinct())}
        ids |= {r[0] for r in conn.execute(select(C.c.run_id).where(C.c.id.in_(latest_check)).distinct())}
    return {i for i in ids if i}


def delete_run_completely(instance: Any, run_id: str) -> None:
    """Delete a run, its events, its check-execution rows, its event-log file and compute logs.

    ``DagsterInstance.delete_run`` deletes the run and its events (per-run and index rows, asset
    event tags) but leaves its ``asset_check_executions`` rows, the per-run SQLite file (emptied,
    not removed) and the compute logs.
    """
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as C

    instance.delete_run(run_id)
    with instance.event_log_storage.index_connection() as conn:
        conn.execute(C.delete().where(C.c.run_id == run_id))
    events = _sqlite_event_dir(instance)
    if events is not None:
        storage = instance.event_log_storage
        forget = getattr(storage, "forget_shard", None)
        if forget is not None:
            forget(run_id)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{events / run_id}.db{suffix}").unlink(missing_ok=True)
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except (NotImplementedError, OSError):
        pass


def vacuum_sqlite(instance: Any) -> list[str]:
    """Checkpoint and VACUUM the SQLite files that hold many runs; returns what could not be done."""
    problems = []
    events = _sqlite_event_dir(instance)
    if events is None:
        return ["PostgreSQL storage: no VACUUM here (autovacuum makes the freed space reusable)"]
    targets = [events / "index.db", _sqlite_run_db(instance)]
    for path in [p for p in targets if p is not None and p.exists()]:
        try:
            con = sqlite3.connect(str(path), timeout=30)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                con.execute("VACUUM")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            problems.append(f"{path.name}: VACUUM skipped ({e}; is the UI or a run using it?)")
    return problems


@dataclass
class GcReport:
    """What ``collect_garbage`` did."""

    keep_days: float
    cutoff: datetime
    candidates: int = 0
    removed: list[tuple[str, str, str]] = field(default_factory=list)  # run id, job, status
    kept_latest: int = 0
    runs_before: int = 0
    runs_after: int = 0
    reaped: list[ReapedRun] = field(default_factory=list)
    sizes_before: dict[str, int] = field(default_factory=dict)
    sizes_after: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [line.line() for line in self.reaped]
        out.append(f"Retention {self.keep_days:g} days: finished runs before {self.cutoff:%Y-%m-%d %H:%M} UTC: "
                   f"{self.candidates}; {verb} {len(self.removed)}, kept {self.kept_latest} holding the latest "
                   f"materialisation or check result of an asset partition")
        out += [f"  {verb} {rid[:8]} {job} {status}" for rid, job, status in self.removed[:20]]
        if len(self.removed) > 20:
            out.append(f"  ... and {len(self.removed) - 20} more")
        out.append(f"Dagster storage (before -> after): {self.runs_before:,} -> {self.runs_after:,} runs")
        names = list(dict.fromkeys([*self.sizes_before, *self.sizes_after]))
        for name in names:
            b, a = self.sizes_before.get(name), self.sizes_after.get(name)
            out.append(f"  {name:<38} {_mb(b):>10} -> {_mb(a):>10}")
        tb, ta = sum(self.sizes_before.values()), sum(self.sizes_after.values())
        if not any("PostgreSQL" in n for n in names):
            out.append(f"  {'total':<38} {_mb(tb):>10} -> {_mb(ta):>10}")
        out += [f"  note: {p}" for p in self.problems]
        return out


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f} MB"


def collect_garbage(instance: Any, keep_days: float, *, drop_latest: bool = False, dry_run: bool = False,
                    vacuum: bool = True, now: float | None = None,
                    progress: Callable[[str], None] | None = None) -> GcReport:
    """Delete finished runs that ended more than ``keep_days`` ago (see the module docstring).

    ``drop_latest`` also deletes old runs that hold the latest materialisation of an asset
    partition (the UI then shows those partitions as never materialised once its status cache is
    rebuilt). Unfinished runs are never deleted; dead ones are reaped (failed) first.
    """
    now = time.time() if now is None else now
    cutoff_ts = now - keep_days * 86400.0
    report = GcReport(keep_days, datetime.fromtimestamp(cutoff_ts, timezone.utc), dry_run=dry_run)
    report.reaped = [] if dry_run else reap_dead_runs(instance)
    report.sizes_before = storage_sizes(instance)
    report.runs_before = instance.get_runs_count()
    records = instance.get_run_records(filters=RunsFilter(
        statuses=list(FINISHED_STATUSES), created_before=datetime.fromtimestamp(cutoff_ts, timezone.utc)))
    old = [r for r in records if (r.end_time or r.update_timestamp.timestamp()) < cutoff_ts]
    report.candidates = len(old)
    keep = set() if drop_latest else protected_run_ids(instance)
    for record in old:
        run = record.dagster_run
        if run.run_id in keep:
            report.kept_latest += 1
            continue
        if not dry_run:
            delete_run_completely(instance, run.run_id)
            if progress and len(report.removed) % 100 == 99:
                progress(f"  ... {len(report.removed) + 1} runs removed")
        report.removed.append((run.run_id, run.job_name, run.status.value))
    if vacuum and not dry_run and report.removed:
        report.problems += vacuum_sqlite(instance)
    report.sizes_after = storage_sizes(instance)
    report.runs_after = instance.get_runs_count()
    return report


def reap_at_start(instance_factory: Callable[[], Any], out: Any = None) -> list[ReapedRun]:
    """Reap dead runs at a command's start, printing one line per run; never fails the command."""
    out = out or sys.stderr
    try:
        instance = instance_factory()
        try:
            reaped = reap_dead_runs(instance)
        finally:
            instance.dispose()
    except Exception as e:  # noqa: BLE001 - hygiene must not stop the command; the command reports storage errors itself
        print(f"prometheus: warning: could not check for runs whose process died: {type(e).__name__}: {e}", file=out)
        return []
    for r in reaped:
        print(f"prometheus: {r.line()}", file=out)
    return reaped


def strip_prometheus_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """dagster.yaml settings without the blocks Dagster does not know (``prometheus``)."""
    return {k: v for k, v in settings.items() if k != RETENTION_KEY}
