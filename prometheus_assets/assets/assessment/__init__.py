"""The assessment engine as session-partitioned assets of each strategy: signals, instrument
scores, walk-forward results and models.

Per strategy (keys ``runtime/<strategy>/signals``, ``.../instrument_scores``,
``.../walk_forward_results``, ``.../models``; group ``assessment`` / ``assessment_<market>``),
downstream of its market's panels, earnings calls and market-state engines, and upstream of the
strategy's decisions. One multi-asset computes the four together: the engine
(``prometheus_lib.assessment``) walks the anchored cuts from the market's first priced session to
the range's last session in order, reusing every model already in the registry (keyed by training
hash, strategy and cut: re-running a range trains nothing) and training the missing ones; then it
replaces, in one transaction, the range's ``signals`` (scope: strategy) and ``instrument_scores``
(run id ``assessment/<strategy>``), its ``engine_decisions`` and the ``engine_configs`` row, and
upserts the ``walk_forward_results`` and ``models`` rows of every model used. Artefacts are
written under ``<PROMETHEUS_HOME>/models/assessment/`` (checksummed) as soon as a model is fitted.

The evaluation report (IC, Rank IC, ICIR by year and regime, decile returns, turnover,
calibration; ``prometheus_lib.assessment.report``) over the whole out-of-sample history to the
range's end is written to ``<PROMETHEUS_HOME>/reports/assessment/<strategy>/`` and its headline
figures are the asset's metadata in the Dagster UI.
"""


import time
from datetime import date

import dagster as dg
import polars as pl

from prometheus_assets.assets.market_state import PANEL_INPUTS, load_panel, market_state_key
from prometheus_assets.constants import HISTORICAL, RUNTIME
from prometheus_assets.markets import MarketScope
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import PlatformResource, WarehouseResource
from prometheus_lib.assessment import report
from prometheus_lib.assessment.engine import COMPONENTS, AssessmentEngine, run_id_of
from prometheus_lib.assessment.ml.features import AssessmentInputs, market_state_arrays
from prometheus_lib.assessment.store import ENGINE_NAME, RegistryModelStore, walk_forward_frame
from prometheus_lib.config.home import prometheus_home
from prometheus_lib.config.models import MarketConfig, StrategyConfig
from prometheus_lib.market_state import SHARED_MODE, decision_frame, engine_config_frame
from prometheus_lib.registry import ModelRegistry

ASSESSMENT = "assessment"
ASSESSMENT_TABLES = ("signals", "instrument_scores", "walk_forward_results", "models")


def assessment_key(strategy_id: str, table: str) -> dg.AssetKey:
    """``runtime/<strategy>/<table>``."""
    return dg.AssetKey([RUNTIME, strategy_id.lower(), table])


def report_dir(strategy_id: str):
    return prometheus_home() / "reports" / ASSESSMENT / strategy_id


def _headline(evaluation: dict) -> dict:
    """The figures shown as metadata and printed by ``prometheus main``."""
    out = {}
    for name, s in evaluation.get("scores", {}).items():
        ic = s.get("ic", {})
        out[f"oos_rank_ic/{name}"] = ic.get("rank_ic_mean")
        out[f"oos_rank_icir/{name}"] = ic.get("rank_icir")
    ens = evaluation.get("scores", {}).get("ensemble", {})
    out["ensemble_long_short_sharpe"] = ens.get("quantiles", {}).get("long_short_sharpe")
    out["ensemble_rank_ic_t_stat"] = ens.get("ic", {}).get("rank_ic_t_stat")
    cal = evaluation.get("calibration") or {}
    out["brier"] = cal.get("brier")
    out["brier_reference"] = cal.get("brier_reference")
    out["oos_sessions"] = evaluation.get("sample", {}).get("n_sessions")
    return out


