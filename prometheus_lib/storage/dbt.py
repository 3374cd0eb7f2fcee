"""Run the project's dbt against a warehouse: the same profiles for DuckDB and PostgreSQL.

Plain Python (a subprocess of the virtualenv's ``dbt``), used by the benchmarks and tests; the
Dagster layer runs the same project through dagster-dbt with the same environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_lib.config.home import REPO_ROOT, resolve_under_home
from prometheus_lib.errors import WarehouseError

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def dbt_executable() -> str:
    """The ``dbt`` of the running interpreter's environment (never PATH luck)."""
    return str(Path(sys.executable).parent / "dbt")


def dbt_target_env(backend: str, duckdb_path: str | None = None, postgres_url: str | None = None) -> dict[str, str]:
    """Environment variables that point the project's profile at a warehouse.

    Parameters
    ----------
    backend
        "duckdb" or "postgres".
    duckdb_path
        The DuckDB file (relative paths are under PROMETHEUS_HOME).
    postgres_url
        libpq URL of the PostgreSQL warehouse.
    """
    if backend == "duckdb":
        if not duckdb_path:
            raise WarehouseError("dbt on DuckDB needs the warehouse file path")
        return {"PROMETHEUS_DBT_TARGET": "duckdb", "PROMETHEUS_DUCKDB_PATH": str(resolve_under_home(duckdb_path))}
    if backend == "postgres":
        if not postgres_url:
            raise WarehouseError("dbt on PostgreSQL needs the warehouse URL")
        url = urlsplit(postgres_url)
        return {
            "PROMETHEUS_DBT_TARGET": "postgres",
            "PROMETHEUS_PG_HOST": url.hostname or "127.0.0.1",
            "PROMETHEUS_PG_PORT": str(url.port or 5432),
            "PROMETHEUS_PG_USER": url.username or "postgres",
            "PROMETHEUS_PG_PASSWORD": url.password or "",
            "PROMETHEUS_PG_DBNAME": url.path.lstrip("/"),
        }
    raise WarehouseError(f"backend must be 'duckdb' or 'postgres', was {backend!r}")


def panel_env(start: date, end: date, market_id: str) -> dict[str, str]:
    """Environment of a panel run over sessions ``start..end`` of ``market_id``.

    The window travels in environment variables rather than ``--vars`` so that dbt keeps its
    partial parse between runs of different windows (see macros/panels/panel_window.sql).
    """
    return {
        "PROMETHEUS_PANEL_MIN_DATE": start.isoformat(),
        "PROMETHEUS_PANEL_MAX_DATE": end.isoformat(),
        "PROMETHEUS_PANEL_MARKET_ID": market_id,
    }


@dataclass(frozen=True, slots=True)
class DbtRun:
    """The outcome of one dbt command."""

    returncode: int
    stdout: str
    stderr: str
    results: dict[str, dict[str, Any]]

    @property
    def failed(self) -> dict[str, str]:
        """Nodes whose status is not success/pass, by name."""
        return {k: r["status"] for k, r in self.results.items() if r["status"] not in ("success", "pass")}


def run_dbt(
    args: Sequence[str],
    target_env: Mapping[str, str],
    work_dir: str | Path,
    window_env: Mapping[str, str] | None = None,
) -> DbtRun:
    """Run ``dbt <args>`` on the project with its own profiles; results from run_results.json.

    ``target_env`` points the profile at a warehouse (:func:`dbt_target_env`), ``window_env``
    sets the panel window (:func:`panel_env`). ``work_dir`` holds the target and log folders,
    so concurrent runs never share a manifest while one caller's runs reuse its partial parse.
    """
    work = Path(work_dir)
    cmd = [
        dbt_executable(), *args,
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
    ]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **target_env, **(window_env or {})}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    results: dict[str, dict[str, Any]] = {}
    rr = work / "target" / "run_results.json"
    if rr.exists():
        for r in json.loads(rr.read_text())["results"]:
            results[r["unique_id"].split(".")[-1] if r["unique_id"].startswith("unit_test") else r["unique_id"].split(".")[2]] = r
    return DbtRun(proc.returncode, proc.stdout, proc.stderr, results)
