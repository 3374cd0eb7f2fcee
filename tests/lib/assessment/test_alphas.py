"""Lean-style technical alphas (prometheus_lib/assessment/alphas).

Indicators: EMA, RSI and MACD equal TA-Lib to 1e-10 with TA-Lib's warm-up NaNs, on a seeded
random walk and on a real-shaped series (trend, a -30 % crash over five sessions, flat
stretches that hit RSI's zero-loss and 0/0 cases); a panel whose columns list and delist at
different rows equals TA-Lib on each column's own segment; a gap equals the series with the gap
removed. Insights: Lean's semantics on hand-built indicator paths (emission session, insight
period, hysteresis, re-emission, crosses, the MACD threshold, repeats and cancellation), the
vectorised panel equals a per-column reference loop, and no output at or before T reads a row
after T. A full 2,600 x 500 panel runs in well under a second per alpha.
"""

from __future__ import annotations


import numpy as np
import pytest
import talib

from prometheus_lib.assessment.alphas import (
    ALPHAS,
    AlphaSignals,
    compute_alphas,
    ema,
    ema_cross_alpha,
    macd,
    macd_alpha,
    rsi,
    rsi_alpha,
)
from prometheus_lib.assessment.alphas import insights as insights_module
from prometheus_lib.errors import ConfigError, DataValidationError

ATOL = 1e-10
ARRAYS = ("value", "direction", "confidence", "magnitude", "score", "emitted")


# ------------------------------------------------------------------ series
def random_walk(n: int = 600, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))


def real_shaped() -> np.ndarray:
    """~300 daily closes in cents: flat listing, a gains-only run, a trend, a crash, a rebound, a drift."""
    closes = [50.0] * 20  # flat: RSI's average gain and loss are both 0 -> TA-Lib's 0
    for _ in range(15):  # gains only: average loss exactly 0 -> RSI 100
        closes.append(round(closes[-1] + 0.25, 2))
    uptrend = (0.6, -0.2, 0.4, 0.1, -0.3, 0.5, 0.0, 0.2)
    for i in range(96):
        closes.append(round(closes[-1] + uptrend[i % len(uptrend)], 2))
    closes += [closes[-1]] * 10  # a flat stretch after the trend
    top = closes[-1]
    for factor in (0.93, 0.91, 0.92, 0.95, 0.9463):  # -30 % over five sessions
        closes.append(round(closes[-1] * factor, 2))
    assert closes[-1] / top == pytest.approx(0.70, abs=0.002)
    rebound = (1.2, -0.5, 0.8, 0.0, -0.3, 0.9, 0.4, -0.6)
    for i in range(40):
        closes.append(round(closes[-1] + rebound[i % len(rebound)], 2))
    closes += [closes[-1]] * 15
    drift = (-0.4, 0.2, -0.3, 0.0, -0.5, 0.3, -0.1, 0.1, -0.2)
    for i in range(99):
        closes.append(round(closes[-1] + drift[i % len(drift)], 2))
    return np.array(closes)


SERIES = {"random_walk": random_walk(), "real_shaped": real_shaped()}

INDICATOR_CASES = {
    "ema12": (lambda x: ema(x, 12), lambda x: talib.EMA(x, 12)),
    "ema26": (lambda x: ema(x, 26), lambda x: talib.EMA(x, 26)),
    "ema3": (lambda x: ema(x, 3), lambda x: talib.EMA(x, 3)),
    "rsi14": (lambda x: rsi(x, 14), lambda x: talib.RSI(x, 14)),
    "rsi5": (lambda x: rsi(x, 5), lambda x: talib.RSI(x, 5)),
    **{
        f"macd_{part}": (
            lambda x, i=i: macd(x, 12, 26, 9)[i],
            lambda x, i=i: talib.MACD(x, 12, 26, 9)[i],
        )
        for i, part in enumerate(("line", "signal", "hist"))
    },
    **{
        f"macd_5_13_4_{part}": (
            lambda x, i=i: macd(x, 5, 13, 4)[i],
            lambda x, i=i: talib.MACD(x, 5, 13, 4)[i],
        )
        for i, part in enumerate(("line", "signal", "hist"))
    },
}


def assert_matches(ours: np.ndarray, reference: np.ndarray) -> None:
    """Same NaN cells, and equal to 1e-10 on the others."""
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    valid = ~np.isnan(reference)
    np.testing.assert_allclose(ours[valid], reference[valid], rtol=0, atol=ATOL)


def identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


