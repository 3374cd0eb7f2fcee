"""Raw ingestion tables as session-partitioned assets: prices, news, filings, calls, macro
events and corporate actions, one set per market with data.

A market's assets share its exchange's session partitions and a single-run backfill policy,
so a backfill over any session range is one run and one transaction per table. Their rows
are scoped by ``market_id``: markets share the tables, and a market's write replaces only its
own rows.

Validate before replacing: each asset runs the blocking rules on its frame in memory
(``prometheus_lib.data.ingestion.gate_prices`` / ``gate_not_emptied``) before yielding it, so a
frame that fails them is never handed to the IO manager and the stored partition stays as it
was. A source yielding nothing for a range (or an instrument) that has rows fails the run
unless the run carries the tag ``prometheus/allow_empty`` = ``1``/``true`` (``--allow-empty``).
"""


from pathlib import Path

import dagster as dg
import polars as pl

from prometheus_assets.constants import HISTORICAL, INGESTION, META_SCOPE, META_TABLE, RUNTIME, WAREHOUSE_IO
from prometheus_assets.io_manager import META_EVICT_ON, META_PRUNE_PANELS
from prometheus_assets.markets import MarketScope
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.config.home import resolve_under_home
from prometheus_lib.data.ingestion import (
    gate_not_emptied,
    gate_prices,
    ingest_corporate_actions,
    ingest_events,
    ingest_prices,
    market_limits,
    stored_range,
)

# The run tag that lets a source yielding nothing replace stored rows ("1" or "true").
ALLOW_EMPTY_TAG = "prometheus/allow_empty"


