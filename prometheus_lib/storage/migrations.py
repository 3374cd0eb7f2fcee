"""Versioned, idempotent schema migrations for both backends.

Each migration is a numbered function of the dialect that returns SQL statements written to be
safe to re-run (``IF NOT EXISTS``). Applied versions are recorded in
``runtime.schema_migrations``; on PostgreSQL a transaction-scoped advisory lock keeps two
processes from migrating at once. To change the schema, append a migration: never edit one
that has shipped. A fresh database replays every migration in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from prometheus_lib.storage.catalog import SCHEMAS, catalogue_tables, get_table

if TYPE_CHECKING:
    from prometheus_lib.storage.warehouse import Warehouse

_LOCK_KEY = 0x50524F4D  # "PROM"


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: a version, a description, and its statements per dialect."""

    version: int
    description: str
    statements: Callable[[str], list[str]]


def _v1_catalogue(dialect: str) -> list[str]:
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {s}" for s in SCHEMAS]
    stmts += [t.create_sql(dialect) for t in catalogue_tables()]
    return stmts


def _v2_partition_indexes(dialect: str) -> list[str]:
    # PostgreSQL needs an index to find a partition's rows for the delete of a partition
    # write; DuckDB's zone maps do that already and an ART index would only slow bulk loads.
    if dialect != "postgres":
        return []
    stmts = []
    for t in catalogue_tables():
        if t.partition_column is None:
            continue
        cols = ", ".join((t.partition_column, *t.scope_columns))
        stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{t.name}_partition ON {t.qualified_name} ({cols})")
    return stmts


def _recreate(names: tuple[str, ...], dialect: str) -> list[str]:
    """Drop and create ``names`` from the catalogue (with their PostgreSQL partition index)."""
    stmts = []
    for name in names:
        t = get_table(name)
        stmts.append(f"DROP TABLE IF EXISTS {t.qualified_name}")
        stmts.append(t.create_sql(dialect))
        if dialect == "postgres":
            cols = ", ".join((t.partition_column, *t.scope_columns))
            stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{t.name}_partition ON {t.qualified_name} ({cols})")
    return stmts


def _v3_run_scoped_runtime_tables(dialect: str) -> list[str]:
    # Strategy and execution tables gain run_id in their key and scope so that two backtests
    # (or a backtest and a live book) coexist and re-running one replaces only its rows. No
    # asset wrote these tables before this version, so they are recreated, not altered.
    from prometheus_lib.storage.catalog import RUN_SCOPED_TABLES

    return _recreate(RUN_SCOPED_TABLES, dialect)


def _v4_corporate_actions(dialect: str) -> list[str]:
    # Split-adjusted prices: a per-session share count on prices_daily (appended, nullable) and
    # the corporate_actions table (splits, cash dividends, delistings on their ex-date).
    # On a fresh database migration 1 already created both from the catalogue; both statements
    # are no-ops there.
    t = get_table("corporate_actions")
    stmts = [
        "ALTER TABLE historical.prices_daily ADD COLUMN IF NOT EXISTS shares_outstanding "
        + get_table("prices_daily").column("shares_outstanding").sql_type(dialect),
        t.create_sql(dialect),
    ]
    if dialect == "postgres":
        cols = ", ".join((t.partition_column, *t.scope_columns))
        stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{t.name}_partition ON {t.qualified_name} ({cols})")
    return stmts


def _v5_market_state_tables(dialect: str) -> list[str]:
    # The market-state engines' tables take their final shape (region, expected duration, model
    # id, class probabilities, fragility horizon). No asset wrote them before this version, so
    # they are recreated, not altered.
    from prometheus_lib.storage.catalog import MARKET_STATE_TABLES

    return _recreate(MARKET_STATE_TABLES, dialect)


def _v6_model_registry(dialect: str) -> list[str]:
    # The model registry (prometheus_lib.registry): each model's training cut and its artefact's
    # checksum. Appended, nullable columns; no-ops on a fresh database (migration 1 made them).
    t = get_table("models")
    return [f"ALTER TABLE {t.qualified_name} ADD COLUMN IF NOT EXISTS {col} {t.column(col).sql_type(dialect)}"
            for col in ("training_cut", "artifact_sha256")]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "schemas historical and runtime with every catalogue table", _v1_catalogue),
    Migration(2, "partition indexes for session-partitioned tables (PostgreSQL)", _v2_partition_indexes),
    Migration(3, "run_id in the key and scope of strategy and execution tables", _v3_run_scoped_runtime_tables),
    Migration(4, "corporate_actions table and prices_daily.shares_outstanding", _v4_corporate_actions),
    Migration(5, "market-state engine tables: regimes, stability_vectors, fragility_measures, soft_target_classes",
              _v5_market_state_tables),
    Migration(6, "models.training_cut and models.artifact_sha256 (the model registry)", _v6_model_registry),
)


def applied_versions(warehouse: Warehouse) -> set[int]:
    """Return the migration versions recorded as applied (empty on a fresh database)."""
    if not warehouse.table_exists("schema_migrations"):
        return set()
    return set(warehouse.query("SELECT version FROM runtime.schema_migrations")["version"].to_list())


def apply_migrations(warehouse: Warehouse, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply, in order and each in its own transaction, the migrations not yet applied.

    Returns
    -------
    list[int]
        The versions applied by this call (empty when the schema was up to date).
    """
    applied_now: list[int] = []
    table = get_table("schema_migrations")
    for m in sorted(migrations, key=lambda m: m.version):
        with warehouse.transaction():
            if warehouse.dialect == "postgres":
                warehouse.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
            if m.version in applied_versions(warehouse):
                continue
            for sql in m.statements(warehouse.dialect):
                warehouse.execute(sql)
            warehouse.execute(
                f"INSERT INTO {table.qualified_name} (version, description, applied_at) VALUES "
                f"({warehouse.placeholder}, {warehouse.placeholder}, {warehouse.placeholder})",
                [m.version, m.description, datetime.now(timezone.utc)],
            )
            applied_now.append(m.version)
    return applied_now