# ------------------------------------------------------------------ indicators vs TA-Lib
@pytest.mark.parametrize("series", SERIES)
@pytest.mark.parametrize("case", INDICATOR_CASES)
def test_indicator_with_gap_free_series_matches_talib(series: str, case: str) -> None:
    # Arrange
    x = SERIES[series]
    ours, theirs = INDICATOR_CASES[case]

    # Act
    result = ours(x)

    # Assert
    assert result.shape == x.shape
    assert_matches(result, theirs(x))


def test_real_shaped_series_exercises_rsi_zero_loss_and_flat_cases() -> None:
    # Arrange
    x = SERIES["real_shaped"]

    # Act
    reference = talib.RSI(x, 14)
    ours = rsi(x, 14)

    # Assert: 0/0 (flat since the seed) gives 0, a zero loss with gains gives 100, the crash < 30
    assert np.all(reference[14:20] == 0.0) and np.all(ours[14:20] == 0.0)
    assert np.all(reference[20:35] == 100.0) and np.all(ours[20:35] == 100.0)
    assert np.nanmin(reference[140:150]) < 30.0
    assert np.sum(np.diff(x) == 0) >= 30


def test_indicators_with_panel_of_staggered_columns_match_talib_per_segment() -> None:
    # Arrange: columns list at different rows, one delists, one is too short, one is empty
    walk, shaped = SERIES["random_walk"], SERIES["real_shaped"]
    panel = np.full((600, 6), np.nan)
    segments = [(0, 600), (37, 600), (80, 400), (100, 100 + len(shaped)), (500, 520), (0, 0)]
    panel[0:600, 0] = walk
    panel[37:600, 1] = random_walk(563, seed=11)
    panel[80:400, 2] = random_walk(320, seed=12)
    panel[100:100 + len(shaped), 3] = shaped
    panel[500:520, 4] = random_walk(20, seed=13)

    for case, (ours, theirs) in INDICATOR_CASES.items():
        # Act
        result = ours(panel)

        # Assert
        assert result.shape == panel.shape, case
        for column, (start, end) in enumerate(segments):
            expected = np.full(600, np.nan)
            if end > start:
                expected[start:end] = theirs(panel[start:end, column].copy())
            assert_matches(result[:, column], expected)


@pytest.mark.parametrize("case", INDICATOR_CASES)
def test_indicator_with_gaps_equals_series_with_gaps_removed(case: str) -> None:
    # Arrange: a gap inside the warm-up, short gaps later, and a long one
    x = SERIES["random_walk"][:300].copy()
    gapped = x.copy()
    gapped[[5, 6, 7, 50, 51, 120]] = np.nan
    gapped[200:215] = np.nan
    valid = ~np.isnan(gapped)
    ours, theirs = INDICATOR_CASES[case]

    # Act
    result = ours(gapped)

    # Assert: NaN on the gaps, the compressed series' values elsewhere (and TA-Lib's there)
    assert np.all(np.isnan(result[~valid]))
    compressed = ours(x[valid])
    np.testing.assert_array_equal(np.isnan(result[valid]), np.isnan(compressed))
    np.testing.assert_allclose(result[valid], compressed, rtol=0, atol=1e-12)
    assert_matches(result[valid], theirs(x[valid]))


def test_indicator_with_infinite_cell_treats_it_as_missing() -> None:
    # Arrange
    x = SERIES["random_walk"][:120].copy()
    with_inf = x.copy()
    with_inf[60] = np.inf
    with_nan = x.copy()
    with_nan[60] = np.nan

    # Act / Assert
    np.testing.assert_array_equal(rsi(with_inf), rsi(with_nan))


def test_indicators_with_1d_input_equal_the_2d_column() -> None:
    # Arrange
    x = SERIES["real_shaped"]

    # Act / Assert
    np.testing.assert_array_equal(ema(x, 12), ema(x[:, None], 12)[:, 0])
    np.testing.assert_array_equal(rsi(x), rsi(x[:, None])[:, 0])
    for one, two in zip(macd(x), macd(x[:, None])):
        np.testing.assert_array_equal(one, two[:, 0])


def test_indicators_with_bad_input_raise() -> None:
    with pytest.raises(DataValidationError):
        rsi(np.zeros((3, 3, 3)))
    with pytest.raises(ConfigError):
        ema(np.zeros(10), 0)
    with pytest.raises(ConfigError):
        macd(np.zeros(10), 26, 12)


