"""The warehouse IO manager: polars frames in and out of catalogue tables, a partition range at a time.

A session-partitioned output replaces exactly its partition range in one transaction (so a
single-run backfill over many sessions is one atomic write); an unpartitioned output replaces
the table (or its scope). The table is the asset key's last component unless the asset's
metadata names one; the scope (for example ``{"market_id": "US_EQ"}``) comes from metadata.

Two more metadata keys shape a partition write, in the same transaction: ``META_EVICT_ON``
(columns identifying a row wherever it is dated: a quarantined line that moved to another
session leaves its old partition) and ``META_PRUNE_PANELS`` (a ``prices_daily`` write deletes
the market's panel rows of the range whose price inputs are gone).
"""


from typing import Any

import dagster as dg
import polars as pl

from prometheus_assets.constants import META_SCOPE, META_TABLE
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.data.ingestion import prune_orphaned_panels
from prometheus_lib.storage.catalog import get_table

META_EVICT_ON = "prometheus/evict_on"
META_PRUNE_PANELS = "prometheus/prune_orphaned_panels"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, (dg.JsonMetadataValue, dg.TextMetadataValue, dg.BoolMetadataValue)) else value


def _table_and_scope(metadata: dict[str, Any], asset_key: dg.AssetKey) -> tuple[str, dict[str, Any]]:
    table = metadata.get(META_TABLE, asset_key.path[-1])
    scope = metadata.get(META_SCOPE) or {}
    if isinstance(scope, dg.JsonMetadataValue):
        scope = scope.value
    if isinstance(table, dg.TextMetadataValue):
        table = table.value
    return str(table), dict(scope)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Store polars frames in the warehouse; load them back for a partition range."""

    warehouse: dg.ResourceDependency[WarehouseResource]

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"asset {context.asset_key.to_user_string()} must return a polars DataFrame, returned {type(obj).__name__}")
        definition = dict(context.definition_metadata or {})
        table, scope = _table_and_scope(definition, context.asset_key)
        evict_on = tuple(_plain(definition.get(META_EVICT_ON)) or ())
        pruned: dict[str, int] = {}
        with self.warehouse.open() as wh:
            if context.has_asset_partitions:
                sessions = keys_to_sessions(context.asset_partition_keys)
                start, end = min(sessions), max(sessions)
                then = None
                if _plain(definition.get(META_PRUNE_PANELS)):
                    def then(w, market_id=scope["market_id"], start=start, end=end):
                        pruned.update(prune_orphaned_panels(w, market_id, start, end))
                result = wh.write_partition(table, obj, start, end, scope, evict_on=evict_on, then=then)
            else:
                result = wh.replace_table(table, obj, scope)
        meta = {
            "table": get_table(table).qualified_name,
            "rows_written": result.rows_written,
            "rows_replaced": result.rows_deleted,
            "warehouse": wh.location,
            "dagster/row_count": result.rows_written,
        }
        if pruned:
            meta["orphaned_panel_rows_deleted"] = dg.MetadataValue.json(pruned)
            context.log.warning(f"deleted panel rows whose prices are gone: {pruned}")
        context.add_output_metadata(meta)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        upstream = context.upstream_output
        meta = dict(upstream.definition_metadata or {}) if upstream is not None else {}
        table, scope = _table_and_scope(meta, context.asset_key)
        with self.warehouse.open() as wh:
            if context.has_asset_partitions:
                sessions = keys_to_sessions(context.asset_partition_keys)
                return wh.read_table(table, min(sessions), max(sessions), scope)
            return wh.read_table(table, scope=scope)
