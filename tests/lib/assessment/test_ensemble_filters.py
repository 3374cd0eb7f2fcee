"""The ensemble (vote, ml component, regime filter, Platt calibration) and the signal filters.

prometheus_lib.assessment.ensemble and .filters on hand-made arrays and a hand-made panel:
the vote renormalises over the components present, the model's prediction maps to [-1, 1] by
rank, the regime filter scales or blocks longs only, the calibration recovers a known logistic
map (and refuses too few rows or one class), and each filter (liquidity, price floor, earnings
blackout after a call and before the projected next one) excludes exactly its cells, with its
reason. The engine-level check (filtered rows kept in ``signals``, left out of
``instrument_scores``) is in test_engine.py.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from prometheus_lib.assessment.ensemble import apply_regime_filter, fit_calibration, ml_component, vote
from prometheus_lib.assessment.filters import FILTER_NAMES, QUARTER_SESSIONS, filter_reasons, signal_filters
from prometheus_lib.assessment.ml.features import call_arrays
from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.market_state.panel import MarketPanel

NAN = np.nan
WEIGHTS = {"ml": 0.5, "rsi": 0.2, "ema_cross": 0.2, "macd": 0.1}


# ------------------------------------------------------------------ vote
def test_vote_is_the_weighted_mean_over_the_components_present_at_each_cell() -> None:
    # Arrange: cell 0 has all four, cell 1 no model, cell 2 only macd, cell 3 nothing
    components = {
        "ml": np.array([[0.8, NAN, NAN, NAN]]),
        "rsi": np.array([[-1.0, 0.5, NAN, NAN]]),
        "ema_cross": np.array([[0.5, -0.5, NAN, NAN]]),
        "macd": np.array([[0.0, 1.0, -0.6, NAN]]),
    }

    # Act
    out = vote(components, WEIGHTS)

    # Assert
    assert out[0, 0] == pytest.approx((0.5 * 0.8 - 0.2 * 1.0 + 0.2 * 0.5 + 0.0) / 1.0, abs=1e-15)
    assert out[0, 1] == pytest.approx((0.2 * 0.5 - 0.2 * 0.5 + 0.1 * 1.0) / 0.5, abs=1e-15)  # renormalised over 0.5
    assert out[0, 2] == pytest.approx(-0.6, abs=1e-15)
    assert np.isnan(out[0, 3])


def test_vote_ignores_components_without_a_positive_weight_and_refuses_when_none_has_one() -> None:
    # Arrange
    components = {"ml": np.array([[1.0]]), "rsi": np.array([[-1.0]]), "other": np.array([[5.0]])}

    # Act
    out = vote(components, {"ml": 0.0, "rsi": 0.3})

    # Assert
    assert out[0, 0] == -1.0
    with pytest.raises(ValueError, match="no component has a positive weight"):
        vote(components, {"ml": 0.0})


# ------------------------------------------------------------------ ml component
def test_ml_component_maps_each_rows_prediction_ranks_onto_minus_one_to_one() -> None:
    # Arrange
    prediction = np.array([
        [0.3, 0.1, NAN, 0.2],      # ranks 2, 0, -, 1 of 3
        [0.7, NAN, NAN, NAN],      # a single prediction: no ordering, 0
        [NAN, NAN, NAN, NAN],
        [0.5, 0.5, -2.0, 9.0],     # ties by column order
    ])

    # Act
    out = ml_component(prediction)

    # Assert
    np.testing.assert_array_equal(out[0], [1.0, -1.0, NAN, 0.0])
    np.testing.assert_array_equal(out[1], [0.0, NAN, NAN, NAN])
    assert np.isnan(out[2]).all()
    np.testing.assert_allclose(out[3], [-1 / 3, 1 / 3, -1.0, 1.0], atol=1e-15)


# ------------------------------------------------------------------ regime filter
SCORE = np.array([[0.5, -0.4, 0.0],
                  [0.8, -0.2, NAN],
                  [0.6, -0.6, 0.1]])
P_CRISIS = np.array([0.25, NAN, 0.9])
CRISIS_LIKELIEST = np.array([True, False, True])


def test_regime_filter_scale_multiplies_longs_by_one_minus_p_crisis_and_leaves_shorts() -> None:
    # Act
    out = apply_regime_filter(SCORE, P_CRISIS, CRISIS_LIKELIEST, "scale")

    # Assert
    np.testing.assert_allclose(out, [[0.375, -0.4, 0.0], [0.8, -0.2, NAN], [0.06, -0.6, 0.01]], atol=1e-15)


def test_regime_filter_block_zeroes_longs_when_crisis_is_the_likeliest_state_and_leaves_shorts() -> None:
    # Act
    out = apply_regime_filter(SCORE, P_CRISIS, CRISIS_LIKELIEST, "block")

    # Assert
    np.testing.assert_array_equal(out, [[0.0, -0.4, 0.0], [0.8, -0.2, NAN], [0.0, -0.6, 0.0]])


def test_regime_filter_off_leaves_every_score_and_an_unknown_mode_is_refused() -> None:
    # Act
    out = apply_regime_filter(SCORE, P_CRISIS, CRISIS_LIKELIEST, "off")

    # Assert
    np.testing.assert_array_equal(out, SCORE)
    with pytest.raises(ValueError, match="regime_filter must be off, scale or block"):
        apply_regime_filter(SCORE, P_CRISIS, CRISIS_LIKELIEST, "halve")


# ------------------------------------------------------------------ calibration
def test_fit_calibration_recovers_a_known_logistic_map_and_the_expected_return_line() -> None:
    # Arrange: P(y > 0 | s) = 1 / (1 + exp(-(2.5 s - 0.4))); |y| ~ 0.01 + 0.03 |s|
    rng = np.random.default_rng(17)
    n = 40_000
    s = rng.uniform(-1.0, 1.0, n)
    up = rng.random(n) < 1.0 / (1.0 + np.exp(-(2.5 * s - 0.4)))
    y = np.where(up, 1.0, -1.0) * rng.uniform(0.005, 0.02, n)
    score = np.r_[s, NAN, 0.3]
    forward = np.r_[y, 0.01, NAN]  # the two half-missing pairs are left out

    # Act
    cal = fit_calibration(score, forward, min_rows=100)

    # Assert
    assert cal is not None and cal.n_rows == n
    assert cal.a == pytest.approx(2.5, abs=0.1)
    assert cal.b == pytest.approx(-0.4, abs=0.05)
    p = cal.probability(np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-(2.5 * np.array([-1.0, 0.0, 1.0]) - 0.4))), atol=0.03)
    slope, intercept = np.polyfit(s, y, 1)
    assert cal.slope == pytest.approx(slope, rel=1e-9) and cal.intercept == pytest.approx(intercept, rel=1e-9, abs=1e-12)
    fitted = 1.0 / (1.0 + np.exp(-(cal.a * s + cal.b)))
    assert cal.brier_in_sample == pytest.approx(np.mean((fitted - up) ** 2), rel=1e-9)
    assert set(cal.as_dict()) == {"a", "b", "er_intercept", "er_slope", "n_rows", "brier_in_sample"}


def test_calibration_probabilities_stay_in_zero_one_for_extreme_scores() -> None:
    # Arrange
    rng = np.random.default_rng(1)
    s = rng.uniform(-1, 1, 500)
    cal = fit_calibration(s, s + rng.normal(0, 0.3, 500), min_rows=100)

    # Act
    p = cal.probability(np.array([-1e6, -1.0, 0.0, 1.0, 1e6]))

    # Assert
    assert ((p >= 0.0) & (p <= 1.0)).all()
    assert np.all(np.diff(p) >= 0) if cal.a > 0 else np.all(np.diff(p) <= 0)


@pytest.mark.parametrize(("forward", "min_rows"), [
    pytest.param(np.linspace(-1, 1, 99), 100, id="below-min-rows"),
    pytest.param(np.r_[np.linspace(-1, 1, 99), NAN], 100, id="nan-pairs-do-not-count"),
    pytest.param(np.linspace(0.1, 1, 150), 100, id="only-positive"),
    pytest.param(-np.linspace(0.1, 1, 150), 100, id="only-non-positive"),
])
def test_fit_calibration_returns_none_below_min_rows_or_with_one_class(forward: np.ndarray, min_rows: int) -> None:
    # Arrange
    score = np.linspace(-1, 1, forward.size)

    # Act / Assert
    assert fit_calibration(score, forward, min_rows) is None


def test_fit_calibration_counts_a_zero_return_as_not_positive() -> None:
    # Arrange: 150 rows, half of them exactly zero: two classes (0 is "not up")
    score = np.linspace(-1, 1, 150)
    forward = np.where(np.arange(150) % 2 == 0, 0.0, 0.01)

    # Act
    cal = fit_calibration(score, forward, 100)

    # Assert
    assert cal is not None and cal.n_rows == 150


# ------------------------------------------------------------------ filters
T_ROWS = 120
CALL_ROW = 30
FILTERS = AssessmentConfig(min_adv_value=1_000_000.0, liquidity_window=21, earnings_blackout_sessions=2, min_price=5.0)
# Columns: LIQ (traded value 10m), THIN (500k a day), PENNY (close 4), LATE (listed from row 100),
# CALL (liquid, reports at row 30).
IDS = ("LIQ", "THIN", "PENNY", "LATE", "CALL")


def filter_panel() -> MarketPanel:
    close = np.full((T_ROWS, 5), 10.0)
    volume = np.full((T_ROWS, 5), 1_000_000.0)
    volume[:, 1] = 50_000.0
    close[:, 2] = 4.0
    close[:100, 3] = NAN
    volume[:100, 3] = NAN
    nan = np.full((T_ROWS, 5), NAN)
    return MarketPanel(
        market_id="US_EQ", region="US",
        sessions=np.busday_offset(np.datetime64("2021-01-04", "D"), np.arange(T_ROWS), roll="forward"),
        instrument_ids=IDS, sectors=(None,) * 5, close=close, volume=volume, log_return=nan.copy(),
        vol_21=nan.copy(), vol_63=nan.copy(), vol_ewma=nan.copy(), downside_vol_63=nan.copy(), beta=nan.copy(),
        residual_vol=nan.copy(), market_return=np.zeros(T_ROWS), avg_correlation=np.zeros(T_ROWS))


def run_filters() -> tuple[MarketPanel, np.ndarray, dict]:
    panel = filter_panel()
    calls = pl.DataFrame({"instrument_id": ["CALL"], "session_date": [panel.session_dates()[CALL_ROW]],
                          "eps_actual": [1.0], "eps_consensus": [1.1]})
    last_call, _ = call_arrays(panel, calls)
    mask, values = signal_filters(panel, last_call, FILTERS)
    return panel, mask, values


def reasons_at(panel: MarketPanel, mask: np.ndarray, values: dict, r: int, j: int) -> list[str]:
    return filter_reasons(int(mask[r, j]), float(values["adv"][r, j]), float(panel.close[r, j]),
                          float(values["since_call"][r, j]), float(values["until_next_call"][r, j]), FILTERS)


def test_a_liquid_priced_instrument_without_calls_is_never_filtered() -> None:
    # Act
    panel, mask, values = run_filters()

    # Assert: from the first session, once half of the liquidity window is there
    assert (mask[10:, 0] == 0).all()
    assert values["adv"][50, 0] == pytest.approx(10_000_000.0)


def test_liquidity_filter_excludes_a_thin_instrument_with_its_average_traded_value() -> None:
    # Act
    panel, mask, values = run_filters()

    # Assert
    assert (mask[:, 1] == 1).all()
    assert reasons_at(panel, mask, values, 50, 1) == ["liquidity: average traded value 500000 < 1000000"]


def test_liquidity_filter_excludes_a_new_listing_until_half_the_window_has_traded() -> None:
    # Act
    panel, mask, values = run_filters()

    # Assert: listed at row 100; 11 of the 21 sessions are needed, so tradable from row 110
    assert (mask[100:110, 3] & 1).all()
    assert (mask[110:, 3] == 0).all()
    assert reasons_at(panel, mask, values, 105, 3) == ["liquidity: too few sessions of traded value"]


def test_price_floor_excludes_a_close_below_the_minimum_price() -> None:
    # Act
    panel, mask, values = run_filters()

    # Assert
    assert (mask[10:, 2] == 4).all()
    assert reasons_at(panel, mask, values, 50, 2) == ["price_floor: close 4.0 < 5"]


def test_earnings_blackout_covers_the_call_and_the_sessions_after_it_and_before_the_projected_next_call() -> None:
    # Act
    panel, mask, values = run_filters()

    # Assert
    b = FILTERS.earnings_blackout_sessions
    next_call = CALL_ROW + 63  # a quarter after the call
    assert QUARTER_SESSIONS == 63
    blacked = {r for r in range(T_ROWS) if mask[r, 4] & 2}
    assert blacked == set(range(CALL_ROW, CALL_ROW + b + 1)) | set(range(next_call - b, next_call + 1))
    assert not mask[CALL_ROW - 1, 4]            # the call is not known before its session
    assert (mask[10:, 4] & ~np.int8(2) == 0).all()  # liquid and priced: blackout only
    assert reasons_at(panel, mask, values, CALL_ROW, 4) == ["earnings_blackout: call 0 session(s) ago"]
    assert reasons_at(panel, mask, values, CALL_ROW + 2, 4) == ["earnings_blackout: call 2 session(s) ago"]
    assert reasons_at(panel, mask, values, next_call - 1, 4) == ["earnings_blackout: next call projected in 1 session(s)"]
    assert reasons_at(panel, mask, values, next_call, 4) == ["earnings_blackout: next call projected in 0 session(s)"]


def test_filter_reasons_list_every_filter_that_applies_in_filter_order() -> None:
    # Arrange: a thin, cheap instrument in a blackout
    config = FILTERS

    # Act
    reasons = filter_reasons(7, 20_000.0, 1.5, 1.0, 62.0, config)

    # Assert
    assert [r.split(":")[0] for r in reasons] == list(FILTER_NAMES)
    assert reasons == ["liquidity: average traded value 20000 < 1000000", "earnings_blackout: call 1 session(s) ago",
                       "price_floor: close 1.5 < 5"]
