"""Open the configured warehouse backend."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_lib.config.home import resolve_under_home
from prometheus_lib.config.models import WarehouseConfig
from prometheus_lib.errors import ConfigError
from prometheus_lib.storage import lock
from prometheus_lib.storage.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

_migrated: set[str] = set()
_lock = threading.Lock()


def resolve_backend(config: WarehouseConfig, environ: dict[str, str] | None = None) -> str:
    """Return "duckdb" or "postgres": "auto" means PostgreSQL when its URL variable is set."""
    env = os.environ if environ is None else environ
    if config.backend != "auto":
        return config.backend
    return "postgres" if env.get(config.postgres.url_env) else "duckdb"


def open_warehouse(
    backend: str,
    duckdb_path: str | None = None,
    postgres_url: str | None = None,
    migrate: bool = True,
    threads: int | None = None,
    memory_limit: str | None = None,
    lock_wait: float | None = None,
) -> Warehouse:
    """Open a warehouse connection, applying pending migrations once per process and location.

    Parameters
    ----------
    backend
        "duckdb" or "postgres".
    duckdb_path
        DuckDB file, relative to PROMETHEUS_HOME unless absolute.
    postgres_url
        libpq URL of the PostgreSQL warehouse.
    lock_wait
        DuckDB: seconds to wait for another process holding the file (None:
        ``PROMETHEUS_LOCK_WAIT``, default 0); see :mod:`prometheus_lib.storage.lock`.

    Raises
    ------
    ConfigError
        If the backend is unknown or its location is missing.
    WarehouseLockedError
        DuckDB: another process holds the file (the message names it).
    """
    if backend == "duckdb":
        if not duckdb_path:
            raise ConfigError("warehouse backend 'duckdb' needs duckdb_path")
        path = duckdb_path if duckdb_path == ":memory:" else str(resolve_under_home(duckdb_path))
        wh: Warehouse = DuckDBWarehouse(path, threads=threads, memory_limit=memory_limit, lock_wait=lock_wait)
    elif backend == "postgres":
        if not postgres_url:
            raise ConfigError("warehouse backend 'postgres' needs a URL (set PROMETHEUS_WAREHOUSE_URL)")
        wh = PostgresWarehouse(postgres_url)
    else:
        raise ConfigError(f"warehouse backend must be 'duckdb' or 'postgres', was {backend!r}")
    if migrate:
        with _lock:
            if wh.location not in _migrated or wh.location == ":memory:":
                wh.migrate()
                _migrated.add(wh.location)
    return wh


def duckdb_file(config: WarehouseConfig, environ: dict[str, str] | None = None) -> Path | None:
    """The DuckDB file of the configured warehouse, or None when it is PostgreSQL."""
    if resolve_backend(config, environ) != "duckdb" or config.duckdb.path == ":memory:":
        return None
    return resolve_under_home(config.duckdb.path)


@contextlib.contextmanager
def command_lock(
    config: WarehouseConfig,
    command: str,
    wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Path | None]:
    """Hold the configured warehouse for a whole command: DuckDB's lock; nothing on PostgreSQL.

    On DuckDB one writing process at a time (:mod:`prometheus_lib.storage.lock`): everything the
    command opens inside (Dagster runs in this process, dbt, summaries) re-enters the lock, and
    another process is refused (or waits ``wait`` seconds) before anything starts. PostgreSQL
    runs of different run ids are safe side by side, so no lock there. Yields the DuckDB file
    or None.

    Raises
    ------
    WarehouseLockedError
        DuckDB: another process still holds the file after ``wait`` seconds (named).
    """
    path = duckdb_file(config)
    if path is None:
        yield None
        return
    with lock.warehouse_lock(path, wait=wait, command=command, on_wait=on_wait):
        yield path
