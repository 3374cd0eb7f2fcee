"""Resources: each builds a library object; none holds logic of its own."""


import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import PlatformConfig, load_config
from prometheus_lib.config.home import resolve_under_home
from prometheus_lib.data.ingestion import event_provider, market_calendar, market_provider
from prometheus_lib.data.providers import EventDataProvider, MarketDataProvider
from prometheus_lib.errors import WarehouseLockedError
from prometheus_lib.storage import lock
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse: the embedded DuckDB file, or PostgreSQL when ``postgres_url`` is set.

    ``postgres_url`` comes from ``EnvVar("PROMETHEUS_WAREHOUSE_URL")``, never a literal.

    On DuckDB a run holds the warehouse lock (:mod:`prometheus_lib.storage.lock`) from its
    start to its end, so a run the UI launches (a process of its own) never interleaves its
    steps with a ``prometheus`` command's or another run's; under a command that holds the lock
    already (``prometheus ingest`` runs its job in its own process) this costs nothing. When
    another process holds it, the steps that open the warehouse fail with one line naming it.
    """

    backend: str = "duckdb"
    duckdb_path: str = "warehouse/prometheus.duckdb"
    postgres_url: str | None = None
    duckdb_threads: int | None = None
    duckdb_memory_limit: str | None = None
    _lock_wait: float | None = PrivateAttr(default=None)

    def _duckdb_file(self) -> Path | None:
        if self.backend != "duckdb" or not self.duckdb_path or self.duckdb_path == ":memory:":
            return None
        return resolve_under_home(self.duckdb_path)

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["WarehouseResource"]:
        """Hold the DuckDB warehouse lock while the run (or ``build_resources`` block) lasts."""
        path = self._duckdb_file()
        if path is None:
            yield self
            return
        run = context.dagster_run
        what = None
        if run is not None:  # an asset selection launched from the UI runs Dagster's implicit job
            job = "assets launched from the UI" if run.job_name.startswith("__ASSET_JOB") else f"job {run.job_name}"
            what = f"Dagster run {run.run_id[:8]} of {job}"
        log = context.log.warning if context.log is not None else None
        try:
            lock.acquire(path, command=what, on_wait=log)
        except WarehouseLockedError as e:
            # Waited PROMETHEUS_LOCK_WAIT already: each step that opens the warehouse fails at
            # once with this one line (a step error the UI shows), not a DuckDB IO Error.
            if context.log is not None:
                context.log.error(str(e))
            self._lock_wait = 0.0
            yield self
            return
        try:
            yield self
        finally:
            lock.release(path)

    @contextlib.contextmanager
    def open(self) -> Iterator[Warehouse]:
        """Yield an open, migrated warehouse connection and close it afterwards."""
        wh = open_warehouse(self.backend, duckdb_path=self.duckdb_path, postgres_url=self.postgres_url,
                           threads=self.duckdb_threads, memory_limit=self.duckdb_memory_limit,
                           lock_wait=self._lock_wait)
        try:
            yield wh
        finally:
            wh.close()


@functools.lru_cache(maxsize=8)
def _load(config_dir: str | None) -> PlatformConfig:
    return load_config(config_dir or None)


class PlatformResource(dg.ConfigurableResource):
    """The platform's configuration (``configs/``) and the calendars and providers it implies."""

    config_dir: str = ""

    @property
    def config(self) -> PlatformConfig:
        """The loaded, validated platform configuration."""
        return _load(self.config_dir or None)

    def calendar(self, market_id: str | None = None) -> TradingCalendar:
        """The trading calendar of ``market_id`` (default: the primary market)."""
        return market_calendar(self.config.market(market_id or self.config.primary_market))

    def market_data(self, market_id: str | None = None) -> MarketDataProvider:
        """The price provider of ``market_id`` (default: the primary market)."""
        return market_provider(self.config.market(market_id or self.config.primary_market))

    def event_data(self, market_id: str | None = None) -> EventDataProvider | None:
        """The text/event provider of ``market_id``, or None when its source has none."""
        return event_provider(self.config.market(market_id or self.config.primary_market))
