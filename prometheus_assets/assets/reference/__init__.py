"""Reference tables as assets: markets, strategies, portfolios (from configs), issuers and instruments."""


import dagster as dg
import polars as pl

from prometheus_assets.constants import META_SCOPE, META_TABLE, REFERENCE, RUNTIME, WAREHOUSE_IO
from prometheus_assets.resources import PlatformResource
from prometheus_lib.data.ingestion import reference_frames


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


def build_reference_assets(market_id: str) -> list[dg.AssetsDefinition]:
    """Return the reference assets; issuers and instruments are those of ``market_id``'s provider."""
    scope = {META_SCOPE: {"market_id": market_id}}

    @dg.multi_asset(
        outs={
            "issuers": dg.AssetOut(key=[RUNTIME, "issuers"], io_manager_key=WAREHOUSE_IO, metadata={**scope, META_TABLE: "issuers"},
                                   description="Issuers of the primary market's instruments, from its data provider."),
            "instruments": dg.AssetOut(key=[RUNTIME, "instruments"], io_manager_key=WAREHOUSE_IO, metadata={**scope, META_TABLE: "instruments"},
                                       description="Instrument master of the primary market, from its data provider."),
        },
        group_name=REFERENCE,
        deps=[dg.AssetKey([RUNTIME, "markets"])],
    )
    def instrument_master(platform: PlatformResource):
        """Issuers and instruments of the primary market, from its data provider."""
        ref = platform.market_data(market_id).reference()
        yield dg.Output(ref.issuers, output_name="issuers", metadata={"rows": ref.issuers.height})
        yield dg.Output(ref.instruments, output_name="instruments", metadata={"rows": ref.instruments.height})

    return [
        _config_asset("markets", "Markets from configs/markets.yaml: calendar, time zone, daily-cycle windows."),
        _config_asset("strategies", "Strategies from configs/strategies.yaml, with their config hash."),
        _config_asset("portfolios", "Portfolios (books) of the configured strategies."),
        instrument_master,
    ]
