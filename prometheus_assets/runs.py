"""Runs on the persistent Dagster instance: its home and dagster.yaml, opening it, and running a
job over a session range as one run (what every ``prometheus`` command that runs a job calls).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import yaml

from prometheus_lib.config.home import REPO_ROOT, prometheus_home

PG_ENV = "DAGSTER_PG_HOST"
DEBUG_ENV = "PROMETHEUS_DEBUG"  # set by --debug: tracebacks of user errors and failed steps


# ---------------------------------------------------------------- Dagster home
def dagster_home() -> Path:
    """Set up ``$DAGSTER_HOME`` (default ``$PROMETHEUS_HOME/dagster``) with its dagster.yaml.

    The repository's ``dagster.yaml`` holds the instance settings and the PostgreSQL storage
    read from ``DAGSTER_PG_*`` variables. When ``DAGSTER_PG_HOST`` is unset the storage blocks
    are replaced by SQLite storage under DAGSTER_HOME (Dagster's usual files) whose event log is
    ``PrometheusSqliteEventLogStorage`` (reused connections, ``synchronous=NORMAL``).
    """
    home = Path(os.environ.get("DAGSTER_HOME") or prometheus_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    settings = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    settings.pop("prometheus", None)  # run retention, read by `prometheus gc`: not a Dagster setting
    if not os.environ.get(PG_ENV):
        from prometheus_assets.storage import sqlite_storage_settings

        settings.pop("storage", None)
        settings.update(sqlite_storage_settings(str(home)))
    if _warehouse_backend() == "duckdb":
        # DuckDB has one writing process at a time (the warehouse lock): the UI's queue launches
        # one run at a time, and queues the next instead of failing its steps on the lock.
        settings.setdefault("run_queue", {})["max_concurrent_runs"] = 1
    target = home / "dagster.yaml"
    text = "# Written by `prometheus` from the repository's dagster.yaml; edit that file instead.\n" + yaml.safe_dump(settings, sort_keys=False)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return home


def _warehouse_backend() -> str:
    """The warehouse backend ("duckdb" or "postgres") this configuration writes to."""
    from prometheus_lib.config import load_config
    from prometheus_lib.storage.factory import resolve_backend

    return resolve_backend(load_config().warehouse)


def configure_event_bookkeeping() -> None:
    """Cut Dagster's per-partition bookkeeping for single-run backfills (see README, backtests).

    ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``: one "planned" event per asset for a
    range run instead of one per (asset, session) — the trade-off, per Dagster, is that the
    sessions of a failed range run are not each marked failed. ``DAGSTER_EVENT_BATCH_SIZE``:
    materialisations of a range are written in batches. Both are inherited by ``prometheus ui``
    (the daemon and the runs it launches). An explicit setting in the environment wins.
    """
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")


def open_instance():
    """The persistent Dagster instance under ``$DAGSTER_HOME``.

    Opening it creates and migrates its SQLite storage on first use; two commands started
    together on a fresh home would both create the same tables (``alembic_version`` "more than
    one head", "table ... already exists"). A kernel file lock serialises the opening: the
    second waits the fraction of a second the first takes, and the lock dies with its holder.
    """
    import fcntl

    import dagster as dg

    home = dagster_home()
    with open(home / ".instance.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


# ---------------------------------------------------------------- runs
def default_range(years: int = 2) -> tuple[date, date]:
    """The last ``years`` years of the primary market's sessions, ending at the last closed one."""
    from prometheus_lib.config import load_config
    from prometheus_lib.data.ingestion import market_calendar, utc_now

    config = load_config()
    cal = market_calendar(config.market(config.primary_market))
    end = cal.last_closed_session(utc_now())
    start = cal.next_session(end - timedelta(days=365 * years + years // 4))
    return start, end


def validate_range(job_name: str, start: date, end: date, instance=None) -> None:
    """Exit naming the parameter unless ``start`` and ``end`` are partitions of ``job_name`` in order."""
    from prometheus_assets.definitions import defs

    partitions = defs.resolve_job_def(job_name).partitions_def
    keys = set(partitions.get_partition_keys(dynamic_partitions_store=instance or open_instance()))
    for name, value in (("--start", start), ("--end", end)):
        if value.isoformat() not in keys:
            raise SystemExit(f"prometheus: {name} {value} is not a session partition of job {job_name!r} "
                             f"(partitions run {min(keys)}..{max(keys)}, trading sessions only)")
    if end < start:
        raise SystemExit(f"prometheus: --end {end} is before --start {start}")


def run_range(job_name: str, start: date, end: date, instance=None, tags: dict[str, str] | None = None):
    """Run ``job_name`` over the session range as one Dagster run on the persistent instance."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from prometheus_assets.definitions import defs

    instance = instance or open_instance()
    validate_range(job_name, start, end, instance)
    job = defs.resolve_job_def(job_name)
    from prometheus_assets.run_hygiene import owner_tags

    run_tags = {ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat(), **(tags or {})}
    # This process owns the run: if it dies (kill -9), the next command or the daemon fails the run.
    run_tags.update(owner_tags())
    # Dagster's console logger prints a failed step's whole traceback at ERROR: quiet unless
    # asked (--debug or PROMETHEUS_LOG_LEVEL); the command prints each failure in one line.
    level = os.environ.get("PROMETHEUS_LOG_LEVEL") or ("WARNING" if os.environ.get(DEBUG_ENV) else "CRITICAL")
    quiet = {"loggers": {"console": {"config": {"log_level": level}}}}
    # dagster-dbt echoes every dbt node event to stdout (hundreds of lines per panel run); the
    # command prints its own summary, with each failed check and step. --debug keeps the echo.
    import contextlib
    import io

    echo = contextlib.nullcontext() if os.environ.get(DEBUG_ENV) else contextlib.redirect_stdout(io.StringIO())
    with echo:
        result = job.execute_in_process(run_config=quiet, instance=instance, tags=run_tags, raise_on_error=False)
    return result, dg


def failure_lines(result) -> list[str]:
    """One line per failed step of a run: the step and the innermost error's message.

    Dagster wraps an op's exception (``DagsterExecutionStepExecutionError: Error occurred while
    executing op ...``); the user's error is the innermost cause, and its first line names the
    culprit.
    """
    lines = []
    for ev in result.all_events:
        if ev.event_type_value != "STEP_FAILURE":
            continue
        error = ev.event_specific_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        message = (error.message if error is not None else "unknown error").strip()
        first = message.splitlines()[0] if message else "unknown error"
        # "module.ErrorClass: message" -> "ErrorClass: message"
        head, sep, rest = first.partition(": ")
        first = f"{head.rsplit('.', 1)[-1]}{sep}{rest}"
        lines.append(f"step {ev.step_key} failed: {first}")
    return lines
