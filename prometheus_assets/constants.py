"""Names shared across the Dagster layer: groups, key prefixes, resource keys."""

from __future__ import annotations

# Asset groups (jobs are selections by group).
REFERENCE = "reference"
INGESTION = "ingestion"

# Asset key prefixes: the warehouse schema a table lives in.
HISTORICAL = "historical"
RUNTIME = "runtime"

# Resource keys.
WAREHOUSE = "warehouse"
PLATFORM = "platform"
WAREHOUSE_IO = "warehouse_io_manager"

# Asset metadata keys read by the warehouse IO manager.
META_TABLE = "prometheus/table"
META_SCOPE = "prometheus/scope"
PANELS = "panels"
TEXT_STAGING = "text_staging"
DBT = "dbt"

# A strategy's assets live in group "strategy_<id>" under runtime/<id>/.
STRATEGY_GROUP_PREFIX = "strategy_"
