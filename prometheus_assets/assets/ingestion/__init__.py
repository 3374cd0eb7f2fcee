"""Raw ingestion tables as session-partitioned assets: prices, news, filings, calls, macro events.

Every asset here shares the primary market's session partitions and a single-run backfill
policy, so a backfill over any session range is one run and one transaction per table.
"""


import dagster as dg
import polars as pl

from prometheus_assets.constants import HISTORICAL, INGESTION, META_SCOPE, META_TABLE, RUNTIME, WAREHOUSE_IO
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import PlatformResource
from prometheus_lib.data.ingestion import ingest_events, ingest_prices

INSTRUMENTS = dg.AssetKey([RUNTIME, "instruments"])


def build_ingestion_assets(partitions_def: dg.PartitionsDefinition, market_id: str) -> list[dg.AssetsDefinition]:
    """Return the ingestion assets of ``market_id`` over ``partitions_def``."""
    scope = {"market_id": market_id}
    common = dict(partitions_def=partitions_def, backfill_policy=dg.BackfillPolicy.single_run(), group_name=INGESTION)

    @dg.multi_asset(
        outs={
            "prices_daily": dg.AssetOut(
                key=[HISTORICAL, "prices_daily"], io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "prices_daily", META_SCOPE: scope},
                description="Daily OHLCV per instrument and session, from the market's data provider.",
            ),
            "prices_daily_quarantine": dg.AssetOut(
                key=[HISTORICAL, "prices_daily_quarantine"], io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "quarantine_rows", META_SCOPE: {**scope, "asset": "prices_daily"}},
                description="Input price rows rejected by validation: file, line, field and reason.",
            ),
        },
        deps=[INSTRUMENTS],
        **common,
    )
    def prices_daily(context: dg.AssetExecutionContext, platform: PlatformResource):
        """Daily OHLCV per instrument and session; rejected rows go to quarantine."""
        sessions = keys_to_sessions(context.partition_keys)
        batch = ingest_prices(platform.market_data(market_id), sessions)
        meta = {
            "sessions": len(sessions),
            "first_session": str(sessions[0]),
            "last_session": str(sessions[-1]),
            "source": batch.source,
            "rows_loaded": batch.prices.height,
            "rows_quarantined": batch.quarantine.height,
        }
        if batch.source_files:
            meta["source_files"] = list(batch.source_files)
        if batch.quarantine.height:
            reasons = batch.quarantine.group_by("reason").len().sort("len", descending=True)
            meta["quarantine_reasons"] = dg.MetadataValue.md(reasons.to_pandas().to_markdown(index=False))
            context.log.warning(f"{batch.quarantine.height} price rows quarantined: {dict(reasons.iter_rows())}")
        yield dg.Output(batch.prices, output_name="prices_daily", metadata=meta)
        yield dg.Output(batch.quarantine, output_name="prices_daily_quarantine",
                        metadata={"rows_quarantined": batch.quarantine.height})

    @dg.multi_asset(
        outs={
            "news_articles": dg.AssetOut(
                key=[HISTORICAL, "news_articles"], io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "news_articles", META_SCOPE: scope},
                description="News articles (headline and body) on the session they became known.",
            ),
            "news_links": dg.AssetOut(
                key=[HISTORICAL, "news_links"], io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "news_links", META_SCOPE: scope},
                description="Links from news articles to the instruments they mention.",
            ),
        },
        deps=[INSTRUMENTS],
        **common,
    )
    def news(context: dg.AssetExecutionContext, platform: PlatformResource):
        """News articles and their instrument links."""
        sessions = keys_to_sessions(context.partition_keys)
        provider = platform.event_data(market_id)
        for table in ("news_articles", "news_links"):
            frame = ingest_events(provider, table, sessions)
            yield dg.Output(frame, output_name=table, metadata={"rows": frame.height, "sessions": len(sessions)})

    def _event_asset(table: str, description: str) -> dg.AssetsDefinition:
        @dg.asset(
            key=[HISTORICAL, table], io_manager_key=WAREHOUSE_IO, deps=[INSTRUMENTS],
            metadata={META_TABLE: table, META_SCOPE: scope}, description=description, kinds={"polars"},
            **common,
        )
        def _asset(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.Output[pl.DataFrame]:
            sessions = keys_to_sessions(context.partition_keys)
            frame = ingest_events(platform.event_data(market_id), table, sessions)
            return dg.Output(frame, metadata={"rows": frame.height, "sessions": len(sessions)})

        return _asset

    return [
        prices_daily,
        news,
        _event_asset("filings", "Regulatory filings (10-K, 10-Q, 8-K) on the session they became known."),
        _event_asset("earnings_calls", "Earnings calls with EPS actual/consensus and transcript."),
        _event_asset("macro_events", "Macro releases (CPI, payrolls, FOMC) with actual, consensus and previous."),
    ]
