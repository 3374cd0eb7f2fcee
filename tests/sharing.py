"""One expensive build shared by the tests of a module: a module-scoped warehouse per backend.

A module whose tests all need the same dbt (or Dagster) build parametrizes its module-scoped
fixture with ``backend_params(group)``: the build then runs once per backend, and the
``xdist_group`` mark on each parameter keeps every test of that module and backend on one
xdist worker (``--dist loadgroup``, set in pyproject.toml), so no second worker builds it again.

Such a fixture hands the tests what they compare (frames read right after the build), never a
view of the warehouse that a later test may have changed: a test that changes the shared
warehouse (a rebuild after new prices, a bad bar) does so in a way no other test reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import PgDatabases

BACKENDS = ("duckdb", "postgres")


def backend_params(group: str) -> list[Any]:
    """Fixture params: each backend, its tests in xdist group ``<group>-<backend>``."""
    return [pytest.param(backend, marks=pytest.mark.xdist_group(f"{group}-{backend}")) for backend in BACKENDS]


def new_location(backend: str, folder: Path, pg_databases: PgDatabases, name: str = "warehouse") -> dict[str, str]:
    """``open_warehouse`` keyword arguments of a fresh, empty warehouse of ``backend``.

    DuckDB: ``folder/<name>.duckdb``; PostgreSQL: a new database, dropped at the session's end.
    """
    if backend == "duckdb":
        return {"backend": "duckdb", "duckdb_path": str(folder / f"{name}.duckdb")}
    return {"backend": "postgres", "postgres_url": pg_databases.create()}
