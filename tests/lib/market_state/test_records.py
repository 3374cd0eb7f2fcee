"""Bookkeeping rows of the market-state engines: ``engine_decisions`` and ``engine_configs`` frames."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from prometheus_lib.config.models import FragilityConfig, RegimeConfig
from prometheus_lib.market_state import SHARED_MODE, decision_frame, engine_config_frame, engine_run_id
from prometheus_lib.market_state.records import json_safe
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.warehouse import conform

SESSIONS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]


# ------------------------------------------------------------------ decision_frame
def test_decision_frame_names_each_decision_by_engine_market_and_session() -> None:
    # Arrange
    decisions = [{"state": "calm"}, {"state": "volatile"}, {"state": "crisis"}]

    # Act
    frame = decision_frame("regime", "US_EQ", "abcd1234abcd1234", SESSIONS, decisions)

    # Assert
    assert frame["decision_id"].to_list() == ["regime:US_EQ:2024-01-02", "regime:US_EQ:2024-01-03",
                                              "regime:US_EQ:2024-01-04"]
    assert frame["session_date"].to_list() == SESSIONS
    assert set(frame["run_id"]) == {"regime/US_EQ"} == {engine_run_id("regime", "US_EQ")}
    assert set(frame["mode"]) == {SHARED_MODE} == {"SHARED"}
    assert set(frame["engine_name"]) == {"regime"} and set(frame["market_id"]) == {"US_EQ"}
    assert set(frame["config_hash"]) == {"abcd1234abcd1234"}
    assert frame["strategy_id"].null_count() == 3
    assert [json.loads(d) for d in frame["decision_json"]] == decisions


def test_decision_frame_has_the_engine_decisions_schema_and_a_utc_creation_time() -> None:
    # Arrange
    before = datetime.now(timezone.utc).replace(microsecond=0)

    # Act
    frame = decision_frame("fragility", "EU_EQ", "h", SESSIONS, [{}] * 3, [{"n": 1}] * 3)

    # Assert
    assert frame.schema == get_table("engine_decisions").polars_schema
    assert conform(get_table("engine_decisions"), frame).equals(frame)   # writable as is
    created = frame["created_at"].to_list()
    assert len(set(created)) == 1
    assert before <= created[0] <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert created[0].microsecond == 0


def test_decision_frame_writes_canonical_json_with_sorted_keys_and_no_spaces() -> None:
    # Arrange
    decision = {"top": ["B", "A"], "counts": {"z": 2, "a": 1}, "state": "calm"}
    inputs = {"vol": 0.25, "as_of": "2024-01-02"}

    # Act
    frame = decision_frame("stability", "US_EQ", "h", SESSIONS[:1], [decision], [inputs])

    # Assert
    assert frame["decision_json"][0] == '{"counts":{"a":1,"z":2},"state":"calm","top":["B","A"]}'
    assert frame["inputs_json"][0] == '{"as_of":"2024-01-02","vol":0.25}'


def test_decision_frame_writes_nan_and_infinities_as_null_and_numpy_values_as_json_numbers() -> None:
    # Arrange
    decision = {"p": np.float64(0.75), "n": np.int64(12), "k": np.int32(-3), "h": np.float32(0.5), "nan": float("nan"),
                "inf": np.inf, "v": np.array([1.5, np.nan]), "flag": np.bool_(True), "t": (1, 2)}

    # Act
    frame = decision_frame("regime", "US_EQ", "h", SESSIONS[:1], [decision])

    # Assert
    assert json.loads(frame["decision_json"][0]) == {
        "p": 0.75, "n": 12, "k": -3, "h": 0.5, "nan": None, "inf": None, "v": [1.5, None], "flag": True, "t": [1, 2]}
    assert "NaN" not in frame["decision_json"][0] and "Infinity" not in frame["decision_json"][0]


def test_decision_frame_without_inputs_leaves_inputs_json_null() -> None:
    # Arrange / Act
    frame = decision_frame("regime", "US_EQ", "h", SESSIONS, [{}] * 3)

    # Assert
    assert frame["inputs_json"].null_count() == 3
    assert frame["decision_json"].to_list() == ["{}"] * 3


def test_decision_frame_with_no_sessions_is_an_empty_frame_of_the_schema() -> None:
    # Arrange / Act
    frame = decision_frame("regime", "US_EQ", "h", [], [], [])

    # Assert
    assert frame.height == 0
    assert frame.schema == get_table("engine_decisions").polars_schema


@pytest.mark.parametrize(("decisions", "inputs"), [
    ([{}] * 2, None),              # one decision short
    ([{}] * 4, None),              # one too many
    ([{}] * 3, [{}] * 2),          # inputs short
])
def test_decision_frame_with_lengths_not_matching_the_sessions_raises_value_error(decisions, inputs) -> None:
    # Arrange / Act / Assert
    with pytest.raises(ValueError, match="same length"):
        decision_frame("regime", "US_EQ", "h", SESSIONS, decisions, inputs)


# ------------------------------------------------------------------ engine_config_frame
@pytest.mark.parametrize("config", [RegimeConfig(), FragilityConfig(drawdown_threshold=1 / 3)],
                         ids=["regime-defaults", "fragility-long-float"])
def test_engine_config_frame_is_one_row_keyed_by_the_config_hash_whose_json_round_trips(config) -> None:
    # Arrange
    model = type(config)

    # Act
    frame = engine_config_frame("engine", config, "what it does")

    # Assert
    assert frame.schema == get_table("engine_configs").polars_schema
    assert frame.height == 1
    row = frame.row(0, named=True)
    assert (row["engine_name"], row["config_hash"], row["description"]) == ("engine", config.config_hash(), "what it does")
    restored = model.model_validate(json.loads(row["config_json"]))
    assert restored == config
    assert restored.config_hash() == row["config_hash"]
    assert json.loads(row["config_json"]) == config.model_dump(mode="json")
    assert row["created_at"].tzinfo is not None and row["created_at"].microsecond == 0


def test_engine_config_frame_of_different_configs_differs_in_hash_and_json() -> None:
    # Arrange
    a, b = RegimeConfig(), RegimeConfig(refit_every_sessions=21)

    # Act
    fa, fb = engine_config_frame("regime", a, "d"), engine_config_frame("regime", b, "d")

    # Assert
    assert fa["config_hash"][0] != fb["config_hash"][0]
    assert json.loads(fb["config_json"][0])["refit_every_sessions"] == 21
    assert json.loads(fa["config_json"][0])["refit_every_sessions"] == 63


# ------------------------------------------------------------------ json_safe
def test_json_safe_rounds_floats_to_twelve_significant_digits_and_nulls_non_finite_ones() -> None:
    # Arrange
    values = [1 / 3, 123456.789012345678, 1e-20 / 3, float("nan"), float("-inf"), np.float64(np.inf), 2.5]

    # Act
    safe = json_safe(values)

    # Assert
    assert safe == [0.333333333333, 123456.789012, 3.33333333333e-21, None, None, None, 2.5]
    assert all(type(v) is float for v in safe if v is not None)


def test_json_safe_turns_numpy_values_and_containers_into_plain_python() -> None:
    # Arrange
    value = {1: np.int64(7), "a": (np.float32(0.25), [np.nan]), "m": np.array([[1, 2], [3, 4]]), "s": "x",
             "b": True, "none": None}

    # Act
    safe = json_safe(value)

    # Assert
    assert safe == {"1": 7, "a": [0.25, [None]], "m": [[1, 2], [3, 4]], "s": "x", "b": True, "none": None}
    assert type(safe["1"]) is int and type(safe["m"][0][0]) is int
    assert safe["b"] is True
    json.dumps(safe, allow_nan=False)   # serialisable, strict JSON


def test_json_safe_leaves_integers_exact() -> None:
    # Arrange
    big = 2**60 + 1

    # Act / Assert
    assert json_safe(big) == big and json_safe(np.int64(big)) == big
    assert not math.isnan(json_safe(np.float64(0.0)))
