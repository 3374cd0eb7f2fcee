"""The warehouse IO manager: polars frames in and out of catalogue tables, a partition range at a time.

A session-partitioned output replaces exactly its partition range in one transaction (so a
single-run backfill over many sessions is one atomic write); an unpartitioned output replaces
the table (or its scope). The table is the asset key's last component unless the asset's
metadata names one; the scope (for example ``{"market_id": "US_EQ"}``) comes from metadata.
"""


from typing import Any

import dagster as dg
import polars as pl

from prometheus_assets.constants import META_SCOPE, META_TABLE
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.storage.catalog import get_table


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
        table, scope = _table_and_scope(dict(context.definition_metadata or {}), context.asset_key)
        with self.warehouse.open() as wh:
            if context.has_asset_partitions:
                sessions = keys_to_sessions(context.asset_partition_keys)
                result = wh.write_partition(table, obj, min(sessions), max(sessions), scope)
            else:
                result = wh.replace_table(table, obj, scope)
        context.add_output_metadata(
            {
                "table": get_table(table).qualified_name,
                "rows_written": result.rows_written,
                "rows_replaced": result.rows_deleted,
                "warehouse": wh.location,
                "dagster/row_count": result.rows_written,
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        upstream = context.upstream_output
        meta = dict(upstream.definition_metadata or {}) if upstream is not None else {}
        table, scope = _table_and_scope(meta, context.asset_key)
        with self.warehouse.open() as wh:
            if context.has_asset_partitions:
                sessions = keys_to_sessions(context.asset_partition_keys)
                return wh.read_table(table, min(sessions), max(sessions), scope)
            return wh.read_table(table, scope=scope)