def build_assessment_assets(partitions_def: dg.PartitionsDefinition, strategy: StrategyConfig, market: MarketScope,
                            market_config: MarketConfig) -> dg.AssetsDefinition:
    """Return the assessment multi-asset of ``strategy`` (see the module docstring)."""
    sid, market_id = strategy.strategy_id, market_config.market_id
    keys = {t: assessment_key(sid, t) for t in ASSESSMENT_TABLES}
    deps = [*(market.key(HISTORICAL, t) for t in PANEL_INPUTS), market.key(HISTORICAL, "earnings_calls"),
            market_state_key(market, "regimes"), market_state_key(market, "stability_vectors")]
    descriptions = {
        "signals": f"{sid}: per instrument per session, the alphas, the model's score, the ensemble direction and "
                   "confidence, the calibrated probability, the regime, and why a filtered instrument is out.",
        "instrument_scores": f"{sid}: per tradable instrument per session, the ensemble score, expected return over "
                             "the horizon and confidence (run id assessment/<strategy>).",
        "walk_forward_results": f"{sid}: per walk-forward model, its purged CV folds' in-sample and OOS metrics.",
        "models": f"{sid}: the walk-forward LightGBM models (registry rows: training range and cut, gates, artefact "
                  "and checksum).",
    }
    specs = [dg.AssetSpec(keys[t], deps=deps, description=descriptions[t], group_name=market.group(ASSESSMENT),
                          metadata={"prometheus/tables": [t], "strategy_id": sid}) for t in ASSESSMENT_TABLES]

    @dg.multi_asset(specs=specs, name=f"assessment_{sid.lower()}", partitions_def=partitions_def,
                    backfill_policy=dg.BackfillPolicy.single_run(), can_subset=False)
    def assessment(context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: WarehouseResource):
        t0 = time.perf_counter()
        asked = keys_to_sessions(context.partition_keys)
        start, end = asked[0], asked[-1]
        engines = platform.config.engines
        config = engines.assessment
        with warehouse.open() as wh:
            panel = load_panel(platform, wh, market_config, end)
            calls = wh.read_table("earnings_calls", None, end, {"market_id": market_id},
                                  columns=["instrument_id", "session_date", "eps_actual", "eps_consensus"])
            probabilities, states, stability = market_state_arrays(panel, engines.regime, engines.stability)
            inputs = AssessmentInputs(panel, calls, probabilities, states, stability, fingerprint=(
                f"regime={engines.regime.config_hash()};stability={engines.stability.config_hash()}"))
            store = RegistryModelStore(ModelRegistry(prometheus_home() / "models", wh), config)
            result = AssessmentEngine(config, sid, store).run(inputs, start, end)
            written = _write(wh, sid, market_id, config, start, end, result, store)
        evaluation = _evaluate(result, config.horizon_sessions)
        paths = report.write_report(evaluation, report_dir(sid), title=f"{sid} assessment: out-of-sample evaluation") \
            if evaluation else {}
        common = {"sessions": len(asked), "first_session": str(start), "last_session": str(end),
                  "config_hash": config.config_hash(), "compute_seconds": round(time.perf_counter() - t0, 3)}
        promoted = result.promoted_model
        yield dg.MaterializeResult(asset_key=keys["signals"], metadata={
            **common, "rows/signals": written["signals"], **{k: v for k, v in _headline(evaluation).items()},
            "report": dg.MetadataValue.path(str(paths["html"])) if paths else None,
            **{f"seconds/{k}": round(v, 3) for k, v in result.timings.items()}})
        yield dg.MaterializeResult(asset_key=keys["instrument_scores"], metadata={
            **common, "rows/instrument_scores": written["instrument_scores"], "run_id": run_id_of(sid)})
        yield dg.MaterializeResult(asset_key=keys["walk_forward_results"], metadata={
            **common, "rows/walk_forward_results": written["walk_forward_results"]})
        yield dg.MaterializeResult(asset_key=keys["models"], metadata={
            **common, "models_used": len(result.records), "models_trained": len(result.trained),
            "models_promoted": sum(1 for p in result.promotion.values() if p[0]), "promoted_model": promoted})

    return assessment


def _write(wh, sid: str, market_id: str, config, start: date, end: date, result, store: RegistryModelStore) -> dict:
    decisions = decision_frame(ENGINE_NAME, market_id, config.config_hash(), result.sessions, result.decisions,
                               result.inputs, strategy_id=sid)
    with wh.transaction():
        out = {
            "signals": wh.write_partition("signals", result.signals, start, end, {"strategy_id": sid}).rows_written,
            "instrument_scores": wh.write_partition("instrument_scores", result.scores, start, end,
                                                    {"run_id": run_id_of(sid), "strategy_id": sid}).rows_written,
            "engine_decisions": wh.write_partition("engine_decisions", decisions, start, end,
                                                   {"run_id": run_id_of(sid), "mode": SHARED_MODE}).rows_written,
        }
        wf = walk_forward_frame(result.records, result.promotion)
        out["walk_forward_results"] = wh.upsert_rows("walk_forward_results", wf).rows_written if wf.height else 0
        out["models"] = store.registry.upsert(store.entries(result.records, result.promotion))
        wh.upsert_rows("engine_configs", engine_config_frame(
            ENGINE_NAME, config, "Lean alphas + walk-forward LightGBM (purged CV, gates) + calibrated ensemble"))
    return out


def _evaluate(result, horizon: int) -> dict:
    frame = result.evaluation
    if frame.height == 0:
        return {}
    frame = frame.filter(pl.col("ensemble").is_not_null())
    return report.evaluate(frame, list(COMPONENTS) + ["ensemble"], horizon_sessions=horizon)


__all__ = ["ASSESSMENT", "ASSESSMENT_TABLES", "assessment_key", "build_assessment_assets", "report_dir"]
