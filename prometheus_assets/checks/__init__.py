"""Asset checks: the platform's data-quality dashboard.

Each check reads the checked session range back from the warehouse and applies one rule from
``prometheus_lib.data.quality``. ERROR rules are blocking: a failure stops downstream assets
in the same run. WARN rules (freshness, quarantined rows, instrument gaps, price jumps) only
report. The ingestion assets run the same blocking rules on their frames before writing
(``prometheus_lib.data.ingestion.gate_prices``), so a frame failing them never replaces a
partition; these checks then confirm what was stored.
"""


from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from prometheus_assets.assets.ingestion import ALLOW_EMPTY_TAG, allow_empty
from prometheus_assets.constants import HISTORICAL
from prometheus_assets.markets import MarketScope
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.data import quality
from prometheus_lib.data.ingestion import utc_now

EVENT_TABLES = ("news_articles", "news_links", "filings", "earnings_calls", "macro_events")
CORPORATE_ACTIONS = "corporate_actions"


def _metadata(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, (dict, list)):
            out[k] = dg.MetadataValue.json(v)
        elif v is None:
            out[k] = dg.MetadataValue.text("null")
        else:
            out[k] = v
    return out


def to_result(outcome: quality.CheckOutcome) -> dg.AssetCheckResult:
    """Turn a library check outcome into a Dagster check result."""
    severity = dg.AssetCheckSeverity.ERROR if outcome.severity is quality.Severity.ERROR else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, description=outcome.description,
                               metadata=_metadata(outcome.metadata))


def _range(context: dg.AssetCheckExecutionContext) -> tuple[date, date]:
    sessions = keys_to_sessions(context.partition_keys)
    return min(sessions), max(sessions)


# The rules of corporate_actions values: name -> (rows that break it, what it requires).
CORPORATE_ACTION_RULES = {
    "split_ratio_positive": (
        # polars orders NaN above every number: NaN is tested for explicitly.
        (pl.col("action_type") == "SPLIT")
        & (pl.col("ratio").is_null() | pl.col("ratio").is_nan() | ~(pl.col("ratio") > 0)),
        "every SPLIT has a ratio > 0 (new shares per old share)",
    ),
    "amount_non_negative": (
        pl.col("action_type").is_in(["DIVIDEND", "DELISTING"])
        & (pl.col("amount").is_null() | pl.col("amount").is_nan() | ~(pl.col("amount") >= 0)),
        "every DIVIDEND and DELISTING has an amount >= 0",
    ),
    "action_type_known": (
        ~pl.col("action_type").is_in(["SPLIT", "DIVIDEND", "DELISTING"]),
        "every action_type is SPLIT, DIVIDEND or DELISTING",
    ),
}


def corporate_action_rule(frame: pl.DataFrame, rule: str) -> quality.CheckOutcome:
    """Fail (ERROR) when a row of ``frame`` breaks the corporate-action rule ``rule``."""
    broken, requirement = CORPORATE_ACTION_RULES[rule]
    bad = frame.filter(broken.fill_null(True))
    return quality.CheckOutcome(
        bad.is_empty(), quality.Severity.ERROR,
        f"{bad.height} of {frame.height} corporate actions break the rule: {requirement}" if bad.height
        else f"{requirement} ({frame.height} rows)",
        {"rows": frame.height, "bad_rows": bad.height,
         "examples": [{k: str(v) for k, v in r.items()} for r in bad.head(5).to_dicts()]},
    )


def known_instruments(frame: pl.DataFrame, instruments: pl.DataFrame) -> quality.CheckOutcome:
    """Fail (ERROR) if a row names an instrument that is not in the market's ``runtime.instruments``."""
    unknown = frame.join(instruments.select("instrument_id"), on="instrument_id", how="anti")
    ids = unknown["instrument_id"].unique().sort().to_list()
    return quality.CheckOutcome(
        unknown.is_empty(), quality.Severity.ERROR,
        f"{unknown.height} rows name {len(ids)} instruments not in runtime.instruments" if ids
        else f"all {frame.height} rows name known instruments",
        {"rows": frame.height, "unknown_rows": unknown.height, "unknown_instruments": ids[:10]},
    )


