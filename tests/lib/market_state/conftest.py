"""Fixtures of the market-state library tests: a migrated, empty warehouse on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prometheus_lib.storage.catalog import catalogue_tables
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse


@pytest.fixture(scope="module")
def shared_pg_url(pg_databases) -> str:
    """One migrated PostgreSQL database per test module (and xdist worker)."""
    url = pg_databases.create()
    open_warehouse("postgres", postgres_url=url).close()
    return url


@pytest.fixture
def warehouse(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    """A migrated warehouse whose catalogue tables are empty, on each backend.

    DuckDB gets a fresh file; PostgreSQL reuses the module's database with every table emptied.
    """
    if backend == "duckdb":
        wh = open_warehouse("duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb"))
    else:
        wh = open_warehouse("postgres", postgres_url=request.getfixturevalue("shared_pg_url"))
        with wh.transaction():
            for t in catalogue_tables():
                if t.name != "schema_migrations":
                    wh.execute(f"DELETE FROM {t.qualified_name}")
    yield wh
    wh.close()
