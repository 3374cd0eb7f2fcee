"""The soft-target classifier: STABLE / WATCH / FRAGILE / TARGETABLE membership probabilities.

One row per (instrument, session) of the stability frame (the stability engine's rows), from
that row, the instrument's ``fragility_measures`` row at the session (if any) and the market's
``regimes`` row at the session (if any). Definitions, each in [0, 1]:

* ``instability`` ``u = 1 - overall_score`` (overall stability, see ``stability.engine``).
* ``high_fragility`` ``f``: the fragility engine's ``fragility_score``, the probability of a
  large drawdown within its horizon (clipped to [0, 1]). An instrument without a fragility score
  at the session is classified from stability alone: ``f = 0`` (the row shows 0), so it is
  STABLE or WATCH.
* ``calm = (drawdown_state + volatility_level) / 2``: the market prices the instrument calmly -
  it trades near its trailing high, with a volatility low for the cross-section and its history.
* ``complacent_pricing`` ``c = f * calm``: fragile, yet priced calmly.
* ``weak_profile``: ``u > weak_profile_instability``. A stand-in until issuer profiles exist: an
  instrument whose own stability is poor is flagged.
* ``P(crisis)`` ``g``: the ``crisis_state`` probability of the market's regime at the session
  (0 without a regimes frame or row).

Class scores split "fragile or not" (``f``) by stability and by pricing; without the crisis tilt
they are a fuzzy partition (they sum to 1):

* ``STABLE = (1 - f) (1 - u)``: not fragile and stable;
* ``WATCH = (1 - f) u``: not (yet) fragile but unstable: to watch;
* ``FRAGILE = f (1 - calm) + crisis_tilt g f``: fragile and already priced (in a drawdown, volatile);
  a crisis regime tilts fragile instruments here;
* ``TARGETABLE = f calm = c``: fragile and complacently priced: the short / avoid candidate.

Probabilities ``p_k = softmax(score_k / class_temperature)``, rounded to 12 decimals (the largest
then set to 1 minus the others so they sum to 1); ``soft_target_class`` is their argmax (ties:
the first in ``SOFT_TARGET_CLASSES`` order) and ``soft_target_score = P(TARGETABLE)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from prometheus_lib.config.models import StabilityConfig
from prometheus_lib.errors import DataValidationError
from prometheus_lib.stability._frames import JSON_DECIMALS, json_objects
from prometheus_lib.stability.engine import ENTITY_TYPE
from prometheus_lib.storage.catalog import get_table

__all__ = ["SOFT_TARGET_CLASSES", "SoftTargetClassifier", "SoftTargetResult"]

SOFT_TARGET_CLASSES = ("STABLE", "WATCH", "FRAGILE", "TARGETABLE")
_TOP_TARGETABLE = 5
_KEY = ["entity_id", "session_date"]


@dataclass(frozen=True)
class SoftTargetResult:
    """What ``SoftTargetClassifier.run`` produced.

    ``classes``: ``soft_target_classes`` rows; ``sessions``: the sessions of the stability frame,
    ascending; ``decisions`` / ``inputs``: one per session (class counts and the five most
    probable TARGETABLE instruments; rows, rows with a fragility score, P(crisis)).
    """

    classes: pl.DataFrame
    sessions: list[date]
    decisions: list[dict]
    inputs: list[dict]


def _instrument_rows(frame: pl.DataFrame, market_id: str) -> pl.DataFrame:
    """The market's instrument rows of a catalogue frame (filters the columns it has)."""
    if "market_id" in frame.columns:
        frame = frame.filter(pl.col("market_id") == market_id)
    if "entity_type" in frame.columns:
        frame = frame.filter(pl.col("entity_type") == ENTITY_TYPE)
    return frame


def _json_number(column: str, key: str) -> pl.Expr:
    """The number under ``key`` in the JSON object of ``column`` (polars' JSON path, no Python per row)."""
    return pl.col(column).str.json_path_match(f"$.{key}").cast(pl.Float64).alias(key)