def build_ingestion_checks(partitions_def: dg.PartitionsDefinition, market: MarketScope | str) -> list[dg.AssetChecksDefinition]:
    """Return the data-quality checks of every ingestion asset of ``market`` (a plain id: the primary)."""
    if isinstance(market, str):
        market = MarketScope(market, is_primary=True)
    market_id = market.market_id
    scope = {"market_id": market_id}
    checks: list[dg.AssetChecksDefinition] = []

    def read(warehouse: WarehouseResource, table: str, context: dg.AssetCheckExecutionContext) -> tuple[pl.DataFrame, date, date]:
        start, end = _range(context)
        with warehouse.open() as wh:
            return wh.read_table(table, start, end, scope), start, end

    def add(table: str, name: str, description: str, blocking: bool, fn) -> None:
        @dg.asset_check(asset=market.key(HISTORICAL, table), name=name, description=description,
                        blocking=blocking, partitions_def=partitions_def)
        def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, platform: PlatformResource) -> dg.AssetCheckResult:
            return to_result(fn(context, warehouse, platform))

        checks.append(_check)

    for table in ("prices_daily", *EVENT_TABLES, CORPORATE_ACTIONS):
        add(table, "schema", f"Rows of {table} match its pandera schema (types, nulls, domain rules).", True,
            lambda c, w, p, t=table: quality.check_schema(t, read(w, t, c)[0]))
        add(table, "unique_key", f"Primary key of {table} is unique.", True,
            lambda c, w, p, t=table: quality.check_unique_key(t, read(w, t, c)[0]))

    def prices_sessions(c, w, p):
        frame, start, end = read(w, "prices_daily", c)
        if frame.is_empty() and allow_empty(c):
            return quality.CheckOutcome(True, quality.Severity.ERROR,
                                        f"no prices in {start}..{end}: emptied on purpose ({ALLOW_EMPTY_TAG})",
                                        {"rows": 0, "allow_empty": True})
        with w.open() as wh:
            instruments = wh.read_table("instruments", scope=scope)
        return quality.check_sessions(frame, p.calendar(market_id), start, end, instruments=instruments,
                                      max_gap_share=p.config.engines.data_quality.max_instrument_gap_share)

    add("prices_daily", "sessions", "Every session of the range has prices, none on a non-session; instrument gaps warn.", True,
        prices_sessions)
    add("prices_daily", "ohlc_consistency", "high >= max(open, close) >= min(open, close) >= low > 0.", True,
        lambda c, w, p: quality.check_ohlc(read(w, "prices_daily", c)[0]))

    def price_jumps(c, w, p):
        frame, start, end = read(w, "prices_daily", c)
        cal = p.calendar(market_id)
        previous = None
        if start > cal.first_session:
            before = cal.previous_session(start)
            with w.open() as wh:
                previous = wh.read_table("prices_daily", before, before, scope,
                                         columns=["instrument_id", "session_date", "adjusted_close"])
        return quality.check_price_jumps(frame, p.config.market(market_id).data_limits.max_daily_move, previous)

    add("prices_daily", "price_jumps",
        "No adjusted close moves beyond the market's data_limits.max_daily_move from the previous close (WARN).",
        False, price_jumps)
    for table in (*EVENT_TABLES, CORPORATE_ACTIONS):
        add(table, "sessions", f"Every {table} row is dated on a trading session.", True,
            lambda c, w, p, t=table: quality.check_sessions(read(w, t, c)[0], p.calendar(market_id), *_range(c),
                                                           require_every_session=False))

    def freshness(table: str):
        def fn(c, w, p):
            cal = p.calendar(market_id)
            keys = c.instance.get_materialized_partitions(market.key(HISTORICAL, table))
            latest = max(keys_to_sessions(sorted(keys))) if keys else None
            return quality.check_freshness(latest, cal, cal.last_closed_session(utc_now()),
                                           p.config.engines.data_quality.freshness_max_lag_sessions)
        return fn

    for table in ("prices_daily", *EVENT_TABLES):
        add(table, "freshness", f"{table} is materialised through the last closed session.", False, freshness(table))

    for rule, (_, requirement) in CORPORATE_ACTION_RULES.items():
        add(CORPORATE_ACTIONS, rule, requirement[0].upper() + requirement[1:] + ".", True,
            lambda c, w, p, r=rule: corporate_action_rule(read(w, CORPORATE_ACTIONS, c)[0], r))

    def instrument_known(c, w, p):
        frame = read(w, CORPORATE_ACTIONS, c)[0]
        with w.open() as wh:
            return known_instruments(frame, wh.read_table("instruments", scope=scope))

    add(CORPORATE_ACTIONS, "instrument_known", "Every corporate action names an instrument of runtime.instruments.", True,
        instrument_known)

    @dg.asset_check(asset=market.key(HISTORICAL, "prices_daily_quarantine"), name="no_rejected_rows",
                    description="Warn when input rows were rejected into quarantine.", blocking=False,
                    partitions_def=partitions_def)
    def no_rejected_rows(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        with warehouse.open() as wh:
            q = wh.read_table("quarantine_rows", start, end, {**scope, "asset": "prices_daily"})
        reasons = q.group_by("reason").len().sort("len", descending=True).to_dicts() if q.height else []
        return to_result(quality.CheckOutcome(
            q.is_empty(), quality.Severity.WARN,
            f"{q.height} rows quarantined in {start}..{end}" if q.height else "no rows quarantined",
            {"rows_quarantined": q.height, "by_reason": reasons,
             "examples": [{k: str(v) for k, v in r.items() if k != "raw_row"} for r in q.head(5).to_dicts()]},
        ))

    checks.append(no_rejected_rows)
    return checks
