"""The market-state engines as session-partitioned assets of each market: regimes, stability,
fragility, soft-target classes.

Per market with data (keys under ``runtime/``, prefixed ``<market_id>/`` for a non-primary
market; group ``market_state`` / ``market_state_<market>``), downstream of the market's dbt
panels and upstream of every strategy's decisions:

    panels -> regimes ------------------------> fragility_measures -> soft_target_classes
           -> stability_vectors ---------------------------------------^

Each asset runs its engine (``prometheus_lib.regime``, ``.stability``, ``.fragility``) over the
market's whole history up to the range's last session (walk-forward fits are anchored on the
history start, so a session's output never depends on the range asked for) and replaces, in one
transaction, its table's rows of the range, its ``engine_decisions`` rows (run id
``<engine>/<market_id>``, mode SHARED) and its ``engine_configs`` row. A single-run backfill
policy makes a range one run. The market-state tables are the market's, not one strategy's:
every strategy and mode reads the same rows.
"""


import time
from datetime import date

import dagster as dg
import polars as pl

from prometheus_assets.constants import HISTORICAL, RUNTIME
from prometheus_assets.markets import MarketScope
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.config.models import MarketConfig
from prometheus_lib.fragility import FragilityAlphaEngine
from prometheus_lib.market_state import SHARED_MODE, MarketPanel, decision_frame, engine_config_frame, engine_run_id
from prometheus_lib.market_state.panel import load_market_panel
from prometheus_lib.regime import RegimeEngine
from prometheus_lib.stability import SoftTargetClassifier, StabilityEngine
from prometheus_lib.storage.catalog import MARKET_STATE_TABLES, get_table

MARKET_STATE = "market_state"
# The dbt panels every market-state engine reads (MarketPanel), plus the prices.
PANEL_INPUTS = ("prices_daily", "returns_daily", "volatility_daily", "instrument_factors_daily", "factors_daily",
                "correlation_panels")


def market_state_key(market: MarketScope, table: str) -> dg.AssetKey:
    """The asset key of ``market``'s market-state ``table`` (``runtime/regimes``, ``EU_EQ/runtime/regimes``)."""
    return market.key(RUNTIME, table)


def load_panel(platform: PlatformResource, wh, market_config: MarketConfig, end: date) -> MarketPanel:
    """The market's panel from its first session with prices (at or after its history start) to ``end``.

    The walk-forward fits are anchored on the panel's first row: on the first stored price, not
    on a configured date the warehouse may hold no data for.
    """
    market_id = market_config.market_id
    cal = platform.calendar(market_id)
    prices = get_table("prices_daily")
    found = wh.query(f"SELECT min(session_date) AS first FROM {prices.qualified_name} WHERE market_id = {wh.placeholder}",
                     [market_id])["first"]
    first = max(market_config.history_start, found[0] if found.len() and found[0] is not None else end)
    first = first if cal.is_session(first) else cal.next_session(first)
    return load_market_panel(wh, market_id, market_config.region, cal.sessions(first, max(first, end)))


def _write(wh, table: str, frame: pl.DataFrame, engine_name: str, config, description: str, market_id: str,
           start: date, end: date, sessions: list[date], decisions: list[dict], inputs: list[dict]) -> dict[str, int]:
    """Replace the range of ``table`` and of the engine's decisions, and upsert its config row: one transaction."""
    config_hash = config.config_hash()
    with wh.transaction():
        rows = wh.write_partition(table, frame, start, end, {"market_id": market_id}).rows_written
        decided = wh.write_partition(
            "engine_decisions", decision_frame(engine_name, market_id, config_hash, sessions, decisions, inputs),
            start, end, {"run_id": engine_run_id(engine_name, market_id), "mode": SHARED_MODE}).rows_written
        wh.upsert_rows("engine_configs", engine_config_frame(engine_name, config, description))
    return {f"rows/{table}": rows, "rows/engine_decisions": decided}


def _metadata(sessions_asked: list[date], covered: list[date], config, t0: float, written: dict[str, int],
              **extra) -> dict:
    return {
        "sessions": len(sessions_asked), "first_session": str(sessions_asked[0]), "last_session": str(sessions_asked[-1]),
        "sessions_with_output": len(covered),
        "first_output": str(covered[0]) if covered else None,
        "config_hash": config.config_hash(), "compute_seconds": round(time.perf_counter() - t0, 3),
        **written, **extra,
    }