class SoftTargetClassifier:
    """Soft-target classes of one market's instruments (see the module docstring)."""

    name = "soft_target"

    def __init__(self, config: StabilityConfig) -> None:
        self.config = config

    def run(self, market_id: str, stability: pl.DataFrame, fragility: pl.DataFrame | None,
            regimes: pl.DataFrame | None = None) -> SoftTargetResult:
        """Classes of the (instrument, session) rows of ``stability`` (``stability_vectors`` rows).

        ``fragility``: ``fragility_measures`` rows (entity_id, session_date, fragility_score; null
        scores count as missing); ``regimes``: ``regimes`` rows (session_date, probabilities_json).
        """
        cfg = self.config
        frame = _instrument_rows(stability, market_id).select(
            *_KEY, "overall_score", *(_json_number("components_json", name) for name in ("drawdown_state",
                                                                                          "volatility_level")))
        bad = frame.filter(pl.any_horizontal(pl.col("overall_score", "drawdown_state", "volatility_level").is_null()
                                             | pl.col("overall_score", "drawdown_state", "volatility_level").is_nan()))
        if bad.height:
            raise DataValidationError(f"soft_target: {bad.height} stability rows lack an overall score, drawdown_state "
                                      f"or volatility_level, e.g. {bad.row(0, named=True)}")
        if fragility is not None:
            scores = (_instrument_rows(fragility, market_id).select(*_KEY, "fragility_score")
                      .filter(pl.col("fragility_score").is_not_null() & pl.col("fragility_score").is_not_nan()))
            frame = frame.join(scores, on=_KEY, how="left")
        else:
            frame = frame.with_columns(fragility_score=pl.lit(None, dtype=pl.Float64))
        if regimes is not None:
            crisis = (regimes.filter(pl.col("market_id") == market_id) if "market_id" in regimes.columns else regimes)
            crisis = crisis.select("session_date", pl.col("probabilities_json").str.json_path_match(
                f"$.{cfg.crisis_state}").cast(pl.Float64).alias("p_crisis"))
            frame = frame.join(crisis, on="session_date", how="left")
        else:
            frame = frame.with_columns(p_crisis=pl.lit(None, dtype=pl.Float64))
        frame = frame.sort("session_date", "entity_id")
        u = np.clip(1.0 - frame["overall_score"].to_numpy(), 0.0, 1.0)
        f = frame["fragility_score"].fill_null(0.0).clip(0.0, 1.0).to_numpy()
        calm = np.clip(0.5 * (frame["drawdown_state"].to_numpy() + frame["volatility_level"].to_numpy()), 0.0, 1.0)
        g = frame["p_crisis"].fill_null(0.0).fill_nan(0.0).clip(0.0, 1.0).to_numpy()
        scores = np.stack([(1.0 - f) * (1.0 - u), (1.0 - f) * u,
                           f * (1.0 - calm) + cfg.crisis_tilt * g * f, f * calm], axis=1)
        probs = self._probabilities(scores)
        label = np.asarray(SOFT_TARGET_CLASSES, dtype=object)[np.argmax(probs, axis=1)]

        classes = pl.DataFrame({
            "entity_id": frame["entity_id"], "session_date": frame["session_date"],
            "soft_target_class": pl.Series(label.tolist(), dtype=pl.String),
            "soft_target_score": probs[:, 3],
            "weak_profile": u > cfg.weak_profile_instability,
            "instability": u, "high_fragility": f, "complacent_pricing": f * calm,
            "probabilities_json": json_objects(dict(zip(SOFT_TARGET_CLASSES, probs.T))),
        }).with_columns(entity_type=pl.lit(ENTITY_TYPE), market_id=pl.lit(market_id),
                        config_hash=pl.lit(cfg.config_hash()))
        schema = dict(get_table("soft_target_classes").polars_schema)
        classes = classes.select(list(schema)).cast(schema)
        sessions, decisions, inputs = self._decisions(classes, frame.select(
            "session_date", "p_crisis", has_f=pl.col("fragility_score").is_not_null()))
        return SoftTargetResult(classes=classes, sessions=sessions, decisions=decisions, inputs=inputs)

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Softmax of ``scores / class_temperature`` per row, rounded so that each row sums to 1."""
        z = scores / self.config.class_temperature
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = np.round(e / e.sum(axis=1, keepdims=True), JSON_DECIMALS)
        top = np.argmax(p, axis=1)
        rows = np.arange(p.shape[0])
        p[rows, top] = 0.0
        p[rows, top] = np.round(1.0 - p.sum(axis=1), JSON_DECIMALS)
        return p

    @staticmethod
    def _decisions(classes: pl.DataFrame, extra: pl.DataFrame) -> tuple[list[date], list[dict], list[dict]]:
        """Per session: class counts and the most probable TARGETABLE instruments; its inputs."""
        counts = (classes.group_by("session_date", "soft_target_class").len()
                  .pivot("soft_target_class", index="session_date", values="len"))
        top = (classes.filter(pl.col("soft_target_class") == "TARGETABLE")
               .sort(["session_date", "soft_target_score", "entity_id"], descending=[False, True, False])
               .group_by("session_date", maintain_order=True).head(_TOP_TARGETABLE)
               .group_by("session_date").agg(pl.col("entity_id").alias("top_ids"),
                                             pl.col("soft_target_score").alias("top_scores")))
        seen = extra.group_by("session_date").agg(pl.len().alias("n"), pl.col("has_f").sum().alias("with_fragility"),
                                                  pl.col("p_crisis").first())
        per = (seen.join(counts, on="session_date", how="left").join(top, on="session_date", how="left")
               .sort("session_date"))
        sessions, decisions, inputs = [], [], []
        for row in per.iter_rows(named=True):
            sessions.append(row["session_date"])
            decisions.append({"counts": {k: int(row.get(k) or 0) for k in SOFT_TARGET_CLASSES},
                              "targetable": [[i, p] for i, p in zip(row["top_ids"] or [], row["top_scores"] or [])]})
            inputs.append({"n": row["n"], "with_fragility": row["with_fragility"], "p_crisis": row["p_crisis"]})
        return sessions, decisions, inputs