# ------------------------------------------------------------------ RSI insights
def patched(monkeypatch: pytest.MonkeyPatch, name: str, build) -> None:
    """Replace the indicator ``name`` used by ``insights`` with a hand-built path."""
    monkeypatch.setattr(insights_module, name, build)


def rsi_path_alpha(monkeypatch: pytest.MonkeyPatch, path: list[float], **kwargs) -> AlphaSignals:
    values = np.array(path, dtype=float)
    patched(monkeypatch, "rsi", lambda close, period=14: values.reshape(np.shape(close)))
    return rsi_alpha(np.full(len(values), 100.0), **kwargs)


def test_rsi_alpha_dip_below_lower_emits_up_for_exactly_period_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: warm-up, neutral (exactly 30 does not trip), a dip at row 20, then tripped
    # (29..35, never above 35: exactly 35 does not re-arm)
    path = [np.nan] * 14 + [50.0, 30.0, 50.0, 50.0, 50.0, 50.0] + [29.0]
    path += [31, 33, 29, 34, 28, 30, 32, 33, 35, 31, 29, 33, 35] + [33.0] * 8
    path += [36.0, 29.0] + [50.0] * 16

    # Act
    out = rsi_path_alpha(monkeypatch, path)

    # Assert
    assert out.insight_period == 14
    assert np.flatnonzero(out.emitted).tolist() == [20, 43]  # no new insight while still tripped
    np.testing.assert_array_equal(out.direction[20:34], 1)  # rows 20..33: 14 sessions
    np.testing.assert_array_equal(out.direction[34:43], 0)
    np.testing.assert_array_equal(out.direction[43:57], 1)  # re-armed above 35 at 42, dipped at 43
    np.testing.assert_array_equal(out.direction[57:], 0)
    np.testing.assert_array_equal(out.direction[:20], 0)


