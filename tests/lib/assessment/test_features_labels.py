"""The assessment model's label and features (prometheus_lib.assessment.ml.labels / .features).

On hand-made panels: the forward-return label (the next h log returns, a missing one counted
as 0, NaN past the panel's end and where there is nothing to buy), its one-session shift for
``trade_at: next_close``, the cross-sectional rank, the 12-1 momentum window and the
earnings features' lifetime (from the call's session on, gone 126 sessions later). On a
synthetic market's real dbt panels: the as-of check passes for every built-in group, and its
perturbation reaches every feature it guards.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from market_state_data import market_config, synthetic_panel

from prometheus_lib.assessment.ml.features import (
    AssessmentInputs,
    _group_features,
    build_features,
    call_arrays,
    check_as_of,
    cross_sectional_rank,
    market_state_arrays,
)
from prometheus_lib.assessment.ml.labels import forward_returns, label_shift
from prometheus_lib.config.models import AssessmentConfig, RegimeConfig, StabilityConfig
from prometheus_lib.market_state.panel import MarketPanel

pytestmark = pytest.mark.xdist_group("assessment_us")

# The market the engine tests use too (synthetic_panel is cached per process).
MARKET = market_config("US", n_instruments=40, history_start=date(2015, 1, 2))
END = date(2018, 12, 31)
SMALL = AssessmentConfig(min_train_sessions=252, refit_every_sessions=126, train_window_sessions=378, cv_folds=3,
                         num_leaves_grid=(7,), n_estimators=30, calibration_min_rows=100)


def hand_panel(close: np.ndarray, log_return: np.ndarray | None = None, volume: np.ndarray | None = None,
               market_return: np.ndarray | None = None) -> MarketPanel:
    """A panel on consecutive business days from 2020-01-02; arrays not given are NaN (market: 0)."""
    t, n = close.shape
    nan = np.full((t, n), np.nan)
    return MarketPanel(
        market_id="US_EQ", region="US",
        sessions=np.busday_offset(np.datetime64("2020-01-02", "D"), np.arange(t), roll="forward"),
        instrument_ids=tuple(f"I{j}" for j in range(n)), sectors=(None,) * n,
        close=close, volume=nan.copy() if volume is None else volume,
        log_return=nan.copy() if log_return is None else log_return,
        vol_21=nan.copy(), vol_63=nan.copy(), vol_ewma=nan.copy(), downside_vol_63=nan.copy(), beta=nan.copy(),
        residual_vol=nan.copy(),
        market_return=np.zeros(t) if market_return is None else market_return, avg_correlation=np.full(t, np.nan))


# ------------------------------------------------------------------ labels
# Eight sessions, three instruments: I1 has a missing return at row 2 and no close there; I2
# crashes at row 3 (-0.9) and is delisted after it (no close, no return).
LR = np.array([
    [0.01, 0.10, 0.00],
    [0.02, 0.20, 0.05],
    [0.03, np.nan, 0.05],
    [0.04, 0.40, -0.90],
    [0.05, 0.50, np.nan],
    [0.06, 0.60, np.nan],
    [0.07, 0.70, np.nan],
    [0.08, 0.80, np.nan],
])
CLOSE = np.where(np.isnan(LR), np.nan, 10.0)
CLOSE[2, 1] = np.nan


def test_forward_returns_sum_the_next_h_log_returns_counting_a_missing_one_as_zero() -> None:
    # Arrange
    panel = hand_panel(CLOSE.copy(), LR.copy())

    # Act
    label = forward_returns(panel, 3)

    # Assert
    assert label.shape == (8, 3)
    assert label[0, 0] == pytest.approx(0.02 + 0.03 + 0.04, abs=1e-15)
    assert label[4, 0] == pytest.approx(0.06 + 0.07 + 0.08, abs=1e-15)
    assert label[0, 1] == pytest.approx(0.20 + 0.0 + 0.40, abs=1e-15)   # the missing return counts 0
    assert label[1, 2] == pytest.approx(0.05 - 0.90 + 0.0, abs=1e-15)   # the delisting keeps its loss
    assert np.isnan(label[2, 1])                                         # no close at T: nothing to buy
    assert np.isnan(label[4, 2])                                         # delisted
    assert np.isnan(label[5:]).all()                                     # the window runs past the panel
    assert np.isfinite(label[:5, 0]).all()


def test_forward_returns_shifted_by_one_start_after_the_next_close() -> None:
    # Arrange
    panel = hand_panel(CLOSE.copy(), LR.copy())
    config = AssessmentConfig(trade_at="next_close")

    # Act
    shift = label_shift(config)
    label = forward_returns(panel, 3, shift)

    # Assert
    assert shift == 1 and label_shift(AssessmentConfig()) == 0
    assert label[0, 0] == pytest.approx(0.03 + 0.04 + 0.05, abs=1e-15)
    assert label[3, 0] == pytest.approx(0.06 + 0.07 + 0.08, abs=1e-15)
    assert label[0, 2] == pytest.approx(0.05 - 0.90 + 0.0, abs=1e-15)
    assert np.isnan(label[1, 1])      # no close at T+1, the trade session
    assert np.isfinite(label[2, 1])   # no close at T itself does not matter
    assert label[2, 1] == pytest.approx(0.50 + 0.60 + 0.70, abs=1e-15)
    assert np.isnan(label[4:]).all()
    np.testing.assert_array_equal(label[:4, 0], forward_returns(panel, 3)[1:5, 0])


def test_forward_returns_longer_than_the_panel_are_all_nan() -> None:
    # Arrange / Act
    label = forward_returns(hand_panel(CLOSE.copy(), LR.copy()), 8)

    # Assert
    assert np.isnan(label).all()


# ------------------------------------------------------------------ cross-sectional rank
def test_cross_sectional_rank_centres_ranks_over_the_finite_cells_of_each_row() -> None:
    # Arrange
    x = np.array([[3.0, np.nan, 1.0, 2.0],
                  [5.0, 5.0, np.nan, np.nan],
                  [np.nan, np.nan, np.nan, np.nan],
                  [-1.0, np.inf, 7.0, 0.0]])

    # Act
    ranked = cross_sectional_rank(x)

    # Assert
    np.testing.assert_allclose(ranked[0], [1 / 3, np.nan, -1 / 3, 0.0], atol=1e-15)
    np.testing.assert_allclose(ranked[1], [-0.25, 0.25, np.nan, np.nan], atol=1e-15)  # ties by column order
    assert np.isnan(ranked[2]).all()
    np.testing.assert_allclose(ranked[3], [-1 / 3, np.nan, 1 / 3, 0.0], atol=1e-15)  # inf is not a value
    finite = ranked[np.isfinite(ranked)]
    assert (finite > -0.5).all() and (finite < 0.5).all()


# ------------------------------------------------------------------ momentum
def test_mom_12_1_sums_the_log_returns_from_t_minus_251_to_t_minus_21() -> None:
    # Arrange: random returns; I1 misses 31 returns of the window at row 299 (200 left), I2 32 (199 left),
    # I3 has huge returns just outside the window (rows T-252 and T-20).
    rng = np.random.default_rng(3)
    t, T = 300, 299
    lr = rng.normal(0.0, 0.02, (t, 4))
    lr[T - 251: T - 251 + 31, 1] = np.nan
    lr[T - 251: T - 251 + 32, 2] = np.nan
    lr[T - 252, 3] = 5.0
    lr[T - 20, 3] = -5.0
    panel = hand_panel(np.full((t, 4), 10.0), lr)
    config = AssessmentConfig(feature_groups=("momentum",))

    # Act
    raw = _group_features("momentum", AssessmentInputs(panel), config)["mom_12_1"][0]
    cube = build_features(AssessmentInputs(panel), config)

    # Assert
    window = lr[T - 251: T - 20]  # rows T-251 .. T-21
    assert window.shape[0] == 231
    for j in (0, 1, 3):
        assert raw[T, j] == pytest.approx(np.nansum(window[:, j]), rel=1e-12, abs=1e-12)
    assert np.isnan(raw[T, 2])                         # 199 returns present: below the minimum of 200
    assert np.isfinite(raw[251, 0]) and np.isnan(raw[250]).all()  # needs rows back to T-251
    assert raw[251, 0] == pytest.approx(lr[0:231, 0].sum(), rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(cube.feature("mom_12_1"), cross_sectional_rank(raw).astype(np.float32))
    assert cube.names == ("mom_12_1", "mom_6_1", "ret_21", "ret_5")


# ------------------------------------------------------------------ earnings
def test_earnings_features_appear_from_the_call_session_and_vanish_126_sessions_later() -> None:
    # Arrange: I0 reports at rows 10 (surprise +0.2) and 150 (-0.1), I1 at row 20 (consensus < 0);
    # a call of an instrument outside the panel and one dated on a Saturday are ignored.
    t = 300
    rng = np.random.default_rng(5)
    lr = rng.normal(0.0, 0.02, (t, 3))
    market = rng.normal(0.0, 0.01, t)
    panel = hand_panel(np.full((t, 3), 10.0), lr, market_return=market)
    days = panel.session_dates()
    calls = pl.DataFrame({
        "instrument_id": ["I0", "I1", "I0", "ZZ", "I2"],
        "session_date": [days[10], days[20], days[150], days[30], date(2020, 1, 4)],
        "eps_actual": [1.2, 0.5, 0.9, 9.0, 9.0],
        "eps_consensus": [1.0, -1.0, 1.0, 1.0, 1.0],
    })
    config = AssessmentConfig(feature_groups=("earnings",))

    # Act
    raw = {k: v for k, (v, _) in _group_features("earnings", AssessmentInputs(panel, calls), config).items()}
    cube = build_features(AssessmentInputs(panel, calls), config)
    last, _ = call_arrays(panel, calls)

    # Assert
    sue = raw["sue"]
    assert np.isnan(sue[:10, 0]).all()
    np.testing.assert_allclose(sue[10:136, 0], 0.2, rtol=1e-12)      # since_call 0 .. 125
    assert np.isnan(sue[136:150, 0]).all()                            # 126 sessions after the call: gone
    np.testing.assert_allclose(sue[150:276, 0], -0.1, rtol=1e-12)     # the next call replaces it
    assert np.isnan(sue[276:, 0]).all()
    assert np.isnan(sue[:20, 1]).all() and sue[20, 1] == pytest.approx(1.5) and np.isnan(sue[146, 1])
    assert np.isnan(sue[:, 2]).all()                                  # the Saturday call never lands
    assert raw["sessions_since_call"][10, 0] == 0 and raw["sessions_since_call"][135, 0] == 125
    assert np.isnan(raw["sessions_since_call"][136, 0])
    assert raw["call_reaction"][40, 0] == pytest.approx(lr[10, 0] - market[10], abs=1e-15)
    np.testing.assert_array_equal(np.isfinite(cube.feature("sue")), np.isfinite(sue))
    assert last[9, 0] == -1 and last[10, 0] == 10 and last[149, 0] == 10 and last[150, 0] == 150


# ------------------------------------------------------------------ the as-of check on a real market
@pytest.fixture(scope="module")
def inputs() -> AssessmentInputs:
    panel, market = synthetic_panel(MARKET, END)
    calls = market.earnings_calls(panel.session_dates())
    probs, states, stability = market_state_arrays(panel, RegimeConfig(), StabilityConfig())
    return AssessmentInputs(panel, calls, probs, states, stability)


def test_check_as_of_passes_for_every_built_in_feature_group(inputs: AssessmentInputs) -> None:
    # Arrange
    features = build_features(inputs, SMALL)
    n = inputs.panel.n_sessions

    # Act / Assert: raises LookAheadError if any feature moved
    check_as_of(inputs, SMALL, features, probe_rows=[260, n // 2, n - 2], seed=11)
    assert set(features.groups) == set(SMALL.feature_groups)
    assert {"mom_12_1", "vol_21", "adv", "rsi", "sue", "regime_crisis", "stability", "market_vol_21"} <= set(
        features.names)


def test_the_as_of_perturbation_reaches_every_feature(inputs: AssessmentInputs) -> None:
    # Arrange
    probe = 600
    features = build_features(inputs, SMALL)

    # Act
    moved = build_features(inputs.perturbed_after(probe, np.random.default_rng(2)), SMALL)

    # Assert: every feature changes somewhere after the probe, so a leak in it would be seen at
    # the probe (the probe moves later call dates and blanks later cells too).
    a, b = features.values[probe + 1:], moved.values[probe + 1:]
    same = ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=(0, 1))
    unchanged = [name for name, s in zip(features.names, same, strict=True) if s]
    assert unchanged == []
    np.testing.assert_array_equal(features.values[:probe + 1], moved.values[:probe + 1])
