"""The table catalogue: every table of the historical and runtime schemas, typed, with keys.

The catalogue is the single source of truth for DDL (both backends), for the polars schema of
frames written to a table, and for which column a table is partitioned on. Tables follow the
design card's list (``shared/spec/00_README.md``); a few platform tables (schema migrations,
ingestion quarantine) are added and marked ``system=True``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import polars as pl

from prometheus_lib.errors import UnknownTableError

HISTORICAL = "historical"
RUNTIME = "runtime"
SCHEMAS = (HISTORICAL, RUNTIME)
TRUTH_SCHEMA = "synthetic_truth"  # never a warehouse schema: the generator's truth lives in a Parquet sidecar

MODES = ("BACKTEST", "PAPER", "LIVE")


class ColumnType(enum.Enum):
    """Logical column types, mapped to DuckDB, PostgreSQL and polars types."""

    TEXT = "text"
    DATE = "date"
    TIMESTAMP = "timestamp"  # always UTC, timezone-aware
    DOUBLE = "double"
    BIGINT = "bigint"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    JSON = "json"  # JSON document, carried as text in frames
    FLOAT_ARRAY = "float_array"  # embeddings


_DUCKDB_TYPES = {
    ColumnType.TEXT: "VARCHAR",
    ColumnType.DATE: "DATE",
    ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    ColumnType.DOUBLE: "DOUBLE",
    ColumnType.BIGINT: "BIGINT",
    ColumnType.INTEGER: "INTEGER",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.JSON: "JSON",
    ColumnType.FLOAT_ARRAY: "DOUBLE[]",
}

_POSTGRES_TYPES = {
    ColumnType.TEXT: "TEXT",
    ColumnType.DATE: "DATE",
    ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    ColumnType.DOUBLE: "DOUBLE PRECISION",
    ColumnType.BIGINT: "BIGINT",
    ColumnType.INTEGER: "INTEGER",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.JSON: "JSONB",
    ColumnType.FLOAT_ARRAY: "DOUBLE PRECISION[]",
}

_POLARS_TYPES: dict[ColumnType, pl.DataType] = {
    ColumnType.TEXT: pl.String(),
    ColumnType.DATE: pl.Date(),
    ColumnType.TIMESTAMP: pl.Datetime("us", "UTC"),
    ColumnType.DOUBLE: pl.Float64(),
    ColumnType.BIGINT: pl.Int64(),
    ColumnType.INTEGER: pl.Int32(),
    ColumnType.BOOLEAN: pl.Boolean(),
    ColumnType.JSON: pl.String(),
    ColumnType.FLOAT_ARRAY: pl.List(pl.Float64()),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One typed column of a table."""

    name: str
    type: ColumnType
    nullable: bool = True
    description: str = ""

    def sql_type(self, dialect: str) -> str:
        """Return the column's SQL type for ``dialect`` ("duckdb" or "postgres")."""
        return (_DUCKDB_TYPES if dialect == "duckdb" else _POSTGRES_TYPES)[self.type]

    @property
    def polars_type(self) -> pl.DataType:
        """The polars dtype frames carry for this column."""
        return _POLARS_TYPES[self.type]


