"""Shared fixtures: real DuckDB files and the real PostgreSQL server on this machine.

PostgreSQL is never skipped: if the server at ``PROMETHEUS_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) is unreachable, the Postgres tests fail with
a message saying how to start it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sharing import BACKENDS

from prometheus_lib.security import redact_dsn, redact_error
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("PROMETHEUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {redact_dsn(PG_ADMIN_URL)}: {redact_error(e, PG_ADMIN_URL)}\n"
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


class PgDatabases:
    """Creates throwaway PostgreSQL databases and drops them at the end of the session."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self, prefix: str = "prom_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with _admin() as con:
            con.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return _pg_url(name)

    def drop_all(self) -> None:
        if not self.created:
            return
        with _admin() as con:
            for name in self.created:
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup``, give each ``xdist_group``-marked test the ``@<group>`` suffix.

    xdist's scheduler reads a test's group from that node-id suffix. pytest-xdist 3.8 appends it
    by setting ``item._nodeid``, which pytest 9's structured node ids no longer read, so every
    group is silently ignored and a module's shared build runs again on each worker
    (pytest-dev/pytest-xdist#1386). This sets the suffix the way pytest 9 stores node ids, and
    does nothing where xdist's own suffix took effect or pytest has no ``_id``.
    """
    if not getattr(config.option, "loadgroup", False):  # set by xdist on its workers only
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid.rpartition("]")[2] and hasattr(item, "_id"):
            item._id = type(item._id).parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    """Factory of fresh PostgreSQL databases, dropped when the test session ends."""
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> str:
    """URL of a fresh, empty PostgreSQL database."""
    return pg_databases.create()


def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    monkeypatch.setenv("PROMETHEUS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("PROMETHEUS_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("DAGSTER_PG_HOST", raising=False)
    return home


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation for module- and session-scoped fixtures (set up before any test's)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _isolate(monkeypatch, tmp_path_factory.mktemp("prometheus_home"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own PROMETHEUS_HOME and DAGSTER_HOME; no test touches the user's."""
    return _isolate(monkeypatch, tmp_path_factory.mktemp("prometheus_home"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on DuckDB and once on PostgreSQL."""
    return request.param


@pytest.fixture
def warehouse_location(backend: str, tmp_path: Path, pg_databases: PgDatabases) -> dict[str, str]:
    """Keyword arguments of ``open_warehouse`` for a fresh warehouse of ``backend``."""
    if backend == "duckdb":
        return {"backend": "duckdb", "duckdb_path": str(tmp_path / "warehouse.duckdb")}
    return {"backend": "postgres", "postgres_url": pg_databases.create()}


@pytest.fixture
def warehouse(warehouse_location: dict[str, str]) -> Iterator[Warehouse]:
    """A fresh, migrated warehouse on each backend."""
    wh = open_warehouse(**warehouse_location)
    yield wh
    wh.close()
