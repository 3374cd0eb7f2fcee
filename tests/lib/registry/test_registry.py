"""The model registry (prometheus_lib/registry) and the assessment's ``RegistryModelStore``.

On a real warehouse (DuckDB, and PostgreSQL for the row round trip): an artefact is written
atomically with its SHA-256, a ``models`` row round-trips every field (the training cut and the
checksum included) and is replaced by an upsert, and loading refuses an artefact that changed or
went missing, naming the file. The store returns a record equal to the one it was given; an
engine run that trained into the registry is followed by a run through a fresh store on the
reopened warehouse that trains nothing and gives the same output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from market_state_data import market_config, synthetic_panel
from polars.testing import assert_frame_equal

from prometheus_lib.assessment.engine import AssessmentEngine, AssessmentResult
from prometheus_lib.assessment.ml.features import AssessmentInputs
from prometheus_lib.assessment.store import ENGINE_NAME, RegistryModelStore
from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.registry import ModelEntry, ModelIntegrityError, ModelRegistry
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.factory import open_warehouse
from prometheus_lib.storage.warehouse import Warehouse

pytestmark = pytest.mark.xdist_group("assessment_us")

MARKET = market_config("US", n_instruments=40, history_start=date(2015, 1, 2))
END = date(2018, 12, 31)
START = date(2017, 6, 1)
RUN_END = date(2017, 12, 29)
CONFIG = AssessmentConfig(min_train_sessions=252, refit_every_sessions=126, train_window_sessions=378, cv_folds=3,
                          num_leaves_grid=(7,), n_estimators=30, calibration_min_rows=100, num_threads=1)
MODELS = get_table("models").qualified_name
MODEL_ID = "assessment:S:0123456789abcdef:2017-01-03"


def entry(sha: str | None = None, uri: str | None = None, metrics: dict | None = None) -> ModelEntry:
    return ModelEntry(
        model_id=MODEL_ID, model_type="lightgbm_regressor", engine_name=ENGINE_NAME, version="0123456789abcdef",
        train_start=date(2015, 7, 1), train_end=date(2016, 12, 2), training_cut=date(2017, 1, 3),
        config_hash="0123456789abcdef", metrics=metrics if metrics is not None else {"oos": {"sharpe": 0.7}, "n": 3},
        artifact_uri=uri, artifact_sha256=sha, trained_at=datetime(2017, 1, 3, 22, 5, 1, tzinfo=timezone.utc))




@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=[pytest.mark.postgres])])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """A fresh, migrated warehouse: a DuckDB file, or a new PostgreSQL database (never skipped)."""
    if request.param == "duckdb":
        wh = open_warehouse("duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb"))
    else:
        wh = open_warehouse("postgres", postgres_url=request.getfixturevalue("pg_url"))
    yield wh
    wh.close()


# ------------------------------------------------------------------ artefacts and rows
def test_save_artifact_writes_the_payload_atomically_and_returns_its_uri_and_sha256(tmp_path: Path) -> None:
    # Arrange
    registry = ModelRegistry(tmp_path / "models", warehouse=None)
    payload = b"tree\nversion=v4\n" * 100

    # Act
    uri, sha = registry.save_artifact(ENGINE_NAME, MODEL_ID, payload, "txt")

    # Assert
    path = registry.path_of(ENGINE_NAME, MODEL_ID, "txt")
    assert path == tmp_path / "models" / "assessment" / "assessment_S_0123456789abcdef_2017-01-03.txt"
    assert uri == path.resolve().as_uri()
    assert path.read_bytes() == payload and sha == hashlib.sha256(payload).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind
    assert registry.load_artifact(uri, sha) == payload


def test_a_models_row_round_trips_every_field_and_an_upsert_replaces_it(warehouse: Warehouse, tmp_path: Path) -> None:
    # Arrange
    registry = ModelRegistry(tmp_path / "models", warehouse)
    uri, sha = registry.save_artifact(ENGINE_NAME, MODEL_ID, b"model", "txt")
    original = entry(sha, uri)

    # Act
    written = registry.upsert([original])
    read = registry.entry(MODEL_ID)
    registry.upsert([entry(sha, uri, metrics={"promoted": True})])
    replaced = registry.entry(MODEL_ID)

    # Assert
    assert written == 1
    assert read == original
    assert read.training_cut == date(2017, 1, 3) and read.artifact_sha256 == sha and read.artifact_uri == uri
    assert replaced.metrics == {"promoted": True}
    assert warehouse.query(f"SELECT COUNT(*) AS n FROM {MODELS}")["n"].to_list() == [1]
    assert registry.entry("assessment:S:0123456789abcdef:2099-01-01") is None
    assert registry.upsert([]) == 0


def test_load_artifact_refuses_a_modified_file_naming_it(tmp_path: Path) -> None:
    # Arrange
    registry = ModelRegistry(tmp_path / "models", warehouse=None)
    uri, sha = registry.save_artifact(ENGINE_NAME, MODEL_ID, b"num_leaves=7", "txt")
    path = registry.path_of(ENGINE_NAME, MODEL_ID, "txt")
    path.write_bytes(b"num_leaves=8")

    # Act / Assert
    with pytest.raises(ModelIntegrityError, match="changed after training") as info:
        registry.load_artifact(uri, sha)
    assert str(path) in str(info.value) and sha in str(info.value)


def test_load_artifact_refuses_a_missing_file_or_one_without_a_recorded_checksum(tmp_path: Path) -> None:
    # Arrange
    registry = ModelRegistry(tmp_path / "models", warehouse=None)
    uri, sha = registry.save_artifact(ENGINE_NAME, MODEL_ID, b"num_leaves=7", "txt")
    path = registry.path_of(ENGINE_NAME, MODEL_ID, "txt")

    # Act / Assert
    with pytest.raises(ModelIntegrityError, match="the registry recorded None"):
        registry.load_artifact(uri, None)
    path.unlink()
    with pytest.raises(ModelIntegrityError, match="is missing") as info:
        registry.load_artifact(uri, sha)
    assert str(path) in str(info.value)


def test_an_artifact_under_a_folder_with_a_space_loads(tmp_path: Path) -> None:
    # Arrange
    registry = ModelRegistry(tmp_path / "prometheus home" / "models", warehouse=None)
    uri, sha = registry.save_artifact(ENGINE_NAME, MODEL_ID, b"num_leaves=7", "txt")

    # Act / Assert
    assert registry.load_artifact(uri, sha) == b"num_leaves=7"


# ------------------------------------------------------------------ the assessment's store
@pytest.fixture(scope="module")
def inputs() -> AssessmentInputs:
    panel, market = synthetic_panel(MARKET, END)
    return AssessmentInputs(panel, market.earnings_calls(panel.session_dates()))  # no market-state arrays


@pytest.fixture(scope="module")
def trained(inputs: AssessmentInputs, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[AssessmentResult, list[str], dict[str, str]]:
    """A run that trained into a registry on a DuckDB warehouse, closed afterwards.

    Returns the result, the store's trained ids and the warehouse/artefact locations.
    """
    folder = tmp_path_factory.mktemp("registry")
    where = {"duckdb_path": str(folder / "warehouse.duckdb"), "root": str(folder / "models")}
    with open_warehouse("duckdb", duckdb_path=where["duckdb_path"]) as wh:
        store = RegistryModelStore(ModelRegistry(where["root"], wh), CONFIG)
        result = AssessmentEngine(CONFIG, "S", store).run(inputs, START, RUN_END)
    return result, list(store.trained), where


def test_the_store_returns_a_record_equal_to_the_one_it_was_given(
        trained: tuple[AssessmentResult, list[str], dict[str, str]], warehouse: Warehouse, tmp_path: Path) -> None:
    # Arrange
    record = trained[0].records[-1]
    store = RegistryModelStore(ModelRegistry(tmp_path / "models", warehouse), CONFIG)

    # Act
    missing = store.get(record.model_id)
    store.put(record)
    loaded = RegistryModelStore(ModelRegistry(tmp_path / "models", warehouse), CONFIG).get(record.model_id)

    # Assert
    assert missing is None
    assert loaded is not None and loaded is not record
    assert loaded.model_text == record.model_text
    assert loaded.metadata() == record.metadata()
    row = ModelRegistry(tmp_path / "models", warehouse).entry(record.model_id)
    assert row.training_cut == record.cut and row.train_end == record.label_end
    assert row.metrics["promoted"] is record.gates(CONFIG)[0]
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (50, len(record.features)))
    assert np.array_equal(loaded.predict(x), record.predict(x))  # the loaded model predicts the same


def test_the_store_refuses_a_model_whose_artefact_changed(
        trained: tuple[AssessmentResult, list[str], dict[str, str]], tmp_path: Path) -> None:
    # Arrange
    record = trained[0].records[0]
    with open_warehouse("duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb")) as wh:
        registry = ModelRegistry(tmp_path / "models", wh)
        RegistryModelStore(registry, CONFIG).put(record)
        path = registry.path_of(ENGINE_NAME, record.model_id, "txt")
        tampered = record.model_text.replace("leaf_value=", "leaf_value=1", 1)
        assert tampered != record.model_text
        path.write_text(tampered)

        # Act / Assert
        with pytest.raises(ModelIntegrityError, match="changed after training") as info:
            RegistryModelStore(registry, CONFIG).get(record.model_id)
    assert str(path) in str(info.value)


def test_a_second_run_through_a_fresh_store_on_the_reopened_warehouse_trains_nothing(
        inputs: AssessmentInputs, trained: tuple[AssessmentResult, list[str], dict[str, str]]) -> None:
    # Arrange
    first, first_trained, where = trained

    # Act
    with open_warehouse("duckdb", duckdb_path=where["duckdb_path"]) as wh:
        store = RegistryModelStore(ModelRegistry(where["root"], wh), CONFIG)
        second = AssessmentEngine(CONFIG, "S", store).run(inputs, START, RUN_END)
        rows = wh.query(f"SELECT model_id FROM {MODELS} ORDER BY model_id")

    # Assert
    assert first_trained == first.trained == [r.model_id for r in first.records] and len(first_trained) == 4
    assert second.trained == [] and store.trained == []
    assert rows["model_id"].to_list() == sorted(first_trained)
    assert [r.model_text for r in second.records] == [r.model_text for r in first.records]
    assert_frame_equal(second.signals, first.signals, check_exact=True)
    assert_frame_equal(second.scores, first.scores, check_exact=True)
    assert second.decisions == first.decisions
    assert set(store.artifacts) == set(first_trained)
