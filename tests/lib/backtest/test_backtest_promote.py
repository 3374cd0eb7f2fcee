"""Atomic re-runs in the library: a staging set replaces a run id's result only whole, and the
report link only ever names a complete report (``prometheus_lib.backtest.rerun``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from backtest_providers import BACKTEST_SESSIONS, assert_rows_match, run_backtest, scope_values, strategy_config, write_frames
from sharing import backend_params, new_location

from prometheus_lib.backtest import rerun
from prometheus_lib.backtest.runner import RUN_TABLES, BacktestData, delete_run
from prometheus_lib.errors import ConfigError, WarehouseError
from prometheus_lib.storage.catalog import ColumnType, get_table
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[3]
# carried remainders: open orders (and so order ids) inside backtest_daily_equity's JSON too
CONFIG = strategy_config(max_participation=0.01, remainder="carry")
RUN_ID = "RUN_A"
OTHER = "OTHER"
LOOKALIKE = "RUNXA"  # what the pattern "RUN_A~staging-%" would match if "_" were a LIKE wildcard
EARLIER, LATER = BACKTEST_SESSIONS[:12], BACKTEST_SESSIONS[:16]


@pytest.fixture(scope="module", params=backend_params("backtest_promote"))
def location(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_databases) -> dict[str, str]:
    return new_location(request.param, tmp_path_factory.mktemp("promote"), pg_databases)


class _Runs(dict):
    """(run id, number of sessions) -> the rows of that backtest, computed on first use."""

    def __init__(self, data: BacktestData) -> None:
        super().__init__()
        self.data = data

    def __missing__(self, key: tuple[str, int]) -> dict[str, pl.DataFrame]:
        run_id, n = key
        self[key] = run_backtest(self.data, CONFIG, BACKTEST_SESSIONS[:n], run_id=run_id).frames()
        return self[key]


@pytest.fixture(scope="module")
def frames(market_data: BacktestData) -> _Runs:
    """Rows of a backtest per run id and range, shared by the module's tests."""
    return _Runs(market_data)


@pytest.fixture
def warehouse(location: dict[str, str]) -> Iterator[Warehouse]:
    """The module's warehouse on each backend, cleared of every run these tests write."""
    with open_warehouse(**location) as wh:
        for run_id in (RUN_ID, OTHER, LOOKALIKE):
            delete_run(wh, run_id)
            rerun.discard_staging(wh, run_id)
        yield wh


def _run_row(run_id: str, sessions: list[date]) -> pl.DataFrame:
    return pl.DataFrame([{
        "run_id": run_id, "strategy_id": CONFIG.strategy_id, "sleeve_id": CONFIG.portfolios[0].portfolio_id,
        "start_date": sessions[0], "end_date": sessions[-1], "config_json": "{}",
        "created_at": datetime(2024, 1, 2, tzinfo=UTC), "metrics_json": f'{{"sessions": {len(sessions)}}}',
        "dagster_run_id": f"dagster-{run_id}",
    }], schema=get_table("backtest_runs").polars_schema)


def _write(wh: Warehouse, frames: dict[str, pl.DataFrame], run_id: str, sessions: list[date], complete: bool = True) -> None:
    """Write a run as the book does: every table in one transaction, backtest_runs last."""
    with wh.transaction():
        write_frames(wh, frames, sessions[0], sessions[-1], scope_values(CONFIG, run_id))
        if complete:
            wh.replace_table("backtest_runs", _run_row(run_id, sessions), {"run_id": run_id})


def _snapshot(wh: Warehouse, run_id: str) -> dict[str, pl.DataFrame]:
    return {t: wh.read_table(t, scope={"run_id": run_id}) for t in RUN_TABLES}


def _staging_residue(wh: Warehouse, but: str) -> list[str]:
    """Every table.column holding a staging id in a row of a run other than ``but``."""
    found = []
    for name in RUN_TABLES:
        t = get_table(name)
        rows = wh.read_table(name).filter(pl.col("run_id") != but)
        for c in t.columns:
            if c.type in (ColumnType.TEXT, ColumnType.JSON) and rows[c.name].str.contains(rerun.STAGING_MARK, literal=True).any():
                found.append(f"{name}.{c.name}")
    return found


