"""Warehouse storage: the table catalogue, migrations and the DuckDB/PostgreSQL backends."""

from prometheus_lib.storage.catalog import TABLES, Column, ColumnType, Table, get_table
from prometheus_lib.storage.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    WriteResult,
)

__all__ = [
    "TABLES",
    "Column",
    "ColumnType",
    "DuckDBWarehouse",
    "PostgresWarehouse",
    "Table",
    "Warehouse",
    "WriteResult",
    "get_table",
]
