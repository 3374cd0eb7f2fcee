"""The one ``Definitions`` object of the Prometheus code location.

Built from ``configs/`` (or ``$PROMETHEUS_CONFIG_DIR``): the primary market's trading sessions
are the partitions; the warehouse is PostgreSQL when ``PROMETHEUS_WAREHOUSE_URL`` (the variable
named in warehouse.yaml) is set, else the embedded DuckDB file under ``$PROMETHEUS_HOME``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from prometheus_assets.assets.ingestion import build_ingestion_assets
from prometheus_assets.assets.panels import build_panel_assets, build_text_staging_assets, dbt_resource
from prometheus_assets.assets.reference import build_reference_assets
from prometheus_assets.assets.strategy import build_strategy_assets, strategy_group
from prometheus_assets.checks import build_ingestion_checks
from prometheus_assets.checks.strategy import build_strategy_checks
from prometheus_assets.constants import (
    DBT,
    INGESTION,
    PANELS,
    PLATFORM,
    REFERENCE,
    TEXT_STAGING,
    WAREHOUSE,
    WAREHOUSE_IO,
)
from prometheus_assets.io_manager import WarehouseIOManager
from prometheus_assets.partitions import session_partitions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.config import PlatformConfig, load_config
from prometheus_lib.data.ingestion import market_calendar
from prometheus_lib.storage.factory import resolve_backend
from prometheus_lib.storage.warehouse import Warehouse

INGEST_JOB = "ingest"
MAIN_JOB = "main"
PANELS_JOB = "panels"
BACKTEST_JOB_PREFIX = "backtest_"


def backtest_job_name(strategy_id: str) -> str:
    """The job that backtests ``strategy_id`` over a session range (one run)."""
    return f"{BACKTEST_JOB_PREFIX}{strategy_id}"


def warehouse_from_config(config: PlatformConfig) -> WarehouseResource:
    """Choose the warehouse resource by deployment: PostgreSQL if its URL variable is set."""
    wc = config.warehouse
    if resolve_backend(wc) == "postgres":
        return WarehouseResource(backend="postgres", postgres_url=dg.EnvVar(wc.postgres.url_env))
    return WarehouseResource(backend="duckdb", duckdb_path=wc.duckdb.path)


def sessions_partitions_def(config: PlatformConfig) -> dg.TimeWindowPartitionsDefinition:
    """The primary market's sessions from its history start."""
    market = config.market(config.primary_market)
    return session_partitions(market_calendar(market), market.history_start)


def build_definitions(config_dir: str | None = None, warehouse: WarehouseResource | None = None) -> dg.Definitions:
    """Build the code location's definitions from a config folder and a warehouse resource."""
    config = load_config(config_dir)
    market_id = config.primary_market
    sessions = sessions_partitions_def(config)
    warehouse = warehouse or warehouse_from_config(config)
    assets = [
        *build_reference_assets(market_id),
        *build_ingestion_assets(sessions, market_id),
        build_panel_assets(sessions, market_id),
        build_text_staging_assets(),
    ]
    strategies = [s for s in config.strategies if s.market_id == market_id]
    for strategy in strategies:
        assets.extend(build_strategy_assets(sessions, strategy))
    jobs = [
        dg.define_asset_job(
            INGEST_JOB, selection=dg.AssetSelection.groups(REFERENCE, INGESTION), partitions_def=sessions,
            description="Reference tables and session-partitioned ingestion with their checks.",
        ),
        dg.define_asset_job(
            PANELS_JOB, selection=dg.AssetSelection.groups(PANELS), partitions_def=sessions,
            description="The dbt panels (returns, volatility, factors, exposures, correlations) for a session range.",
        ),
        dg.define_asset_job(
            MAIN_JOB, selection=dg.AssetSelection.groups(REFERENCE, INGESTION, PANELS, TEXT_STAGING),
            partitions_def=sessions,
            description="Ingestion, checks, panels and the text staging views for a session range, as one run.",
        ),
        *[
            dg.define_asset_job(
                backtest_job_name(s.strategy_id), selection=dg.AssetSelection.groups(strategy_group(s.strategy_id)),
                partitions_def=sessions, tags={"prometheus/strategy": s.strategy_id},
                description=f"Backtest of {s.strategy_id} over a session range: decisions then the book, one run.",
            )
            for s in strategies
        ],
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=[*build_ingestion_checks(sessions, market_id),
                      *[c for s in strategies for c in build_strategy_checks(sessions, s)]],
        jobs=jobs,
        resources={
            WAREHOUSE: warehouse,
            PLATFORM: PlatformResource(config_dir=config_dir or ""),
            WAREHOUSE_IO: WarehouseIOManager(warehouse=warehouse),
            DBT: dbt_resource(),
        },
        executor=dg.in_process_executor,
    )


@contextlib.contextmanager
def open_defs_warehouse(definitions: dg.Definitions) -> Iterator[Warehouse]:
    """Open the warehouse of ``definitions`` outside a run, resolving ``EnvVar`` settings."""
    with dg.build_resources({WAREHOUSE: definitions.resources[WAREHOUSE]}) as resources:
        with getattr(resources, WAREHOUSE).open() as wh:
            yield wh


defs = build_definitions()