def test_rsi_alpha_spike_above_upper_emits_down_symmetrically(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: exactly 70 does not trip, spike at 16, tripped (65..72: exactly 65 does not
    # re-arm) to 31, re-armed below 65 at 32, spike at 34
    path = [np.nan] * 14 + [50.0, 70.0] + [71.0] + [65, 69, 70, 68, 72, 66] + [67.0] * 9 + [64.0, 66.0, 70.5]
    path += [50.0] * 20

    # Act
    out = rsi_path_alpha(monkeypatch, path)

    # Assert
    assert np.flatnonzero(out.emitted).tolist() == [16, 34]
    np.testing.assert_array_equal(out.direction[16:30], -1)
    np.testing.assert_array_equal(out.direction[30:34], 0)
    np.testing.assert_array_equal(out.direction[34:48], -1)
    np.testing.assert_array_equal(out.direction[48:], 0)


def test_rsi_alpha_jump_from_low_to_high_replaces_the_active_insight(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    path = [np.nan] * 14 + [50.0, 25.0, 40.0, 75.0] + [50.0] * 20

    # Act
    out = rsi_path_alpha(monkeypatch, path, period=14)

    # Assert
    assert np.flatnonzero(out.emitted).tolist() == [15, 17]
    np.testing.assert_array_equal(out.direction[15:17], 1)
    np.testing.assert_array_equal(out.direction[17:31], -1)
    np.testing.assert_array_equal(out.direction[31:], 0)


def test_rsi_alpha_warm_up_and_gap_cells_are_flat_with_nan_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: a gap (NaN) inside an active insight: the period keeps elapsing over it
    path = [np.nan] * 14 + [25.0] + [40.0, np.nan, np.nan, 40.0] + [50.0] * 15

    # Act
    out = rsi_path_alpha(monkeypatch, path)

    # Assert
    gaps = np.isnan(np.array(path))
    np.testing.assert_array_equal(out.direction[gaps], 0)
    assert np.all(np.isnan(out.score[gaps])) and np.all(np.isnan(out.confidence[gaps]))
    assert not out.emitted[gaps].any()
    np.testing.assert_array_equal(out.direction[[14, 15, 18, 27]], 1)
    assert out.direction[28] == 0  # 14 sessions from row 14, the two gap rows included
    assert np.all(np.isnan(out.magnitude))


def test_rsi_alpha_confidence_grows_with_the_distance_from_neutral(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    path = [np.nan] * 14 + [50.0, 25.0, 20.0, 10.0, 45.0, 60.0]

    # Act
    out = rsi_path_alpha(monkeypatch, path)

    # Assert: up insight active from row 15; confidence (50 - rsi) / 50 in its direction
    np.testing.assert_allclose(out.confidence[14:], [0.0, 0.5, 0.6, 0.8, 0.1, 0.0])
    np.testing.assert_allclose(out.score[14:], [0.0, 0.5, 0.6, 0.8, 0.1, 0.0])
    assert out.direction.dtype == np.int8 and out.emitted.dtype == bool


def test_rsi_alpha_on_real_prices_emits_at_the_first_session_below_lower() -> None:
    # Arrange
    x = SERIES["real_shaped"]
    reference = talib.RSI(x, 14)

    # Act
    out = rsi_alpha(x)

    # Assert
    crash = 131 + 10  # the crash starts after the 131 trend closes and the 10 flat ones
    first_low = crash + int(np.argmax(reference[crash:] < 30))
    assert out.emitted[first_low] and out.direction[first_low] == 1
    np.testing.assert_allclose(out.value[14:], reference[14:], rtol=0, atol=ATOL)


# ------------------------------------------------------------------ EMA cross insights
def ema_path_alpha(monkeypatch: pytest.MonkeyPatch, fast: list[float], slow: list[float]) -> AlphaSignals:
    lines = {3: np.array(fast, dtype=float), 6: np.array(slow, dtype=float)}
    patched(monkeypatch, "ema", lambda values, period: lines[period].reshape(np.shape(values)))
    return ema_cross_alpha(np.full(len(fast), 100.0), fast=3, slow=6)


def test_ema_cross_alpha_emits_exactly_at_the_crossing_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: fast under slow at the first ready row (no insight), above from 10, below from 20
    slow = [np.nan] * 5 + [100.0] * 35
    fast = [np.nan] * 2 + [98.0] * 8 + [101.0] * 10 + [99.0] * 20

    # Act
    out = ema_path_alpha(monkeypatch, fast, slow)

    # Assert
    assert out.insight_period == 3
    assert np.flatnonzero(out.emitted).tolist() == [10, 20]
    np.testing.assert_array_equal(out.direction[10:13], 1)
    np.testing.assert_array_equal(out.direction[13:20], 0)
    np.testing.assert_array_equal(out.direction[20:23], -1)
    np.testing.assert_array_equal(out.direction[23:], 0)
    assert np.all(np.isnan(out.score[:5])) and np.all(out.direction[:5] == 0)
    np.testing.assert_allclose(out.value[10], 0.01)
    np.testing.assert_allclose(out.confidence[10], 0.2)  # |gap| / 0.05


def test_ema_cross_alpha_first_ready_session_with_fast_over_slow_emits_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: Lean's flag starts False, so fast > slow at the first ready session is a cross up
    slow = [np.nan] * 5 + [100.0] * 10
    fast = [np.nan] * 2 + [101.0] * 13

    # Act
    out = ema_path_alpha(monkeypatch, fast, slow)

    # Assert
    assert np.flatnonzero(out.emitted).tolist() == [5]
    assert out.direction[5] == 1


def test_ema_cross_alpha_tie_then_above_emits_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: above (up at 1), a tie at 5 (flag False, no insight), above again at 6 -> up
    slow = [100.0] * 12
    fast = [101.0] * 5 + [100.0] + [101.0] * 6

    # Act
    out = ema_path_alpha(monkeypatch, fast, slow)

    # Assert
    assert np.flatnonzero(out.emitted).tolist() == [0, 6]


def test_ema_cross_alpha_on_real_prices_emits_where_talib_emas_cross() -> None:
    # Arrange
    x = SERIES["random_walk"]
    over = talib.EMA(x, 12) > talib.EMA(x, 26)
    ready = 25

    # Act
    out = ema_cross_alpha(x)

    # Assert
    expected = [t for t in range(ready + 1, len(x)) if over[t] != over[t - 1]]
    if over[ready]:
        expected.insert(0, ready)
    assert np.flatnonzero(out.emitted).tolist() == expected
    for t in expected:
        assert out.direction[t] == (1 if over[t] else -1)


# ------------------------------------------------------------------ MACD insights
def macd_path_alpha(
    monkeypatch: pytest.MonkeyPatch, normalised: list[float], close: float = 100.0, **kwargs
) -> AlphaSignals:
    signal = np.array(normalised, dtype=float) * close

    def fake_macd(panel, fast=12, slow=26, signal_period=9):
        shaped = signal.reshape(np.shape(panel))
        return shaped, shaped, shaped

    patched(monkeypatch, "macd", fake_macd)
    return macd_alpha(np.full(len(normalised), close), **kwargs)


def test_macd_alpha_threshold_repeats_expiry_and_cancellation(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange (normalised signal line, threshold 0.01, insight period 12):
    #   3: 0.005 flat (first ready: nothing emitted), 4: up, 5..19 still up (no re-emission; the
    #   insight expires after row 15), 20: exactly 0.01 is flat, 21: up again, 24: flat cancels,
    #   26: down, 27: still down, 28: up
    path = [np.nan] * 3 + [0.005] + [0.02] + [0.03, 0.015] * 7 + [0.02] + [0.01, 0.02, 0.03, 0.04]
    path += [0.005, 0.0, -0.02, -0.03, 0.011] + [0.011] * 3

    # Act
    out = macd_path_alpha(monkeypatch, path)

    # Assert
    assert out.insight_period == 12
    assert np.flatnonzero(out.emitted).tolist() == [4, 21, 26, 28]
    np.testing.assert_array_equal(out.direction[:4], 0)
    np.testing.assert_array_equal(out.direction[4:16], 1)
    np.testing.assert_array_equal(out.direction[16:21], 0)  # expired, signal still up: flat
    np.testing.assert_array_equal(out.direction[21:24], 1)
    np.testing.assert_array_equal(out.direction[24:26], 0)  # cancelled by the change to flat
    np.testing.assert_array_equal(out.direction[26:28], -1)
    np.testing.assert_array_equal(out.direction[28:], 1)
    np.testing.assert_allclose(out.value[3:], np.array(path[3:]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(out.confidence[4:6], [0.4, 0.6])  # |signal / price| / 0.05
    np.testing.assert_allclose(out.score[26:28], [-0.4, -0.6])


def test_macd_alpha_zero_price_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    signal = np.array([np.nan, 2.0, 2.0, 2.0, 0.0])
    close = np.array([100.0, 100.0, 0.0, 100.0, 100.0])
    patched(monkeypatch, "macd", lambda panel, fast, slow, signal_period: (signal[:, None],) * 3)

    # Act
    out = macd_alpha(close)

    # Assert
    assert np.flatnonzero(out.emitted).tolist() == [1]
    assert np.isnan(out.value[2]) and out.direction[2] == 0
    np.testing.assert_array_equal(out.direction, [0, 1, 0, 1, 0])


def test_macd_alpha_on_real_prices_reads_talib_signal_over_close() -> None:
    # Arrange
    x = SERIES["real_shaped"]
    _, signal, _ = talib.MACD(x, 12, 26, 9)

    # Act
    out = macd_alpha(x)

    # Assert
    assert_matches(out.value, signal / x)
    assert out.emitted.any()


# ------------------------------------------------------------------ reference loop
def reference_alpha(name: str, close: np.ndarray) -> dict[str, np.ndarray]:
    """A straightforward per-column, per-session replay of Lean's model (the specification)."""
    sessions = len(close)
    if name == "rsi":
        value, period = rsi(close, 14), 14
    elif name == "ema_cross":
        fast, slow = ema(close, 12), ema(close, 26)
        value, period = fast / slow - 1.0, 12
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            value, period = macd(close, 12, 26, 9)[1] / close, 12
    events: list[tuple[int, int]] = []  # (session, direction); direction 0 = cancel
    state, over, previous = "middle", False, None
    for t in range(sessions):
        v = value[t]
        if not np.isfinite(v):
            continue
        if name == "rsi":
            new = state
            if v > 70:
                new = "high"
            elif v < 30:
                new = "low"
            elif state == "low" and v > 35:
                new = "middle"
            elif state == "high" and v < 65:
                new = "middle"
            if new != state and new in ("low", "high"):
                events.append((t, 1 if new == "low" else -1))
            state = new
        elif name == "ema_cross":
            if over and slow[t] > fast[t]:
                events.append((t, -1))
            elif not over and fast[t] > slow[t]:
                events.append((t, 1))
            over = bool(fast[t] > slow[t])
        else:
            d = 1 if v > 0.01 else (-1 if v < -0.01 else 0)
            if d != previous:
                previous = d
                events.append((t, d))
    direction = np.zeros(sessions, dtype=np.int8)
    confidence = np.full(sessions, np.nan)
    emitted = np.zeros(sessions, dtype=bool)
    for t in range(sessions):
        if not np.isfinite(value[t]):
            continue
        latest = [e for e in events if e[0] <= t]
        if latest and t - latest[-1][0] < period:
            direction[t] = latest[-1][1]
        emitted[t] = any(e[0] == t and e[1] != 0 for e in events)
        s = (50.0 - value[t]) / 50.0 if name == "rsi" else value[t] / 0.05
        confidence[t] = min(1.0, max(0.0, direction[t] * s if direction[t] else abs(s)))
    return {
        "value": np.where(np.isfinite(value), value, np.nan),
        "direction": direction,
        "confidence": confidence,
        "magnitude": np.full(sessions, np.nan),
        "score": np.where(np.isfinite(value), direction * confidence, np.nan),
        "emitted": emitted,
    }


def reference_panel() -> np.ndarray:
    rng = np.random.default_rng(3)
    panel = np.full((260, 5), np.nan)
    starts = [0, 17, 40, 90, 0]
    for column, start in enumerate(starts):
        steps = rng.normal(0.0, 0.03, 260 - start)
        panel[start:, column] = 50.0 * np.exp(np.cumsum(steps))
    panel[120:127, 1] = np.nan  # a gap
    panel[[60, 61, 150], 2] = np.nan
    panel[200:, 3] = np.nan  # delisted
    panel[:, 4] = np.round(panel[:, 4], 0)  # whole-unit prices: many zero changes and ties
    return panel


@pytest.mark.parametrize("name", ALPHAS)
def test_vectorised_alpha_equals_per_column_reference_loop(name: str) -> None:
    # Arrange
    panel = reference_panel()

    # Act
    out = compute_alphas(panel)[name]

    # Assert
    assert out.emitted.sum() >= 10
    for column in range(panel.shape[1]):
        expected = reference_alpha(name, panel[:, column])
        for field in ARRAYS:
            got = getattr(out, field)[:, column]
            assert identical(got, expected[field].astype(got.dtype)), (name, column, field)


# ------------------------------------------------------------------ no look-ahead
def test_outputs_up_to_t_ignore_everything_after_t() -> None:
    # Arrange
    panel = reference_panel()
    cut = 150
    noisy = panel.copy()
    noisy[cut + 1:] *= np.random.default_rng(9).uniform(0.5, 1.5, noisy[cut + 1:].shape)

    # Act
    before, after = compute_alphas(panel), compute_alphas(noisy)
    indicators = [
        (ema(panel, 12), ema(noisy, 12)),
        (rsi(panel), rsi(noisy)),
        *zip(macd(panel), macd(noisy)),
    ]

    # Assert
    for a, b in indicators:
        assert identical(a[: cut + 1], b[: cut + 1])
        assert not identical(a[cut + 1:], b[cut + 1:])
    for name in ALPHAS:
        for field in ARRAYS:
            a, b = getattr(before[name], field), getattr(after[name], field)
            assert identical(a[: cut + 1], b[: cut + 1]), (name, field)
        assert not identical(before[name].value, after[name].value)


# ------------------------------------------------------------------ API
def test_compute_alphas_with_params_shapes_and_read_only_arrays() -> None:
    # Arrange
    x = SERIES["real_shaped"]

    # Act
    out = compute_alphas(x, {"rsi": {"period": 10}, "macd": {"threshold": 0.02}})

    # Assert
    assert tuple(out) == ALPHAS
    assert out["rsi"].insight_period == 10
    assert identical(out["rsi"].value, rsi(x, 10))
    for signals in out.values():
        for field in ARRAYS:
            array = getattr(signals, field)
            assert array.shape == x.shape
            assert not array.flags.writeable
        assert set(np.unique(signals.direction)) <= {-1, 0, 1}
        finite = np.isfinite(signals.confidence)
        assert np.all((signals.confidence[finite] >= 0) & (signals.confidence[finite] <= 1))
        np.testing.assert_array_equal(finite, np.isfinite(signals.score))
        np.testing.assert_array_equal(finite, np.isfinite(signals.value))
    single = rsi_alpha(x[:, None], period=10)
    assert identical(single.score[:, 0], out["rsi"].score)


def test_compute_alphas_with_bad_params_raises() -> None:
    x = SERIES["real_shaped"]
    with pytest.raises(ConfigError, match="unknown alpha"):
        compute_alphas(x, {"stochastic": {}})
    with pytest.raises(ConfigError, match="bad parameters"):
        compute_alphas(x, {"rsi": {"window": 3}})
    with pytest.raises(ConfigError):
        ema_cross_alpha(x, fast=26, slow=12)
    with pytest.raises(ConfigError):
        rsi_alpha(x, lower=40, reset_lower=35)
