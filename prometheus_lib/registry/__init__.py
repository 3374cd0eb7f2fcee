"""The model registry: every trained model is a ``models`` row plus a checksummed artefact file.

A model's artefact (a LightGBM model string, a torch state dict, ...) is written atomically
under ``<root>/<engine>/<model id>.<ext>`` (``root`` is ``<PROMETHEUS_HOME>/models`` by default)
and its row records the id, kind, engine, training hash, training range and cut, metrics, the
artefact's URI and its SHA-256. ``load`` re-reads the file and refuses one whose checksum
differs (``ModelIntegrityError`` naming the file): a model is used exactly as it was trained.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import polars as pl

from prometheus_lib.errors import PrometheusError
from prometheus_lib.storage.catalog import get_table

if TYPE_CHECKING:
    from prometheus_lib.storage.warehouse import Warehouse

__all__ = ["ModelEntry", "ModelIntegrityError", "ModelRegistry"]


class ModelIntegrityError(PrometheusError, RuntimeError):
    """A model's artefact is missing or does not match its recorded checksum."""


@dataclass(frozen=True)
class ModelEntry:
    """One ``models`` row."""

    model_id: str
    model_type: str
    engine_name: str
    version: str
    train_start: date | None
    train_end: date | None
    training_cut: date | None
    config_hash: str | None
    metrics: dict
    artifact_uri: str | None = None
    artifact_sha256: str | None = None
    trained_at: datetime | None = None

    def row(self) -> dict:
        return {
            "model_id": self.model_id, "model_type": self.model_type, "engine_name": self.engine_name,
            "version": self.version,
            "trained_at": self.trained_at or datetime.now(timezone.utc).replace(microsecond=0),
            "train_start": self.train_start, "train_end": self.train_end, "artifact_uri": self.artifact_uri,
            "config_hash": self.config_hash, "metrics_json": json.dumps(self.metrics, sort_keys=True, default=str),
            "training_cut": self.training_cut, "artifact_sha256": self.artifact_sha256,
        }


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


class ModelRegistry:
    """Artefacts under ``root`` and rows in the warehouse's ``models`` table."""

    def __init__(self, root: str | Path, warehouse: Warehouse) -> None:
        self.root = Path(root)
        self.warehouse = warehouse

    def path_of(self, engine_name: str, model_id: str, ext: str) -> Path:
        return self.root / _safe(engine_name) / f"{_safe(model_id)}.{ext}"

    def save_artifact(self, engine_name: str, model_id: str, payload: bytes, ext: str = "bin") -> tuple[str, str]:
        """Write ``payload`` atomically; return ``(uri, sha256)``."""
        path = self.path_of(engine_name, model_id, ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.resolve().as_uri(), hashlib.sha256(payload).hexdigest()

    @staticmethod
    def load_artifact(uri: str, sha256: str | None) -> bytes:
        """The artefact's bytes; raises ``ModelIntegrityError`` if missing or its checksum differs."""
        path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
        if not path.is_file():
            raise ModelIntegrityError(f"model artefact {path} is missing")
        payload = path.read_bytes()
        digest = hashlib.sha256(payload).hexdigest()
        if sha256 is None or digest != sha256:
            raise ModelIntegrityError(f"model artefact {path} has SHA-256 {digest}, the registry recorded {sha256}: "
                                      "it changed after training; delete its models row to retrain")
        return payload

    def entry(self, model_id: str) -> ModelEntry | None:
        t = get_table("models")
        rows = self.warehouse.query(f"SELECT * FROM {t.qualified_name} WHERE model_id = {self.warehouse.placeholder}",
                                    [model_id])
        if rows.height == 0:
            return None
        r = rows.row(0, named=True)
        raw = r["metrics_json"]  # PostgreSQL's JSONB arrives as a dict, DuckDB's JSON as text
        metrics = raw if isinstance(raw, dict) else (json.loads(raw) if raw else {})
        return ModelEntry(model_id=r["model_id"], model_type=r["model_type"], engine_name=r["engine_name"],
                          version=r["version"], train_start=r["train_start"], train_end=r["train_end"],
                          training_cut=r.get("training_cut"), config_hash=r["config_hash"],
                          metrics=metrics,
                          artifact_uri=r["artifact_uri"], artifact_sha256=r.get("artifact_sha256"),
                          trained_at=r["trained_at"])

    def upsert(self, entries: list[ModelEntry]) -> int:
        """Insert or replace the rows of ``entries``."""
        if not entries:
            return 0
        frame = pl.DataFrame([e.row() for e in entries], schema=get_table("models").polars_schema)
        return self.warehouse.upsert_rows("models", frame).rows_written
