"""Checks of a strategy's assessment assets, on the run's session range as stored.

* ``signals_valid`` (ERROR, blocking): signal score in [-1, 1] and confidence in [0, 1], finite;
  the calibrated probability (components_json) in [0, 1] where present; one row per key.
* ``instrument_scores_valid`` (ERROR, blocking): score in [-1, 1], confidence in [0, 1],
  expected return finite where present; one row per key. Blocking: the strategy's decisions
  read these scores.
* ``promoted_model_passed_gates`` (ERROR, blocking): every session's scoring model (its
  ``engine_decisions`` row) is a ``models`` row whose gates passed under the current config.
* ``walk_forward_results_valid`` (ERROR): every model cut in the range has its CV folds, each
  with its out-of-sample metrics.
"""


import json

import dagster as dg
import polars as pl

from prometheus_assets.assets.assessment import assessment_key
from prometheus_assets.checks import _range, to_result
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.assessment.engine import run_id_of
from prometheus_lib.config.models import StrategyConfig
from prometheus_lib.data.quality import CheckOutcome, Severity
from prometheus_lib.market_state.checks import check_values
from prometheus_lib.storage.catalog import get_table

_KEY = ["strategy_id", "instrument_id", "session_date"]


def _probabilities_in_range(frame: pl.DataFrame) -> CheckOutcome:
    if frame.height == 0:
        return CheckOutcome(True, Severity.ERROR, "no rows", {})
    p = frame.select(*_KEY, pl.col("components_json").str.json_path_match("$.probability").cast(pl.Float64).alias("p"))
    bad = p.filter(pl.col("p").is_not_null() & (pl.col("p").is_nan() | (pl.col("p") < 0) | (pl.col("p") > 1)))
    return CheckOutcome(bad.height == 0, Severity.ERROR,
                        f"{p['p'].is_not_null().sum()} calibrated probabilities, {bad.height} outside [0, 1]",
                        {"out_of_range": bad.height, "examples": bad.head(5).with_columns(pl.col("session_date").cast(pl.String)).to_dicts()})


def _combine(*outcomes: CheckOutcome) -> CheckOutcome:
    passed = all(o.passed for o in outcomes)
    return CheckOutcome(passed, Severity.ERROR, "; ".join(o.description for o in outcomes),
                        {f"part_{i}": o.metadata for i, o in enumerate(outcomes)})


def build_assessment_checks(partitions_def: dg.PartitionsDefinition, strategy: StrategyConfig) -> list[dg.AssetChecksDefinition]:
    """Return the checks of ``strategy``'s assessment assets (see the module docstring)."""
    sid = strategy.strategy_id

    @dg.asset_check(asset=assessment_key(sid, "signals"), name="signals_valid", blocking=True,
                    partitions_def=partitions_def,
                    description="Signal scores in [-1, 1], confidences and calibrated probabilities in [0, 1], one row per key.")
    def signals_valid(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        with warehouse.open() as wh:
            frame = wh.read_table("signals", start, end, {"strategy_id": sid})
        return to_result(_combine(check_values(frame, _KEY, {"signal_score": (-1.0, 1.0), "confidence": (0.0, 1.0)}),
                                  _probabilities_in_range(frame)))

    @dg.asset_check(asset=assessment_key(sid, "instrument_scores"), name="instrument_scores_valid", blocking=True,
                    partitions_def=partitions_def,
                    description="Scores in [-1, 1], confidences in [0, 1], expected returns finite, one row per key.")
    def scores_valid(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        with warehouse.open() as wh:
            frame = wh.read_table("instrument_scores", start, end, {"run_id": run_id_of(sid), "strategy_id": sid})
        finite = frame.filter(pl.col("expected_return").is_not_null()
                              & (pl.col("expected_return").is_nan() | pl.col("expected_return").is_infinite()))
        er = CheckOutcome(finite.height == 0, Severity.ERROR, f"{finite.height} non-finite expected returns",
                          {"non_finite_expected_return": finite.height})
        return to_result(_combine(check_values(frame, [*_KEY, "horizon_sessions"],
                                               {"score": (-1.0, 1.0), "confidence": (0.0, 1.0)}), er))

    @dg.asset_check(asset=assessment_key(sid, "models"), name="promoted_model_passed_gates", blocking=True,
                    partitions_def=partitions_def,
                    description="Every session's scoring model is a registered model whose promotion gates passed.")
    def promoted_passed(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        with warehouse.open() as wh:
            decisions = wh.read_table("engine_decisions", start, end, {"run_id": run_id_of(sid), "mode": "SHARED"},
                                      columns=["session_date", "decision_json"])
            used = sorted({json.loads(d).get("model_id") for d in decisions["decision_json"].to_list()} - {None})
            t = get_table("models")
            rows = wh.query(f"SELECT model_id, metrics_json FROM {t.qualified_name} WHERE model_id IN "
                            f"({', '.join([wh.placeholder] * len(used))})", used) if used else pl.DataFrame(
                                schema={"model_id": pl.String, "metrics_json": pl.String})
        # PostgreSQL's JSONB arrives as a dict, DuckDB's JSON as text.
        promoted = {m: bool((j if isinstance(j, dict) else json.loads(j)).get("promoted"))
                    for m, j in zip(rows["model_id"], rows["metrics_json"].to_list(), strict=True)}
        missing = [m for m in used if m not in promoted]
        failed = [m for m in used if m in promoted and not promoted[m]]
        ok = not missing and not failed
        return dg.AssetCheckResult(
            passed=ok, severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{len(used)} scoring model(s) over {decisions.height} sessions, all registered and promoted"
                         if ok else f"unregistered: {missing}; not promoted: {failed}"),
            metadata={"models_used": len(used), "unregistered": len(missing), "not_promoted": len(failed),
                      "alphas_only_sessions": sum(1 for d in decisions["decision_json"].to_list()
                                                  if json.loads(d).get("model_id") is None)})

    @dg.asset_check(asset=assessment_key(sid, "walk_forward_results"), name="walk_forward_results_valid",
                    partitions_def=partitions_def,
                    description="Every model used has its CV folds with out-of-sample metrics.")
    def wf_valid(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        start, end = _range(context)
        with warehouse.open() as wh:
            decisions = wh.read_table("engine_decisions", start, end, {"run_id": run_id_of(sid), "mode": "SHARED"},
                                      columns=["decision_json"])
            used = sorted({json.loads(d).get("latest_model") for d in decisions["decision_json"].to_list()} - {None})
            folds = wh.read_table("walk_forward_results", columns=["run_id", "fold", "metrics_json", "oos_start",
                                                                   "in_sample_start"])
        folds = folds.filter(pl.col("run_id").is_in(used))
        have = set(folds["run_id"].to_list())
        missing = [m for m in used if m not in have]
        no_oos = folds.filter(pl.col("metrics_json").str.json_path_match("$.oos_rank_ic").is_null()).height
        ok = not missing and no_oos == 0
        return dg.AssetCheckResult(
            passed=ok, severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{len(used)} model(s), {folds.height} folds, every fold with OOS metrics" if ok else
                         f"models without folds: {missing}; folds without an OOS Rank IC: {no_oos}"),
            metadata={"models": len(used), "folds": folds.height, "models_without_folds": len(missing)})

    return [signals_valid, scores_valid, promoted_passed, wf_valid]


__all__ = ["build_assessment_checks"]
