"""Data-quality rules of the market-state engines' outputs: probabilities, values, coverage."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from prometheus_lib.data.quality import CheckOutcome, Severity
from prometheus_lib.market_state.checks import check_coverage, check_probabilities, check_values, combine

D1, D2, D3, D4 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)
NAMES = ("calm", "volatile", "crisis")
KEY = ("market_id", "session_date")


def regimes(rows: list[tuple[date, dict | None, str | None]]) -> pl.DataFrame:
    """A regimes-like frame: (session, probabilities, label) per row."""
    return pl.DataFrame({
        "market_id": ["US_EQ"] * len(rows),
        "session_date": [r[0] for r in rows],
        "probabilities_json": [None if r[1] is None else json.dumps(r[1]) for r in rows],
        "state": [r[2] for r in rows],
    }, schema={"market_id": pl.String, "session_date": pl.Date, "probabilities_json": pl.String, "state": pl.String})


GOOD = {"calm": 0.7, "volatile": 0.2, "crisis": 0.1}


# ------------------------------------------------------------------ check_probabilities
def test_check_probabilities_with_well_formed_rows_passes() -> None:
    # Arrange
    frame = regimes([(D1, GOOD, "calm"), (D2, {"calm": 0.0, "volatile": 0.0, "crisis": 1.0}, "crisis"),
                     (D3, {"calm": 0.1, "volatile": 0.6, "crisis": 0.3}, "volatile")])

    # Act
    outcome = check_probabilities(frame, KEY, "probabilities_json", NAMES, "state")

    # Assert
    assert outcome.passed and outcome.severity is Severity.ERROR
    assert outcome.metadata["rows"] == 3
    assert outcome.metadata["examples"] == []
    assert all(outcome.metadata[k] == 0 for k in ("missing_or_unknown_names", "out_of_range",
                                                  "not_summing_to_one", "label_not_argmax"))


def test_check_probabilities_accepts_any_maximiser_of_a_tie_as_the_label() -> None:
    # Arrange
    tie = {"calm": 0.4, "volatile": 0.4, "crisis": 0.2}
    frame = regimes([(D1, tie, "calm"), (D2, tie, "volatile")])

    # Act
    outcome = check_probabilities(frame, KEY, "probabilities_json", NAMES, "state")

    # Assert
    assert outcome.passed, outcome.description


def test_check_probabilities_counts_each_kind_of_malformed_row() -> None:
    # Arrange
    frame = regimes([
        (D1, {"calm": 0.8, "volatile": 0.2}, "calm"),                           # a name missing
        (D2, {"calm": 1.2, "volatile": -0.1, "crisis": -0.1}, "calm"),          # a value above 1
        (D3, {"calm": 0.69, "volatile": 0.2, "crisis": 0.1}, "calm"),            # sums to 0.99
        (D4, GOOD, "volatile"),                                                  # label not the argmax
        (date(2024, 1, 8), {**GOOD, "other": 0.0}, "calm"),                     # an unknown name
        (date(2024, 1, 9), None, "calm"),                                        # no distribution
        (date(2024, 1, 10), GOOD, "calm"),                                       # fine
    ])

    # Act
    outcome = check_probabilities(frame, KEY, "probabilities_json", NAMES, "state")

    # Assert
    assert not outcome.passed and outcome.severity is Severity.ERROR
    m = outcome.metadata
    assert (m["missing_or_unknown_names"], m["out_of_range"], m["not_summing_to_one"], m["label_not_argmax"]) == (3, 1, 1, 1)
    assert m["rows"] == 7
    assert [e["problem"] for e in m["examples"]] == ["missing_or_unknown_names", "out_of_range", "not_summing_to_one",
                                                     "label_not_argmax", "missing_or_unknown_names"]
    assert m["examples"][0]["session_date"] == "2024-01-02"
    assert "label_not_argmax=1" in outcome.description and "out_of_range=1" in outcome.description


def test_check_probabilities_without_label_column_ignores_the_label() -> None:
    # Arrange
    frame = regimes([(D1, GOOD, "crisis")])

    # Act
    outcome = check_probabilities(frame, KEY, "probabilities_json", NAMES)

    # Assert
    assert outcome.passed


def test_check_probabilities_tolerates_rounding_within_1e9_only() -> None:
    # Arrange
    close = regimes([(D1, {"calm": 0.7 + 5e-10, "volatile": 0.2, "crisis": 0.1}, "calm")])
    off = regimes([(D1, {"calm": 0.7 + 5e-9, "volatile": 0.2, "crisis": 0.1}, "calm")])

    # Act
    ok, bad = (check_probabilities(f, KEY, "probabilities_json", NAMES, "state") for f in (close, off))

    # Assert
    assert ok.passed
    assert not bad.passed and bad.metadata["not_summing_to_one"] == 1


# ------------------------------------------------------------------ check_values
def vectors(overall: list[float | None], components: list[str | None], ids: list[str] | None = None) -> pl.DataFrame:
    n = len(overall)
    return pl.DataFrame({
        "entity_id": ids or [f"US_EQ:I{i}" for i in range(n)], "session_date": [D1] * n,
        "overall": overall, "components_json": components,
    }, schema={"entity_id": pl.String, "session_date": pl.Date, "overall": pl.Float64, "components_json": pl.String})


VKEY = ("entity_id", "session_date")
COMPONENTS = json.dumps({"vol": 0.5, "liquidity": 1.0, "name": "text is skipped"})


def test_check_values_with_finite_values_in_range_passes() -> None:
    # Arrange
    frame = vectors([0.0, 0.5, 1.0], [COMPONENTS] * 3)

    # Act
    outcome = check_values(frame, VKEY, {"overall": (0.0, 1.0)}, {"components_json": (0.0, 1.0)})

    # Assert
    assert outcome.passed and outcome.severity is Severity.ERROR
    assert outcome.metadata["duplicate_keys"] == 0
    assert outcome.metadata["ranges"] == {"overall": [0.0, 1.0], "components_json": [0.0, 1.0]}


def test_check_values_counts_null_nan_and_out_of_range_values() -> None:
    # Arrange
    frame = vectors([None, float("nan"), 1.5, -0.1, 0.5], [COMPONENTS] * 5)

    # Act
    outcome = check_values(frame, VKEY, {"overall": (0.0, 1.0)})

    # Assert
    assert not outcome.passed
    assert outcome.metadata["overall_null_nan_or_out_of_range"] == 4
    assert "overall_null_nan_or_out_of_range=4" in outcome.description
    assert len(outcome.metadata["examples"]) == 4


def test_check_values_counts_duplicate_keys() -> None:
    # Arrange
    frame = vectors([0.1, 0.2, 0.3], [COMPONENTS] * 3, ids=["US_EQ:A", "US_EQ:A", "US_EQ:B"])

    # Act
    outcome = check_values(frame, VKEY, {"overall": (0.0, 1.0)})

    # Assert
    assert not outcome.passed
    assert outcome.metadata["duplicate_keys"] == 2          # both rows of the repeated key
    assert outcome.metadata["overall_null_nan_or_out_of_range"] == 0


@pytest.mark.parametrize("components", [
    json.dumps({"vol": 1.5, "liquidity": 0.5}),   # above the range
    json.dumps({"vol": None, "liquidity": 0.5}),  # null component
    '{"vol": NaN, "liquidity": 0.5}',             # NaN component (as Python's json writes it)
    None,                                         # no JSON at all
])
def test_check_values_counts_json_components_null_nan_or_out_of_range(components: str | None) -> None:
    # Arrange
    frame = vectors([0.5, 0.5], [COMPONENTS, components])

    # Act
    outcome = check_values(frame, VKEY, {"overall": (0.0, 1.0)}, {"components_json": (0.0, 1.0)})

    # Assert
    assert not outcome.passed
    assert outcome.metadata["components_json_null_nan_or_out_of_range"] == 1
    assert outcome.metadata["overall_null_nan_or_out_of_range"] == 0


def test_check_values_on_an_empty_frame_passes() -> None:
    # Arrange
    frame = vectors([], [])

    # Act
    outcome = check_values(frame, VKEY, {"overall": (0.0, 1.0)}, {"components_json": (0.0, 1.0)})

    # Assert
    assert outcome.passed


# ------------------------------------------------------------------ check_coverage
def priced(sessions: list[date], n: int = 5) -> pl.DataFrame:
    return pl.DataFrame({"instrument_id": [f"US_EQ:I{i}" for _ in sessions for i in range(n)],
                         "session_date": [s for s in sessions for _ in range(n)]})


def rows_of(per_session: dict[date, int]) -> pl.DataFrame:
    return pl.DataFrame({"entity_id": [f"US_EQ:I{i}" for s, k in per_session.items() for i in range(k)],
                         "session_date": [s for s, k in per_session.items() for _ in range(k)]},
                        schema={"entity_id": pl.String, "session_date": pl.Date})


def test_check_coverage_with_every_priced_session_covered_passes() -> None:
    # Arrange
    rows = rows_of({D1: 5, D2: 4, D3: 5, D4: 4})      # 80%: at the threshold

    # Act
    outcome = check_coverage(rows, priced([D1, D2, D3, D4]), D1)

    # Assert
    assert outcome.passed and outcome.severity is Severity.WARN
    assert (outcome.metadata["sessions_without_rows"], outcome.metadata["sessions_below_min_share"]) == (0, 0)


def test_check_coverage_counts_sessions_without_rows_from_the_first_output_on_only() -> None:
    # Arrange: D1 is before the first output (warm-up), D3 has no row
    rows = rows_of({D2: 5, D4: 5})

    # Act
    outcome = check_coverage(rows, priced([D1, D2, D3, D4]), D2)

    # Assert
    assert not outcome.passed and outcome.severity is Severity.WARN
    assert outcome.metadata["sessions_without_rows"] == 1
    assert outcome.metadata["examples"] == [{"session_date": "2024-01-04"}]
    assert outcome.metadata["first_output"] == "2024-01-03"
    assert "sessions_without_rows=1" in outcome.description


def test_check_coverage_without_any_output_yet_counts_nothing_as_missing() -> None:
    # Arrange: the engine has written nothing for the market (still warming up)
    rows = rows_of({})

    # Act
    outcome = check_coverage(rows, priced([D1, D2]), None)

    # Assert
    assert outcome.passed
    assert outcome.metadata["sessions_without_rows"] == 0
    assert outcome.metadata["first_output"] is None


def test_check_coverage_counts_sessions_covering_less_than_min_share_of_priced_instruments() -> None:
    # Arrange
    rows = rows_of({D1: 5, D2: 3, D3: 1})

    # Act
    default = check_coverage(rows, priced([D1, D2, D3]), D1)
    lenient = check_coverage(rows, priced([D1, D2, D3]), D1, min_share=0.2)

    # Assert
    assert not default.passed
    assert default.metadata["sessions_below_min_share"] == 2
    assert default.metadata["sessions_without_rows"] == 0
    assert [e["session_date"] for e in default.metadata["examples"]] == ["2024-01-03", "2024-01-04"]
    assert lenient.passed


def test_check_coverage_counts_distinct_entities_not_rows() -> None:
    # Arrange: 5 rows at D1 but of one instrument
    rows = pl.DataFrame({"entity_id": ["US_EQ:I0"] * 5, "session_date": [D1] * 5})

    # Act
    outcome = check_coverage(rows, priced([D1]), D1)

    # Assert
    assert outcome.metadata["sessions_below_min_share"] == 1


def test_check_coverage_of_a_per_session_table_ignores_the_share() -> None:
    # Arrange: one row per session (a regimes table), no entity column
    rows = pl.DataFrame({"session_date": [D1, D2, D4]})

    # Act
    outcome = check_coverage(rows, priced([D1, D2, D3, D4]), D1, entity_column=None)

    # Assert
    assert outcome.metadata["sessions_without_rows"] == 1
    assert outcome.metadata["sessions_below_min_share"] == 0
    assert not outcome.passed


# ------------------------------------------------------------------ combine
def test_combine_of_passing_outcomes_passes_with_the_most_severe_severity() -> None:
    # Arrange
    a = CheckOutcome(True, Severity.WARN, "a ok", {"x": 1, "examples": []})
    b = CheckOutcome(True, Severity.ERROR, "b ok", {"y": 2, "examples": []})

    # Act
    outcome = combine(a, b)

    # Assert
    assert outcome.passed and outcome.severity is Severity.ERROR
    assert outcome.description == "a ok; b ok"
    assert outcome.metadata == {"x": 1, "y": 2, "examples": []}


def test_combine_with_a_failure_fails_describing_only_the_failures_with_their_severity() -> None:
    # Arrange
    ok = CheckOutcome(True, Severity.ERROR, "values ok", {"duplicate_keys": 0, "examples": []})
    warn = CheckOutcome(False, Severity.WARN, "thin coverage", {"sessions_without_rows": 2,
                                                                "examples": [{"session_date": "2024-01-02"}]})

    # Act
    outcome = combine(ok, warn)

    # Assert
    assert not outcome.passed
    assert outcome.severity is Severity.WARN
    assert outcome.description == "thin coverage"
    assert outcome.metadata["duplicate_keys"] == 0 and outcome.metadata["sessions_without_rows"] == 2
    assert outcome.metadata["examples"] == [{"session_date": "2024-01-02"}]


def test_combine_with_an_error_failure_is_an_error_and_caps_examples() -> None:
    # Arrange
    many = [{"i": str(i)} for i in range(8)]
    err = CheckOutcome(False, Severity.ERROR, "bad values", {"examples": many})
    warn = CheckOutcome(False, Severity.WARN, "thin", {"examples": many})

    # Act
    outcome = combine(warn, err)

    # Assert
    assert not outcome.passed and outcome.severity is Severity.ERROR
    assert outcome.description == "thin; bad values"
    assert len(outcome.metadata["examples"]) == 10
