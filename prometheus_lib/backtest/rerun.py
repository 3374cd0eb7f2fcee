"""Atomic re-runs: a run id's result is replaced only by a complete new one, rows and report alike.

``prometheus backtest`` runs a strategy under a *staging* run id, ``<run id>~staging-<hex>``
(:func:`staging_run_id`): every row it writes carries that id, in ``run_id`` and inside the row
ids that embed it (``<run id>:<strategy>:<session>`` and the like). While it runs, the earlier
result of ``<run id>`` is untouched and remains the only result of that id. When the run has
completed (its ``backtest_runs`` row is written last, in the book's transaction),
:func:`promote_run` replaces the earlier rows in **one warehouse transaction**: it deletes the rows
of ``<run id>`` from every run-scoped table and re-keys the staging rows to ``<run id>`` (the
``run_id`` column and the staging id inside every text and JSON value). A run that fails is
discarded (:func:`discard_staging`); one that was killed leaves a staging set that is never read
as a result (no reader asks for a staging id) and that the next run of the same id discards first.

The report follows the same rule. Each complete report is written to a version folder of its
own, ``reports/.<run id>~<dagster run id>/``, before the rows are promoted;
``reports/<run id>`` is a symbolic link to the published version, replaced in one
``os.replace`` after the promotion has committed (:func:`publish_report`), so it always names one
complete report. A crash between the commit and that rename leaves the earlier report published
and the new version's folder beside it; the next run of the id rolls it forward, since
``backtest_runs.dagster_run_id`` says which version the warehouse holds
(:func:`settle_reports`).

Run ids that go through this path are validated (:func:`check_run_id`): letters, digits and
``. _ : @ + = -``, so that an id is a safe file name and reads the same in text and in JSON.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_lib.backtest.runner import RUN_TABLES
from prometheus_lib.errors import ConfigError, WarehouseError
from prometheus_lib.storage.catalog import ColumnType, get_table

if TYPE_CHECKING:
    from prometheus_lib.storage.warehouse import Warehouse

STAGING_MARK = "~staging-"
_VERSION_SEP = "~"  # reports/.<run id>~<version>: "~" is not a run-id character
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TEXT_TYPES = (ColumnType.TEXT, ColumnType.JSON)


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if a re-runnable backtest may carry it.

    Raises
    ------
    ConfigError
        Unless it is 1-128 letters, digits and ``. _ : @ + = -`` starting with a letter or digit.
    """
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(
            f"--run-id {run_id!r}: a run id is 1-128 letters, digits and . _ : @ + = - starting with a "
            "letter or digit (it names the report folder and prefixes the run's row ids)"
        )
    return run_id


def staging_run_id(run_id: str) -> str:
    """A fresh staging id of ``run_id``: ``<run id>~staging-<16 hex digits>``."""
    return f"{check_run_id(run_id)}{STAGING_MARK}{uuid.uuid4().hex[:16]}"


def staged_run_id(run_id: str) -> str | None:
    """The run id that staging id ``run_id`` stages, or None if ``run_id`` is not a staging id."""
    base, mark, token = run_id.rpartition(STAGING_MARK)
    return base if mark and base and token else None


def _check_staging(staging_id: str, run_id: str) -> None:
    check_run_id(run_id)
    if staged_run_id(staging_id) != run_id:
        raise WarehouseError(f"{staging_id!r} is not a staging id of run {run_id!r} ({run_id}{STAGING_MARK}<hex>)")


def _count(wh: Warehouse, qualified: str, where: str, params: list) -> int:
    return int(wh.query(f"SELECT count(*) AS n FROM {qualified} WHERE {where}", params)["n"][0])


def staging_ids(wh: Warehouse, run_id: str) -> list[str]:
    """The staging ids of ``run_id`` that have rows in the run-scoped tables (left by killed runs)."""
    prefix = check_run_id(run_id) + STAGING_MARK
    ph = wh.placeholder
    found: set[str] = set()
    for name in RUN_TABLES:
        t = get_table(name)
        df = wh.query(f"SELECT DISTINCT run_id FROM {t.qualified_name} WHERE substr(run_id, 1, {ph}) = {ph}",
                      [len(prefix), prefix])
        found.update(df["run_id"].to_list() if df.height else [])
    return sorted(found)


