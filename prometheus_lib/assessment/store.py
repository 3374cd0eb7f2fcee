"""The assessment models in the registry, and their ``walk_forward_results`` rows.

``RegistryModelStore`` is the ``ModelStore`` of a real run: a model is looked up by id (training
hash, strategy, cut) in the ``models`` table and loaded from its artefact after the checksum is
verified; a newly trained one is written (artefact, then row) as soon as it is fitted, so a run
that fails later keeps it. ``model_entries`` gives every used model's row with its promotion
under the current gates, ``walk_forward_frame`` its CV folds.
"""

from __future__ import annotations

import json

import polars as pl

from prometheus_lib.assessment.ml.walk_forward import ModelRecord
from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.registry import ModelEntry, ModelRegistry
from prometheus_lib.storage.catalog import get_table

__all__ = ["ENGINE_NAME", "RegistryModelStore", "model_entries", "walk_forward_frame"]

ENGINE_NAME = "assessment"
MODEL_TYPE = "lightgbm_regressor"


def _entry(record: ModelRecord, uri: str | None, sha: str | None, promotion: tuple[bool, dict, list[str]]) -> ModelEntry:
    passed, gates, reasons = promotion
    return ModelEntry(
        model_id=record.model_id, model_type=MODEL_TYPE, engine_name=ENGINE_NAME, version=record.training_hash,
        train_start=record.train_start, train_end=record.label_end, training_cut=record.cut,
        config_hash=record.training_hash,
        metrics={"record": record.metadata(), "promoted": passed, "gates": gates, "gate_reasons": reasons,
                 "oos": record.oos},
        artifact_uri=uri, artifact_sha256=sha, trained_at=record.trained_at)


class RegistryModelStore:
    """A ``ModelStore`` over a ``ModelRegistry`` (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, config: AssessmentConfig) -> None:
        self.registry = registry
        self.config = config
        self.artifacts: dict[str, tuple[str, str]] = {}
        self.trained: list[str] = []

    def get(self, model_id: str) -> ModelRecord | None:
        entry = self.registry.entry(model_id)
        if entry is None or "record" not in entry.metrics:
            return None
        text = self.registry.load_artifact(entry.artifact_uri, entry.artifact_sha256).decode()
        self.artifacts[model_id] = (entry.artifact_uri, entry.artifact_sha256)
        return ModelRecord.from_metadata(entry.metrics["record"], text)

    def put(self, record: ModelRecord) -> None:
        uri, sha = self.registry.save_artifact(ENGINE_NAME, record.model_id, record.model_text.encode(), "txt")
        self.artifacts[record.model_id] = (uri, sha)
        self.registry.upsert([_entry(record, uri, sha, record.gates(self.config))])
        self.trained.append(record.model_id)

    def entries(self, records: list[ModelRecord], promotion: dict) -> list[ModelEntry]:
        return model_entries(records, promotion, self.artifacts)


def model_entries(records: list[ModelRecord], promotion: dict, artifacts: dict[str, tuple[str, str]] | None = None
                  ) -> list[ModelEntry]:
    """The ``models`` rows of ``records`` with their promotion under the current gates."""
    artifacts = artifacts or {}
    return [_entry(r, *artifacts.get(r.model_id, (None, None)), promotion[r.model_id]) for r in records]


def walk_forward_frame(records: list[ModelRecord], promotion: dict) -> pl.DataFrame:
    """``walk_forward_results``: one row per model (run id = model id) per CV fold of its chosen parameters."""
    rows = []
    for r in records:
        for f in r.folds:
            metrics = {k: f[k] for k in ("is_rank_ic", "oos_rank_ic", "oos_sharpe", "oos_hit_rate", "train_rows",
                                         "test_rows", "purged_dates", "embargoed_dates")}
            rows.append({
                "run_id": r.model_id, "fold": int(f["fold"]), "model_id": r.model_id,
                "in_sample_start": f["train_start"], "in_sample_end": f["train_end"],
                "oos_start": f["test_start"], "oos_end": f["test_end"],
                "params_json": json.dumps(r.params, sort_keys=True),
                "metrics_json": json.dumps(metrics, sort_keys=True), "promoted": bool(promotion[r.model_id][0]),
            })
    schema = get_table("walk_forward_results").polars_schema
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows).with_columns(
        [pl.col(c).str.to_date() for c in ("in_sample_start", "in_sample_end", "oos_start", "oos_end")]
    ).cast(schema).select(list(schema))
