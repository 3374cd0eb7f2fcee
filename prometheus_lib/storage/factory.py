"""Open the configured warehouse backend."""

from __future__ import annotations

import os
import threading

from prometheus_lib.config.home import resolve_under_home
from prometheus_lib.config.models import WarehouseConfig
from prometheus_lib.errors import ConfigError
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

    Raises
    ------
    ConfigError
        If the backend is unknown or its location is missing.
    """
    if backend == "duckdb":
        if not duckdb_path:
            raise ConfigError("warehouse backend 'duckdb' needs duckdb_path")
        path = duckdb_path if duckdb_path == ":memory:" else str(resolve_under_home(duckdb_path))
        wh: Warehouse = DuckDBWarehouse(path, threads=threads, memory_limit=memory_limit)
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