@dataclass(frozen=True, slots=True)
class Table:
    """A catalogue table: schema, name, columns, primary key and partitioning.

    ``partition_column`` is the session-date column a partition write replaces by;
    ``scope_columns`` further narrow a partition (for example ``market_id`` so that writing
    US_EQ's session T leaves other markets' rows alone).
    """

    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    description: str
    partition_column: str | None = None
    scope_columns: tuple[str, ...] = ()
    system: bool = False
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(c.name for c in self.columns)
        object.__setattr__(self, "column_names", names)
        missing = [k for k in (*self.primary_key, *self.scope_columns) if k not in names]
        if self.partition_column is not None and self.partition_column not in names:
            missing.append(self.partition_column)
        if missing:
            raise ValueError(f"table {self.qualified_name}: key columns {missing} are not columns")
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.qualified_name}: duplicate column names")

    @property
    def qualified_name(self) -> str:
        """``schema.name``."""
        return f"{self.schema}.{self.name}"

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        """Ordered polars schema of frames for this table."""
        return {c.name: c.polars_type for c in self.columns}

    def column(self, name: str) -> Column:
        """Return the column called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.qualified_name} has no column {name!r}; columns: {self.column_names}")

    def create_sql(self, dialect: str) -> str:
        """Return an idempotent ``CREATE TABLE IF NOT EXISTS`` statement for ``dialect``."""
        cols = []
        for c in self.columns:
            null = "" if c.nullable and c.name not in self.primary_key else " NOT NULL"
            cols.append(f"    {c.name} {c.sql_type(dialect)}{null}")
        cols.append(f"    PRIMARY KEY ({', '.join(self.primary_key)})")
        body = ",\n".join(cols)
        return f"CREATE TABLE IF NOT EXISTS {self.qualified_name} (\n{body}\n)"


def _c(name: str, type_: ColumnType, nullable: bool = True, description: str = "") -> Column:
    return Column(name, type_, nullable, description)


T, D, TS, F, I8, I4, B, J, V = (
    ColumnType.TEXT,
    ColumnType.DATE,
    ColumnType.TIMESTAMP,
    ColumnType.DOUBLE,
    ColumnType.BIGINT,
    ColumnType.INTEGER,
    ColumnType.BOOLEAN,
    ColumnType.JSON,
    ColumnType.FLOAT_ARRAY,
)


def _table(schema, name, description, columns, key, partition=None, scope=(), system=False) -> Table:
    return Table(
        schema=schema,
        name=name,
        columns=tuple(_c(*c) if isinstance(c, tuple) else c for c in columns),
        primary_key=tuple(key),
        description=description,
        partition_column=partition,
        scope_columns=tuple(scope),
        system=system,
    )


# ---------------------------------------------------------------- historical
_HISTORICAL = [
    _table(HISTORICAL, "prices_daily", "One row per instrument per session: OHLCV in the instrument's currency.", [
        ("instrument_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("open", F), ("high", F), ("low", F), ("close", F, False), ("adjusted_close", F),
        ("volume", F), ("currency", T), ("source", T, False), ("ingested_at", TS, False),
        _c("shares_outstanding", F, True, "Shares outstanding at the session (after that session's splits); "
           "null when the source does not give it (panels then use runtime.instruments.shares_outstanding)."),
    ], ["instrument_id", "session_date"], "session_date", ["market_id"]),
    _table(HISTORICAL, "corporate_actions", "One row per corporate action on its ex-date session: splits, cash dividends, delistings.", [
        ("action_id", T, False), ("instrument_id", T, False), ("session_date", D, False),
        ("market_id", T, False),
        _c("action_type", T, False, "SPLIT, DIVIDEND or DELISTING."),
        _c("ratio", F, True, "SPLIT: new shares per old share (2.0 for 2-for-1, 0.1 for a 1-for-10 reverse split); "
           "null otherwise."),
        _c("amount", F, True, "DIVIDEND: cash per share held at the previous close; DELISTING: cash paid per share "
           "(the final price); null for SPLIT."),
        ("currency", T), ("source", T, False), ("ingested_at", TS, False),
    ], ["action_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "returns_daily", "One row per instrument per session: close-to-close, overnight and intraday returns.", [
        ("instrument_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("return_simple", F), ("return_log", F), ("return_overnight", F), ("return_intraday", F),
    ], ["instrument_id", "session_date"], "session_date", ["market_id"]),
    _table(HISTORICAL, "volatility_daily", "One row per instrument per session: realised, EWMA, downside and range volatility (annualised).", [
        ("instrument_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("vol_21d", F), ("vol_63d", F), ("vol_ewma", F), ("downside_vol_63d", F),
        ("parkinson_vol_21d", F), ("garman_klass_vol_21d", F),
    ], ["instrument_id", "session_date"], "session_date", ["market_id"]),
    _table(HISTORICAL, "factors_daily", "One row per factor per market per session: the factor's daily return.", [
        ("factor_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("factor_return", F), ("n_long", I4), ("n_short", I4),
    ], ["factor_id", "session_date", "market_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "instrument_factors_daily", "One row per instrument per factor per session: rolling beta and z-scored characteristic.", [
        ("instrument_id", T, False), ("session_date", D, False), ("factor_id", T, False),
        ("market_id", T, False), ("beta", F), ("exposure_z", F), ("r_squared", F), ("residual_vol", F),
    ], ["instrument_id", "session_date", "factor_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "correlation_panels", "One row per panel entry per session: rolling correlations (market-wide, per sector, bounded pairwise).", [
        ("session_date", D, False), ("market_id", T, False), ("panel_id", T, False),
        ("entity_a", T, False), ("entity_b", T, False), ("window_sessions", I4, False),
        ("correlation", F), ("n_obs", I4),
    ], ["session_date", "market_id", "panel_id", "entity_a", "entity_b"], "session_date", ["market_id"]),
    _table(HISTORICAL, "news_articles", "One row per news article, on the session it became known.", [
        ("article_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("published_at", TS, False), ("source", T, False), ("headline", T, False), ("body", T),
        ("language", T), ("ingested_at", TS, False),
    ], ["article_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "news_links", "One row per (article, instrument) link.", [
        ("article_id", T, False), ("instrument_id", T, False), ("session_date", D, False),
        ("market_id", T, False), ("relevance", F),
    ], ["article_id", "instrument_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "filings", "One row per regulatory filing, on the session it became known.", [
        ("filing_id", T, False), ("issuer_id", T, False), ("instrument_id", T),
        ("session_date", D, False), ("market_id", T, False), ("filed_at", TS, False),
        ("filing_type", T, False), ("title", T), ("body", T), ("ingested_at", TS, False),
    ], ["filing_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "earnings_calls", "One row per earnings call, on the session it became known.", [
        ("call_id", T, False), ("issuer_id", T, False), ("instrument_id", T),
        ("session_date", D, False), ("market_id", T, False), ("call_at", TS, False),
        ("fiscal_period", T, False), ("eps_actual", F), ("eps_consensus", F), ("transcript", T),
        ("ingested_at", TS, False),
    ], ["call_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "macro_events", "One row per macro release, on the session it became known.", [
        ("event_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("event_at", TS, False), ("region", T, False), ("event_type", T, False), ("name", T, False),
        ("actual", F), ("consensus", F), ("previous", F), ("ingested_at", TS, False),
    ], ["event_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "text_embeddings", "One row per text per model: an embedding of a news article, filing or call.", [
        ("text_id", T, False), ("source_table", T, False), ("model_id", T, False),
        ("session_date", D, False), ("market_id", T, False), ("embedding", V, False),
    ], ["text_id", "source_table", "model_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "numeric_window_embeddings", "One row per instrument per session per model: an embedding of a trailing numeric window.", [
        ("instrument_id", T, False), ("session_date", D, False), ("model_id", T, False),
        ("market_id", T, False), ("window_sessions", I4, False), ("embedding", V, False),
    ], ["instrument_id", "session_date", "model_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "joint_embeddings", "One row per entity per session per model: a joint text+numeric embedding.", [
        ("entity_type", T, False), ("entity_id", T, False), ("session_date", D, False),
        ("model_id", T, False), ("market_id", T, False), ("embedding", V, False),
    ], ["entity_type", "entity_id", "session_date", "model_id"], "session_date", ["market_id"]),
    _table(HISTORICAL, "quarantine_rows", "One row per rejected input row: the file, line, field and reason it was rejected.", [
        ("asset", T, False), ("source_file", T, False), ("line_number", I8, False),
        ("reason", T, False), ("field", T), ("value", T), ("session_date", D),
        ("market_id", T, False), ("raw_row", J), ("quarantined_at", TS, False),
    ], ["asset", "source_file", "line_number", "reason"], "session_date", ["market_id", "asset"], system=True),
]

# ---------------------------------------------------------------- runtime
_RUNTIME = [
    _table(RUNTIME, "markets", "One row per market: calendar, time zone, currency and daily-cycle windows.", [
        ("market_id", T, False), ("name", T, False), ("calendar_code", T, False), ("timezone", T, False),
        ("currency", T, False), ("asset_class", T, False), ("region", T, False),
        ("pre_open_minutes", I4, False), ("post_close_minutes", I4, False), ("is_primary", B, False),
    ], ["market_id"]),
    _table(RUNTIME, "issuers", "One row per issuer (company, sovereign, ...).", [
        ("issuer_id", T, False), ("name", T, False), ("sector", T), ("industry", T),
        ("country", T), ("market_id", T, False),
    ], ["issuer_id"], scope=["market_id"]),
    _table(RUNTIME, "instruments", "One row per tradable instrument.", [
        ("instrument_id", T, False), ("issuer_id", T), ("market_id", T, False), ("ticker", T, False),
        ("name", T), ("asset_class", T, False), ("currency", T, False), ("sector", T), ("industry", T),
        ("listing_date", D), ("delisting_date", D), ("shares_outstanding", F), ("lot_size", I4, False),
        ("status", T, False),
    ], ["instrument_id"], scope=["market_id"]),
    _table(RUNTIME, "portfolios", "One row per portfolio (a strategy's book in a mode).", [
        ("portfolio_id", T, False), ("strategy_id", T, False), ("name", T, False),
        ("base_currency", T, False), ("initial_capital", F, False), ("mode", T, False),
    ], ["portfolio_id"]),
    _table(RUNTIME, "strategies", "One row per strategy: its market, description and config hash.", [
        ("strategy_id", T, False), ("name", T, False), ("market_id", T, False), ("description", T),
        ("config_json", J, False), ("config_hash", T, False),
    ], ["strategy_id"]),
    _table(RUNTIME, "profiles", "One row per issuer per as-of session: a structured profile snapshot.", [
        ("issuer_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("profile_json", J, False), ("risk_flags", J),
    ], ["issuer_id", "session_date"], "session_date", ["market_id"]),
    _table(RUNTIME, "engine_decisions", "One row per engine decision: engine, config hash, session and what was decided.", [
        ("decision_id", T, False), ("engine_name", T, False), ("session_date", D, False),
        ("strategy_id", T), ("market_id", T, False), ("config_hash", T, False), ("mode", T, False),
        ("run_id", T, False), ("created_at", TS, False), ("inputs_json", J), ("decision_json", J, False),
    ], ["decision_id"], "session_date", ["run_id", "mode"]),
    _table(RUNTIME, "executed_actions", "One row per executed action (unified execution log).", [
        ("action_id", T, False), ("decision_id", T), ("session_date", D, False), ("portfolio_id", T, False),
        ("instrument_id", T), ("action_type", T, False), ("quantity", F), ("price", F), ("notional", F),
        ("mode", T, False), ("run_id", T, False), ("created_at", TS, False), ("metadata", J),
    ], ["action_id"], "session_date", ["run_id", "portfolio_id", "mode"]),
    _table(RUNTIME, "decision_outcomes", "One row per decision per horizon: the realised result once the horizon has passed.", [
        ("decision_id", T, False), ("horizon_sessions", I4, False), ("outcome_date", D, False),
        ("engine_name", T, False), ("realized_return", F), ("realized_pnl", F), ("metrics_json", J),
        ("run_id", T, False), ("decision_date", D),
    ], ["decision_id", "horizon_sessions"], "outcome_date", ["run_id"]),
    _table(RUNTIME, "engine_configs", "One row per engine per config hash: the frozen config an engine ran with.", [
        ("engine_name", T, False), ("config_hash", T, False), ("config_json", J, False),
        ("created_at", TS, False), ("description", T),
    ], ["engine_name", "config_hash"]),
    _table(RUNTIME, "models", "One row per trained model version.", [
        ("model_id", T, False), ("model_type", T, False), ("engine_name", T, False), ("version", T, False),
        ("trained_at", TS, False), ("train_start", D), ("train_end", D), ("artifact_uri", T),
        ("config_hash", T), ("metrics_json", J),
        _c("training_cut", D, True, "The session from which the model may be used: every label it trained on ended before it."),
        _c("artifact_sha256", T, True, "SHA-256 of the artefact at artifact_uri; loading verifies it."),
    ], ["model_id"]),
    _table(RUNTIME, "orders", "One row per order submitted, in any mode.", [
        ("order_id", T, False), ("portfolio_id", T, False), ("session_date", D, False),
        ("created_at", TS, False), ("instrument_id", T, False), ("side", T, False),
        ("order_type", T, False), ("time_in_force", T, False), ("quantity", F, False),
        ("limit_price", F), ("stop_price", F), ("status", T, False), ("mode", T, False),
        ("decision_id", T), ("run_id", T, False), ("metadata", J),
    ], ["order_id"], "session_date", ["run_id", "portfolio_id", "mode"]),
    _table(RUNTIME, "fills", "One row per fill (execution), in any mode.", [
        ("fill_id", T, False), ("order_id", T, False), ("session_date", D, False),
        ("filled_at", TS, False), ("instrument_id", T, False), ("side", T, False),
        ("quantity", F, False), ("price", F, False), ("commission", F, False), ("slippage_bps", F),
        ("portfolio_id", T, False), ("mode", T, False), ("run_id", T, False), ("metadata", J),
    ], ["fill_id"], "session_date", ["run_id", "portfolio_id", "mode"]),
    _table(RUNTIME, "positions_snapshots", "One row per portfolio per instrument per session per mode: positions after execution.", [
        ("portfolio_id", T, False), ("session_date", D, False), ("instrument_id", T, False),
        ("mode", T, False), ("snapshot_at", TS, False), ("quantity", F, False), ("avg_cost", F),
        ("market_value", F), ("unrealized_pnl", F), ("realized_pnl", F), ("run_id", T, False), ("metadata", J),
    ], ["run_id", "portfolio_id", "session_date", "instrument_id", "mode"], "session_date", ["run_id", "portfolio_id", "mode"]),
    _table(RUNTIME, "regimes", "One row per market per session: the region's filtered regime state and its probabilities.", [
        ("market_id", T, False), ("session_date", D, False),
        _c("region", T, False, "The market's region (markets.yaml); the regime describes the region, read off its market."),
        _c("regime_label", T, False, "The most likely state (argmax of the filtered probabilities)."),
        _c("confidence", F, True, "The most likely state's filtered probability."),
        _c("probabilities_json", J, True, "Filtered probability of every named state at the session (sums to 1)."),
        _c("expected_duration_sessions", F, True, "Expected stay in the labelled state, 1 / (1 - p_ii), in sessions."),
        _c("model_id", T, True, "The walk-forward fit used at the session (null before the first fit)."),
        ("config_hash", T, False),
    ], ["market_id", "session_date"], "session_date", ["market_id"]),
    _table(RUNTIME, "stability_vectors", "One row per entity per session: stability components and overall score.", [
        ("entity_type", T, False), ("entity_id", T, False), ("session_date", D, False),
        ("market_id", T, False),
        _c("overall_score", F, True, "Overall stability in [0, 1] (1 = most stable)."),
        _c("components_json", J, True, "Named components, each in [0, 1] (1 = most stable); see README."),
        ("config_hash", T, False),
    ], ["entity_type", "entity_id", "session_date"], "session_date", ["market_id"]),
    _table(RUNTIME, "fragility_measures", "One row per entity per session: the probability of a large adverse move and its drivers.", [
        ("entity_type", T, False), ("entity_id", T, False), ("session_date", D, False),
        ("market_id", T, False),
        _c("fragility_score", F, True, "Estimated probability of a drawdown beyond drawdown_threshold within "
           "horizon_sessions after the session."),
        ("scenario_losses_json", J),
        _c("components_json", J, True, "Drivers: each feature's value and its contribution."),
        _c("horizon_sessions", I4, True, "N, the sessions after T the drawdown is looked for in."),
        _c("drawdown_threshold", F, True, "The drawdown (a fraction) that counts as a large adverse move."),
        _c("model_id", T, True, "The walk-forward fit used at the session (null before the first fit)."),
        ("config_hash", T, False),
    ], ["entity_type", "entity_id", "session_date"], "session_date", ["market_id"]),
    _table(RUNTIME, "soft_target_classes", "One row per entity per session: soft-target class, class probabilities and scores.", [
        ("entity_type", T, False), ("entity_id", T, False), ("session_date", D, False),
        ("market_id", T, False),
        _c("soft_target_class", T, False, "The most likely class: STABLE, WATCH, FRAGILE or TARGETABLE."),
        _c("soft_target_score", F, True, "Probability of TARGETABLE."),
        ("weak_profile", B), ("instability", F), ("high_fragility", F), ("complacent_pricing", F),
        _c("probabilities_json", J, True, "Membership probability of every class (sums to 1)."),
        ("config_hash", T, False),
    ], ["entity_type", "entity_id", "session_date"], "session_date", ["market_id"]),
    _table(RUNTIME, "instrument_scores", "One row per strategy per instrument per session per horizon: expected return and score.", [
        ("strategy_id", T, False), ("instrument_id", T, False), ("session_date", D, False),
        ("horizon_sessions", I4, False), ("market_id", T, False), ("expected_return", F), ("score", F),
        ("confidence", F), ("signal_label", T), ("components_json", J), ("config_hash", T, False),
        ("run_id", T, False),
    ], ["run_id", "strategy_id", "instrument_id", "session_date", "horizon_sessions"], "session_date", ["run_id", "strategy_id"]),
    _table(RUNTIME, "universes", "One row per strategy per session: the universe's size and config.", [
        ("strategy_id", T, False), ("session_date", D, False), ("market_id", T, False),
        ("universe_size", I4, False), ("config_hash", T, False), ("metadata", J), ("run_id", T, False),
    ], ["run_id", "strategy_id", "session_date"], "session_date", ["run_id", "strategy_id"]),
    _table(RUNTIME, "universe_members", "One row per strategy per session per candidate instrument: in or out, and why.", [
        ("strategy_id", T, False), ("session_date", D, False), ("instrument_id", T, False),
        ("included", B, False), ("score", F), ("tier", T), ("reasons_json", J), ("run_id", T, False),
    ], ["run_id", "strategy_id", "session_date", "instrument_id"], "session_date", ["run_id", "strategy_id"]),
    _table(RUNTIME, "target_portfolios", "One row per portfolio per session per instrument: the target weight.", [
        ("portfolio_id", T, False), ("session_date", D, False), ("instrument_id", T, False),
        ("target_weight", F, False), ("mode", T, False), ("created_at", TS, False),
        ("config_hash", T), ("metadata", J), ("run_id", T, False),
    ], ["run_id", "portfolio_id", "session_date", "instrument_id", "mode"], "session_date", ["run_id", "portfolio_id", "mode"]),
    _table(RUNTIME, "portfolio_risk_reports", "One row per portfolio per session per mode: volatility, VaR/ES, exposures.", [
        ("portfolio_id", T, False), ("session_date", D, False), ("mode", T, False),
        ("created_at", TS, False), ("volatility", F), ("var_95", F), ("es_95", F), ("var_99", F),
        ("es_99", F), ("gross_exposure", F), ("net_exposure", F), ("risk_metrics_json", J),
        ("scenario_pnl_json", J), ("exposures_by_sector_json", J), ("exposures_by_factor_json", J),
        ("run_id", T, False),
    ], ["run_id", "portfolio_id", "session_date", "mode"], "session_date", ["run_id", "portfolio_id", "mode"]),
    _table(RUNTIME, "scenario_sets", "One row per scenario set: generator, horizon and number of paths.", [
        ("scenario_set_id", T, False), ("name", T, False), ("category", T, False),
        ("base_session_date", D), ("market_id", T, False), ("horizon_sessions", I4, False),
        ("num_paths", I4, False), ("generator_json", J), ("created_at", TS, False),
    ], ["scenario_set_id"]),
    _table(RUNTIME, "scenario_paths", "One row per scenario set, path, step and entity: the simulated return.", [
        ("scenario_set_id", T, False), ("scenario_id", I4, False), ("horizon_index", I4, False),
        ("entity_id", T, False), ("return_value", F, False),
    ], ["scenario_set_id", "scenario_id", "horizon_index", "entity_id"]),
    # ------------------------------------------------ backtest and meta
    _table(RUNTIME, "backtest_runs", "One row per backtest run: config, range and metrics.", [
        ("run_id", T, False), ("strategy_id", T, False), ("sleeve_id", T), ("start_date", D, False),
        ("end_date", D, False), ("config_json", J, False), ("created_at", TS, False),
        ("metrics_json", J), ("dagster_run_id", T),
    ], ["run_id"]),
    _table(RUNTIME, "backtest_trades", "One row per backtest trade.", [
        ("run_id", T, False), ("trade_id", T, False), ("session_date", D, False),
        ("instrument_id", T, False), ("side", T, False), ("quantity", F, False), ("price", F, False),
        ("commission", F, False), ("pnl", F), ("strategy_id", T, False), ("sleeve_id", T),
    ], ["run_id", "trade_id"], "session_date", ["run_id"]),
    _table(RUNTIME, "backtest_daily_equity", "One row per backtest run per session: equity, cash and drawdown.", [
        ("run_id", T, False), ("session_date", D, False), ("equity", F, False), ("cash", F),
        ("drawdown", F), ("exposure_metrics_json", J),
    ], ["run_id", "session_date"], "session_date", ["run_id"]),
    _table(RUNTIME, "meta_config_proposals", "One row per config change proposed by the meta layer, awaiting a person's approval.", [
        ("proposal_id", T, False), ("strategy_id", T, False), ("engine_name", T, False),
        ("created_at", TS, False), ("current_config_json", J), ("proposed_config_json", J, False),
        ("rationale", T), ("expected_improvement_json", J), ("confidence", F), ("status", T, False),
        ("approved_by", T), ("approved_at", TS),
    ], ["proposal_id"]),
    _table(RUNTIME, "strategy_configs", "One row per strategy config version.", [
        ("strategy_id", T, False), ("config_hash", T, False), ("version", I4, False),
        ("config_json", J, False), ("created_at", TS, False), ("active", B, False),
        ("source_proposal_id", T),
    ], ["strategy_id", "config_hash"]),
    _table(RUNTIME, "signals", "One row per strategy per instrument per session: ensemble signal and its components.", [
        ("strategy_id", T, False), ("instrument_id", T, False), ("session_date", D, False),
        ("direction", T, False), ("confidence", F), ("signal_score", F), ("components_json", J),
        ("regime_label", T), ("idempotency_key", T, False),
    ], ["strategy_id", "instrument_id", "session_date"], "session_date", ["strategy_id"]),
    _table(RUNTIME, "walk_forward_results", "One row per walk-forward run per fold.", [
        ("run_id", T, False), ("fold", I4, False), ("model_id", T), ("in_sample_start", D, False),
        ("in_sample_end", D, False), ("oos_start", D, False), ("oos_end", D, False),
        ("params_json", J), ("metrics_json", J), ("promoted", B, False),
    ], ["run_id", "fold"]),
    _table(RUNTIME, "risk_decisions", "One row per risk rule evaluation: approved or rejected, and why.", [
        ("decision_id", T, False), ("session_date", D, False), ("portfolio_id", T, False),
        ("instrument_id", T), ("rule", T, False), ("approved", B, False), ("reason", T),
        ("metrics_json", J), ("mode", T, False), ("created_at", TS, False),
    ], ["decision_id"], "session_date", ["portfolio_id", "mode"]),
    _table(RUNTIME, "audit_events", "One row per audited event: who did what to which entity.", [
        ("event_id", T, False), ("occurred_at", TS, False), ("actor", T, False), ("event_type", T, False),
        ("entity_type", T), ("entity_id", T), ("payload_json", J), ("mode", T),
    ], ["event_id"]),
    _table(RUNTIME, "schema_migrations", "One row per applied schema migration.", [
        ("version", I4, False), ("description", T, False), ("applied_at", TS, False),
    ], ["version"], system=True),
]

TABLES: dict[str, Table] = {t.name: t for t in (*_HISTORICAL, *_RUNTIME)}

# Tables that carry the execution mode (BACKTEST/PAPER/LIVE).
MODE_TABLES = ("orders", "fills", "positions_snapshots", "executed_actions")

# Tables a strategy run writes, scoped by ``run_id``: a backtest's id, or a PAPER/LIVE book's.
# Migration 3 gave them ``run_id`` in their key and scope so that runs coexist.
# The market-state engines' tables (regime, stability, soft-target, fragility): migration 5.
MARKET_STATE_TABLES = ("regimes", "stability_vectors", "fragility_measures", "soft_target_classes")

RUN_SCOPED_TABLES = (
    "instrument_scores", "universes", "universe_members", "target_portfolios",
    "portfolio_risk_reports", "engine_decisions", "decision_outcomes", "orders", "fills",
    "positions_snapshots", "executed_actions",
)


def get_table(name: str) -> Table:
    """Return the catalogue table called ``name`` (bare or ``schema.name``).

    Raises
    ------
    UnknownTableError
        If no catalogue table has that name.
    """
    schema, _, bare = name.rpartition(".")
    if schema == TRUTH_SCHEMA:
        raise UnknownTableError(
            f"{name!r} is the synthetic market's ground truth: it is not a warehouse table and no "
            "engine may read it (tests and benches read it with prometheus_lib.data.synthetic.read_truth)"
        )
    table = TABLES.get(bare)
    if table is None or (schema and schema != table.schema):
        raise UnknownTableError(
            f"unknown table {name!r}; catalogue tables: {', '.join(sorted(TABLES))}"
        )
    return table


def catalogue_tables(include_system: bool = True) -> list[Table]:
    """Return every catalogue table, historical first."""
    return [t for t in TABLES.values() if include_system or not t.system]