def allow_empty(context: dg.OpExecutionContext | dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    """Whether this run allows an empty (or shrunken) source to replace stored rows."""
    if isinstance(context, dg.AssetCheckExecutionContext):
        context = context.op_execution_context
    value = context.run.tags.get(ALLOW_EMPTY_TAG, "")
    return str(value).strip().lower() in ("1", "true", "yes")

# Where a synthetic market writes its ground truth (regimes, factors, planted events), under
# PROMETHEUS_HOME; engines never read it, evaluations do.
TRUTH_DIR = "synthetic_truth"
CORPORATE_ACTIONS_TABLE = "corporate_actions"


def truth_root(market_id: str) -> Path:
    """The folder of ``market_id``'s synthetic ground truth: ``$PROMETHEUS_HOME/synthetic_truth/<market_id>``."""
    return resolve_under_home(Path(TRUTH_DIR) / market_id)


def build_ingestion_assets(partitions_def: dg.PartitionsDefinition, market: MarketScope | str) -> list[dg.AssetsDefinition]:
    """Return the ingestion assets of ``market`` over ``partitions_def`` (its sessions).

    A plain market id stands for the primary market (unprefixed keys).
    """
    if isinstance(market, str):
        market = MarketScope(market, is_primary=True)
    market_id = market.market_id
    scope = {"market_id": market_id}
    instruments = market.key(RUNTIME, "instruments")
    common = dict(partitions_def=partitions_def, backfill_policy=dg.BackfillPolicy.single_run(),
                  group_name=market.group(INGESTION))

    @dg.multi_asset(
        outs={
            "prices_daily": dg.AssetOut(
                key=market.key(HISTORICAL, "prices_daily"), io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "prices_daily", META_SCOPE: scope, META_PRUNE_PANELS: True},
                description=f"Daily OHLCV per {market_id} instrument and session, from the market's data provider.",
            ),
            "prices_daily_quarantine": dg.AssetOut(
                key=market.key(HISTORICAL, "prices_daily_quarantine"), io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "quarantine_rows", META_SCOPE: {**scope, "asset": "prices_daily"},
                          META_EVICT_ON: ["asset", "source_file", "line_number"]},
                description="Input price rows rejected by validation: file, line, field and reason.",
            ),
        },
        deps=[instruments],
        name=market.op("prices_daily"),
        **common,
    )
    def prices_daily(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource):
        """Daily OHLCV per instrument and session; rejected rows go to quarantine."""
        sessions = keys_to_sessions(context.partition_keys)
        provider = platform.market_data(market_id)
        batch = ingest_prices(provider, sessions)
        # Validate before replacing: the blocking rules run here, on the frame, before the
        # yields below hand it (and the quarantine) to the IO manager.
        with warehouse.open() as wh:
            stored = stored_range(wh, "prices_daily", market_id, sessions[0], sessions[-1])
        allowed = allow_empty(context)
        gate = gate_prices(batch, market_id=market_id, calendar=platform.calendar(market_id), sessions=sessions,
                           limits=market_limits(platform.config.market(market_id)), stored=stored,
                           allow_empty=allowed)
        meta = {
            "sessions": len(sessions),
            "first_session": str(sessions[0]),
            "last_session": str(sessions[-1]),
            "source": batch.source,
            "rows_loaded": batch.prices.height,
            "rows_quarantined": batch.quarantine.height,
            "rows_stored_before": stored.rows,
            "blocking_rules_passed": dg.MetadataValue.json(sorted(gate)),
        }
        if allowed and gate["not_emptied"].metadata.get("rows_new", 1) == 0:
            context.log.warning(f"{ALLOW_EMPTY_TAG}: the source is empty for {sessions[0]}..{sessions[-1]}; "
                                f"{stored.rows} stored rows are replaced by none")
        if batch.source_files:
            meta["source_files"] = list(batch.source_files)
        if batch.quarantine.height:
            reasons = batch.quarantine.group_by("reason").len().sort("len", descending=True)
            meta["quarantine_reasons"] = dg.MetadataValue.md(reasons.to_pandas().to_markdown(index=False))
            context.log.warning(f"{batch.quarantine.height} price rows quarantined: {dict(reasons.iter_rows())}")
        # The synthetic ground truth of the same sessions, for evaluations (engines never read it).
        # Written once the prices are generated and validated and before the warehouse write at
        # the yield below: a materialisation's metadata is fixed when its output is yielded, and
        # the paths belong in it. A failed write fails the run; the next run rewrites the files.
        record_truth = getattr(provider, "record_truth", None)
        if record_truth is not None:
            paths = [Path(p) for p in record_truth(sessions, truth_root(market_id))]
            meta["truth_root"] = dg.MetadataValue.path(str(truth_root(market_id)))
            meta["truth_files"] = dg.MetadataValue.json([str(p) for p in paths])
            context.log.info(f"synthetic truth of {market_id}: {len(paths)} files under {truth_root(market_id)}")
        yield dg.Output(batch.prices, output_name="prices_daily", metadata=meta)
        yield dg.Output(batch.quarantine, output_name="prices_daily_quarantine",
                        metadata={"rows_quarantined": batch.quarantine.height})

    @dg.multi_asset(
        outs={
            "news_articles": dg.AssetOut(
                key=market.key(HISTORICAL, "news_articles"), io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "news_articles", META_SCOPE: scope},
                description="News articles (headline and body) on the session they became known.",
            ),
            "news_links": dg.AssetOut(
                key=market.key(HISTORICAL, "news_links"), io_manager_key=WAREHOUSE_IO,
                metadata={META_TABLE: "news_links", META_SCOPE: scope},
                description="Links from news articles to the instruments they mention.",
            ),
        },
        deps=[instruments],
        name=market.op("news"),
        **common,
    )
    def news(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource):
        """News articles and their instrument links."""
        sessions = keys_to_sessions(context.partition_keys)
        provider = platform.event_data(market_id)
        frames = {table: ingest_events(provider, table, sessions) for table in ("news_articles", "news_links")}
        for table, frame in frames.items():
            _gate_events(context, warehouse, table, frame, sessions)
        for table, frame in frames.items():
            yield dg.Output(frame, output_name=table, metadata={"rows": frame.height, "sessions": len(sessions)})

    def _gate_events(context, warehouse: WarehouseResource, table: str, frame: pl.DataFrame, sessions) -> None:
        with warehouse.open() as wh:
            stored = stored_range(wh, table, market_id, sessions[0], sessions[-1], key=None)
        gate_not_emptied(table, frame, market_id=market_id, sessions=sessions, stored=stored,
                         allow_empty=allow_empty(context))

    def _event_asset(table: str, description: str) -> dg.AssetsDefinition:
        @dg.asset(
            key=market.key(HISTORICAL, table), io_manager_key=WAREHOUSE_IO, deps=[instruments],
            metadata={META_TABLE: table, META_SCOPE: scope}, description=description, kinds={"polars"},
            **common,
        )
        def _asset(context: dg.AssetExecutionContext, platform: PlatformResource,
                   warehouse: WarehouseResource) -> dg.Output[pl.DataFrame]:
            sessions = keys_to_sessions(context.partition_keys)
            frame = ingest_events(platform.event_data(market_id), table, sessions)
            _gate_events(context, warehouse, table, frame, sessions)
            return dg.Output(frame, metadata={"rows": frame.height, "sessions": len(sessions)})

        return _asset

    @dg.asset(
        key=market.key(HISTORICAL, "corporate_actions"), io_manager_key=WAREHOUSE_IO, deps=[instruments],
        metadata={META_TABLE: "corporate_actions", META_SCOPE: scope}, kinds={"polars"},
        description=f"Corporate actions of {market_id} on their ex-date session: splits, cash dividends, delistings.",
        **common,
    )
    def corporate_actions(context: dg.AssetExecutionContext, platform: PlatformResource,
                          warehouse: WarehouseResource) -> dg.Output[pl.DataFrame]:
        """Splits, cash dividends and delistings on their ex-date session, from the market's provider."""
        sessions = keys_to_sessions(context.partition_keys)
        frame = ingest_corporate_actions(platform.market_data(market_id), sessions)
        _gate_events(context, warehouse, CORPORATE_ACTIONS_TABLE, frame, sessions)
        by_type = dict(frame.group_by("action_type").len().iter_rows()) if frame.height else {}
        return dg.Output(frame, metadata={"rows": frame.height, "sessions": len(sessions),
                                          "by_action_type": dg.MetadataValue.json(by_type)})

    return [
        prices_daily,
        news,
        _event_asset("filings", "Regulatory filings (10-K, 10-Q, 8-K) on the session they became known."),
        _event_asset("earnings_calls", "Earnings calls with EPS actual/consensus and transcript."),
        _event_asset("macro_events", "Macro releases (CPI, payrolls, FOMC) with actual, consensus and previous."),
        corporate_actions,
    ]