def discard_staging(wh: Warehouse, run_id: str, staging_id: str | None = None) -> int:
    """Delete staging rows of ``run_id`` from every run-scoped table in one transaction; return how many.

    With ``staging_id``, only that staging set (a run that failed); without, every staging set of
    ``run_id`` (left by runs that were killed). Rows of ``run_id`` itself are never touched.
    """
    ph = wh.placeholder
    if staging_id is not None:
        _check_staging(staging_id, run_id)
        where, params = f"run_id = {ph}", [staging_id]
    else:
        prefix = check_run_id(run_id) + STAGING_MARK
        where, params = f"substr(run_id, 1, {ph}) = {ph}", [len(prefix), prefix]
    n = 0
    with wh.transaction():
        for name in RUN_TABLES:
            t = get_table(name)
            n += _count(wh, t.qualified_name, where, params)
            wh.execute(f"DELETE FROM {t.qualified_name} WHERE {where}", params)
    return n


@dataclass(frozen=True, slots=True)
class Promotion:
    """What :func:`promote_run` did: rows of the earlier result replaced, staging rows re-keyed."""

    run_id: str
    replaced_rows: int
    promoted_rows: int
    tables: dict[str, int]


def _rekey(wh: Warehouse, name: str, staging_id: str, run_id: str) -> tuple[str, list]:
    """The UPDATE that moves ``name``'s staging rows to ``run_id``, ids inside values included."""
    t = get_table(name)
    ph = wh.placeholder
    sets, params = [f"run_id = {ph}"], [run_id]
    for c in t.columns:
        if c.name == "run_id" or c.type not in _TEXT_TYPES:
            continue
        if c.type is ColumnType.JSON:
            # ids are plain ASCII without quotes or backslashes (check_run_id), so they read the
            # same in the JSON text as in the value
            expr = (f"CAST(replace(CAST({c.name} AS VARCHAR), {ph}, {ph}) AS JSON)" if wh.dialect == "duckdb"
                    else f"CAST(replace(CAST({c.name} AS TEXT), {ph}, {ph}) AS JSONB)")
        else:
            expr = f"replace({c.name}, {ph}, {ph})"
        sets.append(f"{c.name} = {expr}")
        params += [staging_id, run_id]
    return f"UPDATE {t.qualified_name} SET {', '.join(sets)} WHERE run_id = {ph}", [*params, staging_id]


def promote_run(wh: Warehouse, staging_id: str, run_id: str) -> Promotion:
    """Replace the result of ``run_id`` by the complete staging set ``staging_id``, in one transaction.

    Deletes every row of ``run_id`` from the run-scoped tables and re-keys the staging rows to
    ``run_id``: the ``run_id`` column, and the staging id wherever a text or JSON value embeds it
    (decision, order, fill, action and trade ids; order ids inside JSON). The rows then equal what
    a run written directly under ``run_id`` holds. A failure (or a kill) before the commit
    leaves the earlier result as it was.

    Raises
    ------
    WarehouseError
        If ``staging_id`` is not a staging id of ``run_id``, or the staging set is not complete:
        no ``backtest_runs`` row (the book writes it last), or decisions (``universes``) and
        book (``backtest_daily_equity``) rows for different numbers of sessions. Nothing is
        changed then.
    """
    _check_staging(staging_id, run_id)
    ph = wh.placeholder
    replaced = promoted = 0
    tables: dict[str, int] = {}
    with wh.transaction():
        n = {name: _count(wh, get_table(name).qualified_name, f"run_id = {ph}", [staging_id])
             for name in ("backtest_runs", "universes", "backtest_daily_equity")}
        # complete: the book's last write is there, and decisions and book cover the same sessions
        if n["backtest_runs"] != 1 or not n["backtest_daily_equity"] or n["universes"] != n["backtest_daily_equity"]:
            raise WarehouseError(
                f"backtest run {staging_id!r} is not complete ({n['backtest_runs']} backtest_runs rows, "
                f"{n['universes']} sessions of decisions, {n['backtest_daily_equity']} of book): not promoted, "
                f"run {run_id!r} keeps its earlier result"
            )
        for name in RUN_TABLES:
            t = get_table(name)
            replaced += _count(wh, t.qualified_name, f"run_id = {ph}", [run_id])
            wh.execute(f"DELETE FROM {t.qualified_name} WHERE run_id = {ph}", [run_id])
            n = _count(wh, t.qualified_name, f"run_id = {ph}", [staging_id])
            if n:
                sql, params = _rekey(wh, name, staging_id, run_id)
                wh.execute(sql, params)
            tables[name] = n
            promoted += n
    return Promotion(run_id, replaced, promoted, tables)


