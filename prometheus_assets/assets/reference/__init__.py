"""Reference tables as assets: markets, strategies, portfolios (from configs, shared by every
market) and each market's issuers and instruments (from its provider).

Issuers and instruments replace the market's rows wholesale, so they are validated first
(``prometheus_lib.data.ingestion.gate_reference``): an empty reference over stored instruments,
or one that drops an instrument that still has prices, fails the run (the stored rows stay)
unless the run carries the tag ``prometheus/allow_empty``.
"""


import dagster as dg
import polars as pl

from prometheus_assets.assets.ingestion import allow_empty
from prometheus_assets.constants import META_SCOPE, META_TABLE, REFERENCE, RUNTIME, WAREHOUSE_IO
from prometheus_assets.markets import MarketScope
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.data.ingestion import gate_reference, reference_frames, stored_range

CONFIG_TABLES = ("markets", "strategies", "portfolios")


def _config_asset(name: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=[RUNTIME, name],
        group_name=REFERENCE,
        io_manager_key=WAREHOUSE_IO,
        description=description,
        kinds={"polars"},
        metadata={META_TABLE: name},
    )
    def _asset(platform: PlatformResource) -> dg.Output[pl.DataFrame]:
        frame = reference_frames(platform.config)[name]
        return dg.Output(frame, metadata={"rows": frame.height, "config_hash": platform.config.config_hash()})

    return _asset


def build_config_assets() -> list[dg.AssetsDefinition]:
    """Return the config-driven reference assets (runtime/markets, strategies, portfolios), one set for all markets."""
    return [
        _config_asset("markets", "Markets from configs/markets.yaml: calendar, time zone, daily-cycle windows."),
        _config_asset("strategies", "Strategies from configs/strategies.yaml, with their config hash."),
        _config_asset("portfolios", "Portfolios (books) of the configured strategies."),
    ]


def config_asset_keys() -> list[dg.AssetKey]:
    """Keys of the config-driven reference assets."""
    return [dg.AssetKey([RUNTIME, t]) for t in CONFIG_TABLES]


def build_instrument_master(market: MarketScope) -> dg.AssetsDefinition:
    """Return ``market``'s issuers and instruments asset (its provider's reference data)."""
    scope = {META_SCOPE: {"market_id": market.market_id}}
    m = market.market_id

    @dg.multi_asset(
        outs={
            "issuers": dg.AssetOut(key=market.key(RUNTIME, "issuers"), io_manager_key=WAREHOUSE_IO,
                                   metadata={**scope, META_TABLE: "issuers"},
                                   description=f"Issuers of the {m} instruments, from its data provider."),
            "instruments": dg.AssetOut(key=market.key(RUNTIME, "instruments"), io_manager_key=WAREHOUSE_IO,
                                       metadata={**scope, META_TABLE: "instruments"},
                                       description=f"Instrument master of {m}, from its data provider."),
        },
        name=market.op("instrument_master"),
        group_name=market.group(REFERENCE),
        deps=[dg.AssetKey([RUNTIME, "markets"])],
    )
    def instrument_master(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource):
        """Issuers and instruments of the market, from its data provider."""
        ref = platform.market_data(m).reference()
        with warehouse.open() as wh:
            stored = stored_range(wh, "instruments", m, key=None)
            priced = stored_range(wh, "prices_daily", m).keys
        gate_reference(ref, market_id=m, stored=stored, priced=priced, allow_empty=allow_empty(context))
        yield dg.Output(ref.issuers, output_name="issuers", metadata={"rows": ref.issuers.height})
        yield dg.Output(ref.instruments, output_name="instruments", metadata={"rows": ref.instruments.height})

    return instrument_master


def build_reference_assets(market_id: str) -> list[dg.AssetsDefinition]:
    """Return the config assets and the primary market ``market_id``'s instrument master."""
    return [*build_config_assets(), build_instrument_master(MarketScope(market_id, is_primary=True))]