def _assert_same(actual: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    for table in RUN_TABLES:
        assert_rows_match(table, actual[table], expected[table])


def _staged(wh: Warehouse, frames, n: int, complete: bool = True) -> str:
    staging = rerun.staging_run_id(RUN_ID)
    _write(wh, frames[(staging, n)], staging, BACKTEST_SESSIONS[:n], complete)
    return staging


@pytest.fixture
def earlier(warehouse: Warehouse, frames) -> dict[str, pl.DataFrame]:
    """RUN_A's complete earlier result over EARLIER, beside OTHER and a look-alike id; its rows."""
    _write(warehouse, frames[(RUN_ID, len(EARLIER))], RUN_ID, EARLIER)
    _write(warehouse, frames[(OTHER, len(EARLIER))], OTHER, EARLIER)
    _write(warehouse, frames[(f"{LOOKALIKE}~staging-0123", len(EARLIER))], f"{LOOKALIKE}~staging-0123", EARLIER)
    return _snapshot(warehouse, RUN_ID)


# ------------------------------------------------------------------ promotion
def test_promote_run_with_complete_staging_set_replaces_the_result_with_rows_of_a_direct_run(
    warehouse: Warehouse, frames, earlier: dict[str, pl.DataFrame]
) -> None:
    # Arrange: a staging set over a longer range (ids inside text and JSON values carry it)
    others = _snapshot(warehouse, OTHER)
    staging = _staged(warehouse, frames, len(LATER))

    # Act
    promotion = rerun.promote_run(warehouse, staging, RUN_ID)

    # Assert: RUN_A holds exactly what a run written directly under RUN_A holds
    direct = {**frames[(RUN_ID, len(LATER))], "backtest_runs": _run_row(RUN_ID, LATER)}
    _assert_same(_snapshot(warehouse, RUN_ID), direct)
    _assert_same(_snapshot(warehouse, OTHER), others)
    assert promotion.replaced_rows == sum(f.height for f in earlier.values())
    assert promotion.promoted_rows == sum(f.height for f in direct.values())
    assert rerun.staging_ids(warehouse, RUN_ID) == []
    assert _staging_residue(warehouse, but=f"{LOOKALIKE}~staging-0123") == []
    assert warehouse.row_count("backtest_runs", scope={"run_id": f"{LOOKALIKE}~staging-0123"}) == 1


def test_promote_run_with_incomplete_staging_set_raises_and_changes_nothing(
    warehouse: Warehouse, frames, earlier: dict[str, pl.DataFrame]
) -> None:
    staging = _staged(warehouse, frames, len(LATER), complete=False)  # killed before the book's commit
    staged = _snapshot(warehouse, staging)

    with pytest.raises(WarehouseError, match="not complete"):
        rerun.promote_run(warehouse, staging, RUN_ID)

    _assert_same(_snapshot(warehouse, RUN_ID), earlier)
    _assert_same(_snapshot(warehouse, staging), staged)


def test_promote_run_with_staging_set_without_its_decisions_raises_and_changes_nothing(
    warehouse: Warehouse, frames, earlier: dict[str, pl.DataFrame]
) -> None:
    # the decisions' rows discarded under a run still computing its book, which then committed
    staging = rerun.staging_run_id(RUN_ID)
    book = {t: f for t, f in frames[(staging, len(LATER))].items() if t not in ("instrument_scores", "universes",
            "universe_members", "target_portfolios", "portfolio_risk_reports", "engine_decisions", "decision_outcomes")}
    _write(warehouse, book, staging, LATER)

    with pytest.raises(WarehouseError, match="0 sessions of decisions"):
        rerun.promote_run(warehouse, staging, RUN_ID)

    _assert_same(_snapshot(warehouse, RUN_ID), earlier)


def test_promote_run_with_failure_inside_its_transaction_keeps_the_earlier_result(
    warehouse: Warehouse, frames, earlier: dict[str, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: the last table's re-keying fails, after every other table was replaced
    staging = _staged(warehouse, frames, len(LATER))
    staged = _snapshot(warehouse, staging)
    execute = warehouse.execute

    def failing(sql: str, params=()):
        if sql.startswith(f"UPDATE {get_table(RUN_TABLES[-1]).qualified_name} "):
            raise RuntimeError("lock lost")
        return execute(sql, params)

    monkeypatch.setattr(warehouse, "execute", failing)

    # Act
    with pytest.raises(RuntimeError, match="lock lost"):
        rerun.promote_run(warehouse, staging, RUN_ID)

    # Assert: rolled back as a whole
    monkeypatch.undo()
    _assert_same(_snapshot(warehouse, RUN_ID), earlier)
    _assert_same(_snapshot(warehouse, staging), staged)


_KILLED_PROMOTION = """
import os, signal
from prometheus_lib.backtest import rerun
from prometheus_lib.storage.factory import open_warehouse

wh = open_warehouse(**{location!r})
execute = wh.execute

def execute_then_die(sql, params=()):
    execute(sql, params)
    if sql.startswith("UPDATE runtime.backtest_runs "):  # the last table, every other one re-keyed
        os.kill(os.getpid(), signal.SIGKILL)

wh.execute = execute_then_die
rerun.promote_run(wh, {staging!r}, {run_id!r})
print("promoted")
"""


def test_promote_run_with_process_killed_inside_its_transaction_keeps_the_earlier_result(
    warehouse: Warehouse, location: dict[str, str], frames, earlier: dict[str, pl.DataFrame]
) -> None:
    # Arrange
    staging = _staged(warehouse, frames, len(LATER))
    staged = _snapshot(warehouse, staging)
    warehouse.close()  # DuckDB: one process at a time
    script = textwrap.dedent(_KILLED_PROMOTION).format(location=location, staging=staging, run_id=RUN_ID)

    # Act
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)

    # Assert: the earlier result whole; the staging set left for the next run to discard
    assert killed.returncode == -9, killed.stderr
    with open_warehouse(**location) as wh:
        _assert_same(_snapshot(wh, RUN_ID), earlier)
        _assert_same(_snapshot(wh, staging), staged)
        assert rerun.staging_ids(wh, RUN_ID) == [staging]
        assert rerun.discard_staging(wh, RUN_ID) == sum(f.height for f in staged.values())
        assert rerun.staging_ids(wh, RUN_ID) == []
        _assert_same(_snapshot(wh, RUN_ID), earlier)


# ------------------------------------------------------------------ discarding
def test_discard_staging_with_sets_of_several_ids_removes_only_that_ids_staging_rows(
    warehouse: Warehouse, frames, earlier: dict[str, pl.DataFrame]
) -> None:
    # Arrange: two staging sets of RUN_A (one incomplete), OTHER's and the look-alike's rows
    first, second = _staged(warehouse, frames, len(EARLIER)), _staged(warehouse, frames, len(LATER), complete=False)
    keep = {r: _snapshot(warehouse, r) for r in (OTHER, f"{LOOKALIKE}~staging-0123")}

    # Act
    only_second = rerun.discard_staging(warehouse, RUN_ID, second)
    rest = rerun.discard_staging(warehouse, RUN_ID)

    # Assert
    assert only_second == sum(f.height for f in frames[(second, len(LATER))].values())
    assert rest == sum(f.height for f in frames[(first, len(EARLIER))].values()) + 1
    assert rerun.staging_ids(warehouse, RUN_ID) == []
    _assert_same(_snapshot(warehouse, RUN_ID), earlier)
    for run_id, rows in keep.items():
        _assert_same(_snapshot(warehouse, run_id), rows)


def test_discard_staging_with_id_of_another_run_raises(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="not a staging id"):
        rerun.discard_staging(warehouse, RUN_ID, f"{OTHER}~staging-0123")


# ------------------------------------------------------------------ run ids
@pytest.mark.parametrize("run_id", ["", "a/b", "../x", ".hidden", "x~y", 'say"hi', "back\\slash", "é", "a b",
                                    "x" * 129])
def test_check_run_id_with_unsafe_id_raises_naming_the_rule(run_id: str) -> None:
    with pytest.raises(ConfigError, match="--run-id"):
        rerun.check_run_id(run_id)


def test_staging_run_id_with_run_id_is_unique_and_names_its_run() -> None:
    a, b = rerun.staging_run_id("US_CORE-1a2b3c4d-20240201-20240315"), rerun.staging_run_id("US_CORE-1a2b3c4d-20240201-20240315")
    assert a != b
    assert rerun.staged_run_id(a) == "US_CORE-1a2b3c4d-20240201-20240315"
    assert rerun.staged_run_id("US_CORE-1a2b3c4d") is None


# ------------------------------------------------------------------ reports
def _report(reports: Path, version: str, text: str) -> None:
    folder = rerun.stage_report(reports, RUN_ID, version)
    (folder / "report.html").write_text(text)
    (folder / "report.png").write_text(text)


def _published(reports: Path) -> str:
    return (reports / RUN_ID / "report.html").read_text()


def test_publish_report_with_earlier_report_swaps_the_link_and_removes_the_rest(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / f"{RUN_ID}.html").write_text("legacy layout")
    _report(reports, "v1", "first")
    rerun.publish_report(reports, RUN_ID, "v1")
    _report(reports, "v2", "second")

    link = rerun.publish_report(reports, RUN_ID, "v2")

    assert link == reports / RUN_ID and link.is_symlink()
    assert _published(reports) == "second" and (reports / RUN_ID / "report.png").read_text() == "second"
    assert sorted(p.name for p in reports.iterdir()) == [f".{RUN_ID}~v2", RUN_ID]


def test_settle_reports_with_version_unpromoted_keeps_the_published_report(tmp_path: Path) -> None:
    # a run killed before its rows were promoted: the warehouse still holds v1
    reports = tmp_path / "reports"
    _report(reports, "v1", "first")
    rerun.publish_report(reports, RUN_ID, "v1")
    _report(reports, "v2", "second, half written")

    assert rerun.settle_reports(reports, RUN_ID, committed="v1") == "v1"

    assert _published(reports) == "first"
    assert sorted(p.name for p in reports.iterdir()) == [f".{RUN_ID}~v1", RUN_ID]


def test_settle_reports_with_version_promoted_but_unpublished_rolls_it_forward(tmp_path: Path) -> None:
    # a run killed between the promotion's commit and the rename: the warehouse holds v2
    reports = tmp_path / "reports"
    _report(reports, "v1", "first")
    rerun.publish_report(reports, RUN_ID, "v1")
    _report(reports, "v2", "second")

    assert rerun.settle_reports(reports, RUN_ID, committed="v2") == "v2"

    assert _published(reports) == "second"
    assert sorted(p.name for p in reports.iterdir()) == [f".{RUN_ID}~v2", RUN_ID]


def test_discard_report_with_unpublished_version_removes_it_and_never_the_published_one(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    _report(reports, "v1", "first")
    rerun.publish_report(reports, RUN_ID, "v1")
    _report(reports, "v2", "second")

    rerun.discard_report(reports, RUN_ID, "v2")
    rerun.discard_report(reports, RUN_ID, "v1")

    assert _published(reports) == "first"
    assert sorted(p.name for p in reports.iterdir()) == [f".{RUN_ID}~v1", RUN_ID]
    assert os.readlink(reports / RUN_ID) == f".{RUN_ID}~v1"


def test_publish_report_over_a_real_folder_moves_it_aside_and_keeps_it(tmp_path: Path) -> None:
    # Arrange: a folder someone made at reports/<run id>
    reports = tmp_path / "reports"
    own = reports / "RUN_X"
    own.mkdir(parents=True)
    (own / "notes.txt").write_text("mine")
    (rerun.stage_report(reports, "RUN_X", "v1") / "report.html").write_text("<html/>")

    # Act
    link = rerun.publish_report(reports, "RUN_X", "v1")

    # Assert: the run id names the new report; the folder survives beside it
    assert link.is_symlink() and (link / "report.html").read_text() == "<html/>"
    aside = [p for p in reports.iterdir() if p.name.startswith(".RUN_X~old-")]
    assert len(aside) == 1 and (aside[0] / "notes.txt").read_text() == "mine"