def committed_version(wh: Warehouse, run_id: str) -> str | None:
    """The Dagster run id that wrote the result ``run_id`` holds (``backtest_runs.dagster_run_id``), or None."""
    t = get_table("backtest_runs")
    df = wh.query(f"SELECT dagster_run_id FROM {t.qualified_name} WHERE run_id = {wh.placeholder}", [run_id])
    return df["dagster_run_id"][0] if df.height else None


# ---------------------------------------------------------------- reports
def _version_name(run_id: str, version: str) -> str:
    if not _VERSION.match(version):
        raise ValueError(f"report version {version!r}: letters, digits and . _ - only")
    return f".{check_run_id(run_id)}{_VERSION_SEP}{version}"


def report_version_dir(reports: Path, run_id: str, version: str) -> Path:
    """The folder of one version of ``run_id``'s report: ``reports/.<run id>~<version>``."""
    return Path(reports) / _version_name(run_id, version)


def stage_report(reports: Path, run_id: str, version: str) -> Path:
    """Create (empty) and return the folder a new report version is written to, unpublished."""
    folder = report_version_dir(reports, run_id, version)
    _remove(folder)
    folder.mkdir(parents=True)
    return folder


def published_version(reports: Path, run_id: str) -> str | None:
    """The version ``reports/<run id>`` points at, or None when none is published."""
    link = Path(reports) / check_run_id(run_id)
    if not link.is_symlink():
        return None
    name = os.readlink(link)
    prefix = f".{run_id}{_VERSION_SEP}"
    return name[len(prefix):] if name.startswith(prefix) else None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _leftovers(reports: Path, run_id: str, keep: str | None) -> list[Path]:
    prefix = f".{run_id}{_VERSION_SEP}"
    if not reports.is_dir():
        return []
    aside = f"{prefix}old-"  # a real folder that stood at reports/<run id>: moved aside, never deleted
    return [p for p in reports.iterdir() if p.name.startswith(prefix) and p.name != keep and not p.name.startswith(aside)]


def publish_report(reports: Path, run_id: str, version: str) -> Path:
    """Make ``reports/<run id>`` name report ``version`` in one atomic rename; return that path.

    The link is created beside it and renamed over it (``os.replace``), so at every instant the
    path names either the earlier complete report or the new one. Other versions of the id, and
    the files of the earlier layout (``reports/<run id>.png`` and ``.html``), are removed after.
    """
    reports = Path(reports)
    name = _version_name(run_id, version)
    if not (reports / name).is_dir():
        raise FileNotFoundError(f"report version {reports / name} does not exist")
    link = reports / run_id
    tmp = reports / f".{run_id}{_VERSION_SEP}link-{uuid.uuid4().hex[:12]}"
    os.symlink(name, tmp, target_is_directory=True)
    if link.exists() and not link.is_symlink():  # a folder written by hand or another tool
        os.replace(link, reports / f".{run_id}{_VERSION_SEP}old-{uuid.uuid4().hex[:12]}")
    os.replace(tmp, link)
    _fsync_dir(reports)
    for stale in _leftovers(reports, run_id, keep=name):
        _remove(stale)
    for legacy in (reports / f"{run_id}.png", reports / f"{run_id}.html"):
        legacy.unlink(missing_ok=True)
    return link


def settle_reports(reports: Path, run_id: str, committed: str | None) -> str | None:
    """Bring ``run_id``'s report in line with the warehouse after a crash; return the published version.

    ``committed`` is the version the warehouse holds (:func:`committed_version`). If its folder
    is there but not published (a crash between the promotion's commit and the rename), it is
    published now; every other unpublished version and leftover link is removed.
    """
    reports = Path(reports)
    current = published_version(reports, run_id)
    if committed is not None and committed != current:
        with contextlib.suppress(ValueError):
            if report_version_dir(reports, run_id, committed).is_dir():
                publish_report(reports, run_id, committed)
                return committed
    keep = _version_name(run_id, current) if current else None
    for stale in _leftovers(reports, run_id, keep=keep):
        _remove(stale)
    return current


def discard_report(reports: Path, run_id: str, version: str) -> None:
    """Remove an unpublished report version (its run failed); the published one stays."""
    if published_version(reports, run_id) != version:
        _remove(report_version_dir(reports, run_id, version))


__all__ = [
    "STAGING_MARK", "Promotion", "check_run_id", "committed_version", "discard_report", "discard_staging",
    "promote_run", "publish_report", "published_version", "report_version_dir", "settle_reports",
    "stage_report", "staged_run_id", "staging_ids", "staging_run_id",
]
