"""The one ``Definitions`` object of the Prometheus code location.

Built from ``configs/`` (or ``$PROMETHEUS_CONFIG_DIR``). Every market with a data source has its
own assets, partitioned by its own exchange's trading sessions, and its own ``ingest``,
``panels`` and ``main`` jobs (see :mod:`prometheus_assets.markets` for the names: the primary
market's are unprefixed, ``main``; EU_EQ's are under ``EU_EQ/``, ``main_EU_EQ``). The warehouse
is PostgreSQL when ``PROMETHEUS_WAREHOUSE_URL`` (the variable named in warehouse.yaml) is set,
else the embedded DuckDB file under ``$PROMETHEUS_HOME``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from prometheus_assets.assets.ingestion import build_ingestion_assets
from prometheus_assets.assets.assessment import ASSESSMENT, build_assessment_assets
from prometheus_assets.assets.market_state import MARKET_STATE, build_market_state_assets
from prometheus_assets.assets.panels import build_panel_assets, build_text_staging_assets, dbt_resource
from prometheus_assets.assets.reference import build_config_assets, build_instrument_master, config_asset_keys
from prometheus_assets.assets.strategy import build_strategy_assets, strategy_group
from prometheus_assets.checks import build_ingestion_checks
from prometheus_assets.checks.assessment import build_assessment_checks
from prometheus_assets.checks.market_state import build_market_state_checks
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
from prometheus_assets.markets import MarketScope, data_markets
from prometheus_assets.partitions import session_partitions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.config import PlatformConfig, load_config
from prometheus_lib.data.ingestion import market_calendar
from prometheus_lib.storage.factory import resolve_backend
from prometheus_lib.storage.warehouse import Warehouse

INGEST_JOB = "ingest"
MAIN_JOB = "main"
PANELS_JOB = "panels"
MARKET_STATE_JOB = "market_state"
BACKTEST_JOB_PREFIX = "backtest_"


def backtest_job_name(strategy_id: str) -> str:
    """The job that backtests ``strategy_id`` over a session range (one run)."""
    return f"{BACKTEST_JOB_PREFIX}{strategy_id}"


def market_job_name(config: PlatformConfig, base: str, market_id: str | None = None) -> str:
    """The job ``base`` (``ingest``, ``panels``, ``main``) of ``market_id`` (default: the primary market)."""
    return MarketScope.of(config, market_id or config.primary_market).job(base)


def warehouse_from_config(config: PlatformConfig) -> WarehouseResource:
    """Choose the warehouse resource by deployment: PostgreSQL if its URL variable is set."""
    wc = config.warehouse
    if resolve_backend(wc) == "postgres":
        return WarehouseResource(backend="postgres", postgres_url=dg.EnvVar(wc.postgres.url_env))
    return WarehouseResource(backend="duckdb", duckdb_path=wc.duckdb.path,
                             duckdb_threads=wc.duckdb.threads, duckdb_memory_limit=wc.duckdb.memory_limit)


def sessions_partitions_def(config: PlatformConfig, market_id: str | None = None) -> dg.TimeWindowPartitionsDefinition:
    """The sessions of ``market_id``'s exchange (default: the primary market) from its history start."""
    market = config.market(market_id or config.primary_market)
    return session_partitions(market_calendar(market), market.history_start)


def _market_jobs(market: MarketScope, sessions: dg.PartitionsDefinition,
                 with_assessment: bool = True) -> list[dg.UnresolvedAssetJobDefinition]:
    """The ingest, panels, market-state, assessment (when the market has strategies) and main jobs
    of one market: each a single-run backfill over its sessions."""
    reference = dg.AssetSelection.assets(*config_asset_keys()) | dg.AssetSelection.groups(market.group(REFERENCE))
    ingestion = dg.AssetSelection.groups(market.group(INGESTION))
    panels = dg.AssetSelection.groups(market.group(PANELS))
    market_state = dg.AssetSelection.groups(market.group(MARKET_STATE))
    assessment = dg.AssetSelection.groups(market.group(ASSESSMENT)) if with_assessment else dg.AssetSelection.groups()
    # The text staging views read the text tables of every market, whole: the primary market's
    # main job builds and tests them once per run (see README, the panels).
    main = reference | ingestion | panels | market_state | assessment | (dg.AssetSelection.groups(TEXT_STAGING) if market.is_primary else dg.AssetSelection.groups())
    of = f" of {market.market_id}"
    tags = {"prometheus/market": market.market_id}
    jobs = [
        dg.define_asset_job(
            market.job(INGEST_JOB), selection=reference | ingestion, partitions_def=sessions, tags=tags,
            description=f"Reference tables and session-partitioned ingestion{of} with their checks.",
        ),
        dg.define_asset_job(
            market.job(PANELS_JOB), selection=panels, partitions_def=sessions, tags=tags,
            description=f"The dbt panels{of} (returns, volatility, factors, exposures, correlations) for a session range.",
        ),
        dg.define_asset_job(
            market.job(MARKET_STATE_JOB), selection=market_state, partitions_def=sessions, tags=tags,
            description=f"The market-state engines{of} (regimes, stability, fragility, soft targets) for a session range.",
        ),
        dg.define_asset_job(
            market.job(MAIN_JOB), selection=main, partitions_def=sessions, tags=tags,
            description=f"Ingestion, checks, panels, market-state engines and assessment{of}"
                        f"{' and the text staging views' if market.is_primary else ''} for a session range, as one run.",
        ),
    ]
    if with_assessment:
        jobs.append(dg.define_asset_job(
            market.job(ASSESSMENT), selection=assessment, partitions_def=sessions, tags=tags,
            description=f"The assessment of the strategies{of} (signals, instrument scores, walk-forward models) "
                        "for a session range."))
    return jobs


def build_definitions(config_dir: str | None = None, warehouse: WarehouseResource | None = None) -> dg.Definitions:
    """Build the code location's definitions from a config folder and a warehouse resource."""
    config = load_config(config_dir)
    warehouse = warehouse or warehouse_from_config(config)
    assets: list = [*build_config_assets(), build_text_staging_assets()]
    checks: list = []
    jobs: list = []
    for market_config in data_markets(config):
        market = MarketScope.of(config, market_config.market_id)
        sessions = sessions_partitions_def(config, market.market_id)
        assets += [
            build_instrument_master(market),
            *build_ingestion_assets(sessions, market),
            build_panel_assets(sessions, market),
            *build_market_state_assets(sessions, market, market_config),
        ]
        checks += build_ingestion_checks(sessions, market)
        checks += build_market_state_checks(sessions, market)
        jobs += _market_jobs(market, sessions, any(s.market_id == market.market_id for s in config.strategies))
        # A strategy trades the market it names, on that market's sessions, reading its panels.
        for strategy in (s for s in config.strategies if s.market_id == market.market_id):
            assets.append(build_assessment_assets(sessions, strategy, market, market_config))
            checks.extend(build_assessment_checks(sessions, strategy))
            assets.extend(build_strategy_assets(sessions, strategy, market))
            checks.extend(build_strategy_checks(sessions, strategy))
            jobs.append(dg.define_asset_job(
                backtest_job_name(strategy.strategy_id), selection=dg.AssetSelection.groups(strategy_group(strategy.strategy_id)),
                partitions_def=sessions, tags={"prometheus/strategy": strategy.strategy_id},
                description=f"Backtest of {strategy.strategy_id} over a session range: decisions then the book, one run.",
            ))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
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
