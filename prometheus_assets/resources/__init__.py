"""Resources: each builds a library object; none holds logic of its own."""


import contextlib
import functools
from collections.abc import Iterator

import dagster as dg

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import PlatformConfig, load_config
from prometheus_lib.data.ingestion import event_provider, market_calendar, market_provider
from prometheus_lib.data.providers import EventDataProvider, MarketDataProvider
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse: the embedded DuckDB file, or PostgreSQL when ``postgres_url`` is set.

    ``postgres_url`` comes from ``EnvVar("PROMETHEUS_WAREHOUSE_URL")``, never a literal.
    """

    backend: str = "duckdb"
    duckdb_path: str = "warehouse/prometheus.duckdb"
    postgres_url: str | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[Warehouse]:
        """Yield an open, migrated warehouse connection and close it afterwards."""
        wh = open_warehouse(self.backend, duckdb_path=self.duckdb_path, postgres_url=self.postgres_url)
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