def build_market_state_assets(partitions_def: dg.PartitionsDefinition, market: MarketScope,
                              market_config: MarketConfig) -> list[dg.AssetsDefinition]:
    """Return ``market``'s regimes, stability_vectors, fragility_measures and soft_target_classes assets."""
    market_id = market_config.market_id
    keys = {t: market_state_key(market, t) for t in MARKET_STATE_TABLES}
    panel_deps = [market.key(HISTORICAL, t) for t in PANEL_INPUTS]
    common = dict(partitions_def=partitions_def, backfill_policy=dg.BackfillPolicy.single_run(),
                  group_name=market.group(MARKET_STATE))

    def engines_config(platform: PlatformResource):
        return platform.config.engines

    @dg.asset(key=keys["regimes"], deps=panel_deps, metadata={"prometheus/tables": ["regimes", "engine_decisions"]},
              description=f"{market_id} ({market_config.region}): the region's filtered regime probabilities per session "
                          "(Gaussian HMM fitted walk-forward).", **common)
    def regimes(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        """Filtered regime probabilities, state, confidence and expected duration per session."""
        t0 = time.perf_counter()
        asked = keys_to_sessions(context.partition_keys)
        config = engines_config(platform).regime
        with warehouse.open() as wh:
            panel = load_panel(platform, wh, market_config, asked[-1])
            result = RegimeEngine(config).run(panel, asked[0], asked[-1])
            written = _write(wh, "regimes", result.regimes, RegimeEngine.name, config,
                             "Gaussian HMM over market features, filtered posterior, walk-forward refits",
                             market_id, asked[0], asked[-1], result.sessions, result.decisions, result.inputs)
        latest = {"latest_state": result.states[-1], "latest_session": str(result.sessions[-1])} if result.sessions else {}
        return dg.MaterializeResult(metadata=_metadata(asked, result.sessions, config, t0, written,
                                                       region=market_config.region, **latest))

    @dg.asset(key=keys["stability_vectors"], deps=panel_deps,
              metadata={"prometheus/tables": ["stability_vectors", "engine_decisions"]},
              description=f"{market_id}: per instrument per session, named stability components in [0, 1] and an overall score.",
              **common)
    def stability_vectors(context: dg.AssetExecutionContext, platform: PlatformResource,
                          warehouse: WarehouseResource) -> dg.MaterializeResult:
        """Stability components and overall score per instrument per session."""
        t0 = time.perf_counter()
        asked = keys_to_sessions(context.partition_keys)
        config = engines_config(platform).stability
        with warehouse.open() as wh:
            panel = load_panel(platform, wh, market_config, asked[-1])
            result = StabilityEngine(config).run(panel, asked[0], asked[-1])
            written = _write(wh, "stability_vectors", result.vectors, StabilityEngine.name, config,
                             "Rule-based stability components from the panels", market_id, asked[0], asked[-1],
                             result.sessions, result.decisions, result.inputs)
        return dg.MaterializeResult(metadata=_metadata(asked, result.sessions, config, t0, written))

    @dg.asset(key=keys["fragility_measures"], deps=[*panel_deps, keys["regimes"]],
              metadata={"prometheus/tables": ["fragility_measures", "engine_decisions"]},
              description=f"{market_id}: per instrument per session, the probability of a large drawdown within the "
                          "horizon (LightGBM fitted walk-forward) and its drivers.", **common)
    def fragility_measures(context: dg.AssetExecutionContext, platform: PlatformResource,
                           warehouse: WarehouseResource) -> dg.MaterializeResult:
        """Fragility probability and drivers per instrument per session."""
        t0 = time.perf_counter()
        asked = keys_to_sessions(context.partition_keys)
        engines = engines_config(platform)
        config = engines.fragility
        with warehouse.open() as wh:
            panel = load_panel(platform, wh, market_config, asked[-1])
            # The regime features of every training row: the regime engine over the whole history
            # (deterministic, the same rows the regimes asset writes), not the stored rows.
            regime_rows = (RegimeEngine(engines.regime).run(panel, panel.session_dates()[0], asked[-1]).regimes
                           if config.use_regime_features else None)
            result = FragilityAlphaEngine(config).run(panel, asked[0], asked[-1], regimes=regime_rows)
            written = _write(wh, "fragility_measures", result.measures, FragilityAlphaEngine.name, config,
                             "LightGBM walk-forward: P(drawdown beyond the threshold within the horizon)",
                             market_id, asked[0], asked[-1], result.sessions, result.decisions, result.inputs)
        return dg.MaterializeResult(metadata=_metadata(asked, result.sessions, config, t0, written))

    @dg.asset(key=keys["soft_target_classes"],
              deps=[keys["stability_vectors"], keys["fragility_measures"], keys["regimes"]],
              metadata={"prometheus/tables": ["soft_target_classes", "engine_decisions"]},
              description=f"{market_id}: per instrument per session, STABLE / WATCH / FRAGILE / TARGETABLE "
                          "membership probabilities.", **common)
    def soft_target_classes(context: dg.AssetExecutionContext, platform: PlatformResource,
                            warehouse: WarehouseResource) -> dg.MaterializeResult:
        """Soft-target class probabilities per instrument per session."""
        t0 = time.perf_counter()
        asked = keys_to_sessions(context.partition_keys)
        config = engines_config(platform).stability
        start, end = asked[0], asked[-1]
        scope = {"market_id": market_id}
        with warehouse.open() as wh:
            stability = wh.read_table("stability_vectors", start, end, scope)
            fragility = wh.read_table("fragility_measures", start, end, scope)
            regime_rows = wh.read_table("regimes", start, end, scope)
            result = SoftTargetClassifier(config).run(market_id, stability, fragility, regime_rows)
            written = _write(wh, "soft_target_classes", result.classes, SoftTargetClassifier.name, config,
                             "Softmax over instability, fragility and complacent pricing", market_id, start, end,
                             result.sessions, result.decisions, result.inputs)
        return dg.MaterializeResult(metadata=_metadata(asked, result.sessions, config, t0, written))

    return [regimes, stability_vectors, fragility_measures, soft_target_classes]


__all__ = ["MARKET_STATE", "MARKET_STATE_TABLES", "build_market_state_assets", "load_panel", "market_state_key"]
