"""Checks of a market's market-state assets (regimes, stability, fragility, soft targets).

Per asset, on the run's session range as stored:

* ``*_valid`` (ERROR, blocking): probabilities in [0, 1] summing to 1 with the label their
  argmax, no null or NaN score, every stability component in [0, 1], one row per key. Blocking,
  because the next engine (fragility reads the regimes, soft targets read all three, strategies
  read them all) would otherwise be fed a malformed distribution.
* ``coverage`` (WARN): every session with prices has rows from the engine's first output on (its
  warm-up is the first walk-forward fit), each covering at least 80 % of the priced instruments
  (instruments with too little history are left out by design).
"""


from datetime import date

import dagster as dg
import polars as pl

from prometheus_assets.assets.market_state import market_state_key
from prometheus_assets.checks import _range, to_result
from prometheus_assets.markets import MarketScope
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.market_state.checks import check_coverage, check_probabilities, check_values, combine
from prometheus_lib.stability import SOFT_TARGET_CLASSES
from prometheus_lib.storage.catalog import MARKET_STATE_TABLES, get_table

_INSTRUMENT_KEY = ["entity_type", "entity_id", "session_date"]


def _first_output(wh, table: str, market_id: str) -> date | None:
    t = get_table(table)
    out = wh.query(f"SELECT min(session_date) AS first FROM {t.qualified_name} WHERE market_id = {wh.placeholder}",
                   [market_id])
    return out["first"][0] if out.height else None


def build_market_state_checks(partitions_def: dg.PartitionsDefinition, market: MarketScope) -> list[dg.AssetChecksDefinition]:
    """Return the validity (blocking) and coverage checks of ``market``'s market-state assets."""
    market_id = market.market_id
    scope = {"market_id": market_id}
    checks: list[dg.AssetChecksDefinition] = []

    def read(warehouse: WarehouseResource, context, table: str) -> tuple[pl.DataFrame, date, date]:
        start, end = _range(context)
        with warehouse.open() as wh:
            return wh.read_table(table, start, end, scope), start, end

    def validity(table: str, rule, description: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=market_state_key(market, table), name=f"{table}_valid", blocking=True,
                        partitions_def=partitions_def, description=description)
        def _check(context: dg.AssetCheckExecutionContext, platform: PlatformResource,
                   warehouse: WarehouseResource) -> dg.AssetCheckResult:
            frame, _, _ = read(warehouse, context, table)
            return to_result(rule(frame, platform))
        return _check

    def coverage(table: str, per_instrument: bool) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=market_state_key(market, table), name="coverage", partitions_def=partitions_def,
                        description="Every session with prices has rows from the engine's first output on"
                                    + (", each covering >= 80 % of the priced instruments." if per_instrument else "."))
        def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
            start, end = _range(context)
            with warehouse.open() as wh:
                rows = wh.read_table(table, start, end, scope, columns=["session_date", *(["entity_id"] if per_instrument else [])])
                priced = wh.read_table("prices_daily", start, end, scope, columns=["instrument_id", "session_date"])
                first = _first_output(wh, table, market_id)
            return to_result(check_coverage(rows, priced, first, entity_column="entity_id" if per_instrument else None))
        return _check

    def regimes_rule(frame: pl.DataFrame, platform: PlatformResource):
        names = platform.config.engines.regime.state_names
        return combine(
            check_probabilities(frame, ["market_id", "session_date"], "probabilities_json", names, "regime_label"),
            check_values(frame, ["market_id", "session_date"],
                         {"confidence": (0.0, 1.0), "expected_duration_sessions": (1.0, float("inf"))}),
        )

    def stability_rule(frame: pl.DataFrame, platform: PlatformResource):
        return check_values(frame, _INSTRUMENT_KEY, {"overall_score": (0.0, 1.0)}, {"components_json": (0.0, 1.0)})

    def fragility_rule(frame: pl.DataFrame, platform: PlatformResource):
        return check_values(frame, _INSTRUMENT_KEY, {"fragility_score": (0.0, 1.0)})

    def soft_target_rule(frame: pl.DataFrame, platform: PlatformResource):
        return combine(
            check_probabilities(frame, _INSTRUMENT_KEY, "probabilities_json", SOFT_TARGET_CLASSES, "soft_target_class"),
            check_values(frame, _INSTRUMENT_KEY, {"soft_target_score": (0.0, 1.0), "instability": (0.0, 1.0),
                                                  "high_fragility": (0.0, 1.0), "complacent_pricing": (0.0, 1.0)}),
        )

    rules = {
        "regimes": (regimes_rule, "Filtered regime probabilities in [0, 1] summing to 1, the label their argmax, "
                                  "confidence in [0, 1], expected duration >= 1 session, one row per session."),
        "stability_vectors": (stability_rule, "Overall score and every component in [0, 1], no NaN, one row per "
                                              "instrument and session."),
        "fragility_measures": (fragility_rule, "Fragility probability in [0, 1], no NaN, one row per instrument and session."),
        "soft_target_classes": (soft_target_rule, "Class probabilities in [0, 1] summing to 1, the class their "
                                                  "argmax, scores in [0, 1], one row per instrument and session."),
    }
    for table in MARKET_STATE_TABLES:
        rule, description = rules[table]
        checks.append(validity(table, rule, description))
        checks.append(coverage(table, per_instrument=table != "regimes"))
    return checks


__all__ = ["build_market_state_checks"]
