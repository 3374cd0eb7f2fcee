"""Specification of ``compute_metrics`` and ``drawdown_series``.

Two oracles, independent of the implementation: tiny curves whose metrics are worked out by
hand in the test (the arithmetic is written next to each expected value), and a second
implementation in plain Python loops, ``statistics`` and pandas, compared on seeded random curves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from prometheus_lib.analytics import (
    HIT_RATE_BASIS_DAILY,
    HIT_RATE_BASIS_TRADES,
    PerformanceMetrics,
    compute_metrics,
    drawdown_series,
)
from prometheus_lib.errors import DataValidationError, InvalidValueError, PrometheusError

SQRT_252 = math.sqrt(252)
REL = 1e-9

# The worked example: +10 %, -10 %, +10 %.
#   returns r = 110/100 - 1 = 0.10, 99/110 - 1 = -0.10, 108.9/99 - 1 = 0.10
EQUITY = np.array([100.0, 110.0, 99.0, 108.9])


def approx(value: float) -> pytest.approx:
    return pytest.approx(value, rel=REL, abs=1e-12)


def random_curve(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A geometric random walk of ``n`` returns and a correlated benchmark's returns."""
    rng = np.random.default_rng(seed)
    benchmark = rng.normal(0.0003, 0.011, n)
    returns = 0.0001 + 0.8 * benchmark + rng.normal(0.0, 0.007, n)
    equity = 1_000_000.0 * np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    return equity, benchmark


# ---------------------------------------------------------------- oracle: plain Python


def loop_returns(equity: list[float]) -> list[float]:
    return [equity[i] / equity[i - 1] - 1.0 for i in range(1, len(equity))]


def loop_drawdown(equity: list[float]) -> tuple[list[float], int, int]:
    """Drawdowns, longest underwater spell and open spell, by tracking the last peak's index."""
    peak, peak_index, drawdowns, longest = equity[0], 0, [], 0
    for i, value in enumerate(equity):
        if value >= peak:
            peak, peak_index = value, i
        drawdowns.append(value / peak - 1.0)
        longest = max(longest, i - peak_index)  # sessions since the last peak = underwater so far
    return drawdowns, longest, len(equity) - 1 - peak_index


def loop_var_es(returns: list[float], tail_percent: int) -> tuple[float, float]:
    """VaR by sorting: the k-th worst return with k = ceil(n * tail_percent / 100) in integers."""
    ordered = sorted(returns)
    k = -(-len(ordered) * tail_percent // 100)
    q = ordered[k - 1]
    tail = [r for r in returns if r <= q]
    return -q, -sum(tail) / len(tail)


# ---------------------------------------------------------------- hand-checked examples


def test_compute_metrics_with_worked_example_matches_hand_arithmetic() -> None:
    # Arrange: r = [0.1, -0.1, 0.1], n = 3
    #   mean = 0.1/3 = 0.033333; deviations 0.066667, -0.133333, 0.066667
    #   sample variance = (0.004444 + 0.017778 + 0.004444) / 2 = 0.013333; std = 0.115470
    #   downside deviation = sqrt((0 + 0.01 + 0) / 3) = 0.057735
    mean, std, downside = 0.1 / 3, math.sqrt(0.04 / 3), math.sqrt(0.01 / 3)

    # Act
    m = compute_metrics(EQUITY)

    # Assert
    assert (m.sessions, m.periods) == (4, 3)
    assert m.cumulative_return == approx(0.089)  # 108.9 / 100 - 1
    assert m.annualised_return == approx(1.089 ** (252 / 3) - 1)  # 1.089^84 - 1 = 1288.26
    assert m.annualised_volatility == approx(std * SQRT_252)  # 0.115470 * 15.874508 = 1.833030
    assert m.annualised_volatility == approx(1.8330302779823)
    assert m.sharpe_ratio == approx(mean / std * SQRT_252)  # 0.288675 * 15.874508 = 4.582576
    assert m.sharpe_ratio == approx(4.5825756949558)
    assert m.sortino_ratio == approx(mean / downside * SQRT_252)  # 0.577350 * 15.874508 = 9.165151
    assert m.max_drawdown == approx(-0.1)  # 99 / 110 - 1
    assert m.max_drawdown_duration == 2  # 99 and 108.9 are both below the 110 peak
    assert m.current_drawdown_duration == 2  # never recovered
    assert m.calmar_ratio == approx((1.089 ** 84 - 1) / 0.1)
    assert m.hit_rate == approx(2 / 3)  # two of three days up
    assert m.hit_rate_basis == HIT_RATE_BASIS_DAILY
    assert m.profit_factor == approx(19.9 / 11)  # daily P&L +10, -11, +9.9 -> (10 + 9.9) / 11
    assert m.trades == 0
    # n = 3: k = ceil(3 * 0.05) = ceil(3 * 0.01) = 1 -> the worst return, -0.1; the tail is {-0.1}
    assert (m.var_95, m.var_99, m.es_95, m.es_99) == (approx(0.1), approx(0.1), approx(0.1), approx(0.1))
    assert math.isnan(m.alpha) and math.isnan(m.beta) and math.isnan(m.turnover)


def test_compute_metrics_with_benchmark_matches_hand_regression() -> None:
    # Arrange: b = [0.04, -0.06, 0.04] and r = [0.1, -0.1, 0.1] = 2 * b + 0.02 exactly
    #   -> beta = 2, daily alpha = 0.02, alpha = 0.02 * 252 = 5.04
    #   active a = r - b = [0.06, -0.04, 0.06]: mean 0.026667, std = std(b) = sqrt(0.01/3) = 0.057735
    #   tracking error = 0.057735 * 15.874508 = 0.916515; IR = 0.026667 * 252 / 0.916515 = 7.332121
    benchmark = np.array([0.04, -0.06, 0.04])

    # Act
    m = compute_metrics(EQUITY, benchmark_returns=benchmark)

    # Assert
    assert m.beta == approx(2.0)
    assert m.alpha == approx(5.04)
    assert m.tracking_error == approx(math.sqrt(0.01 / 3) * SQRT_252)
    assert m.tracking_error == approx(0.9165151389912)
    assert m.information_ratio == approx((0.08 / 3) * 252 / (math.sqrt(0.01 / 3) * SQRT_252))
    assert m.information_ratio == approx(7.3321211119293)


def test_compute_metrics_with_risk_free_rate_subtracts_daily_rate() -> None:
    # Arrange: rf chosen so that the daily rate is exactly 1 %: (1 + rf)^(1/252) - 1 = 0.01
    #   excess x = [0.09, -0.11, 0.09]: mean = 0.07/3 = 0.023333, std unchanged = 0.115470
    #   downside = sqrt(0.0121 / 3) = 0.063509
    #   Sharpe = 0.023333 / 0.115470 * 15.874508 = 3.207803; Sortino = 5.832367
    rf = 1.01 ** 252 - 1

    # Act
    m = compute_metrics(EQUITY, risk_free_rate=rf)

    # Assert
    assert m.sharpe_ratio == approx((0.07 / 3) / math.sqrt(0.04 / 3) * SQRT_252)
    assert m.sharpe_ratio == approx(3.2078029864691)
    assert m.sortino_ratio == approx((0.07 / 3) / math.sqrt(0.0121 / 3) * SQRT_252)
    assert m.annualised_volatility == approx(math.sqrt(0.04 / 3) * SQRT_252)  # rf does not move vol
    assert m.risk_free_rate == rf


def test_compute_metrics_with_trade_pnl_uses_trades_for_hit_rate_and_profit_factor() -> None:
    # Arrange: wins 50 and 30, losses 20 and 10, one flat trade (not a win)
    #   hit rate = 2 / 5 = 0.4; profit factor = (50 + 30) / (20 + 10) = 2.666667
    trade_pnl = np.array([50.0, -20.0, 30.0, -10.0, 0.0])

    # Act
    m = compute_metrics(EQUITY, trade_pnl=trade_pnl)

    # Assert
    assert m.hit_rate_basis == HIT_RATE_BASIS_TRADES
    assert m.trades == 5
    assert m.hit_rate == approx(0.4)
    assert m.profit_factor == approx(80 / 30)


def test_compute_metrics_with_traded_value_annualises_turnover() -> None:
    # Arrange: mean traded = (0 + 50 + 20 + 0) / 4 = 17.5
    #   mean equity = (100 + 110 + 99 + 108.9) / 4 = 104.475
    #   turnover = 17.5 / 104.475 * 252 = 42.211055
    traded = np.array([0.0, 50.0, 20.0, 0.0])

    # Act
    m = compute_metrics(EQUITY, traded_value=traded)

    # Assert
    assert m.turnover == approx(17.5 / 104.475 * 252)
    assert m.turnover == approx(42.2110552763819)


def test_compute_metrics_with_weekly_periods_annualises_by_periods_per_year() -> None:
    # Arrange: same returns, 52 periods a year
    #   annualised return = 1.089^(52/3) - 1; volatility = 0.115470 * sqrt(52)

    # Act
    m = compute_metrics(EQUITY, periods_per_year=52)

    # Assert
    assert m.annualised_return == approx(1.089 ** (52 / 3) - 1)
    assert m.annualised_volatility == approx(math.sqrt(0.04 / 3) * math.sqrt(52))
    assert m.sharpe_ratio == approx((0.1 / 3) / math.sqrt(0.04 / 3) * math.sqrt(52))
    assert m.periods_per_year == 52


def test_drawdown_series_with_worked_example_matches_hand_arithmetic() -> None:
    # Arrange: running peaks 100, 110, 110, 110
    #   drawdowns 0, 0, 99/110 - 1 = -0.1, 108.9/110 - 1 = -0.01

    # Act
    dd = drawdown_series(EQUITY)

    # Assert
    np.testing.assert_allclose(dd, [0.0, 0.0, -0.1, -0.01], rtol=0, atol=1e-12)


def test_compute_metrics_with_var_example_picks_kth_worst_return() -> None:
    # Arrange: 40 returns: -0.040, -0.039, ..., -0.001 as losses, shuffled
    #   95 %: k = ceil(40 * 0.05) = 2 -> q = -0.039; tail {-0.040, -0.039}: ES = 0.0395
    #   99 %: k = ceil(40 * 0.01) = 1 -> q = -0.040; ES = 0.040
    returns = np.random.default_rng(7).permutation(-np.arange(1, 41) / 1000.0)
    equity = 100.0 * np.concatenate([[1.0], np.cumprod(1.0 + returns)])

    # Act
    m = compute_metrics(equity)

    # Assert
    assert m.var_95 == approx(0.039)
    assert m.es_95 == approx(0.0395)
    assert m.var_99 == approx(0.040)
    assert m.es_99 == approx(0.040)


def test_compute_metrics_with_twenty_returns_does_not_round_the_var_rank_up() -> None:
    # Arrange: n = 20, n * 0.05 = 1 exactly; 20 * (1 - 0.95) is 1.0000000000000009 in floats,
    #   which would wrongly pick the 2nd worst. Returns -0.05 (worst), -0.02, then gains.
    returns = np.array([-0.05, -0.02] + [0.01] * 18)
    equity = 100.0 * np.concatenate([[1.0], np.cumprod(1.0 + returns)])

    # Act
    m = compute_metrics(equity)

    # Assert
    assert m.var_95 == approx(0.05)
    assert m.es_95 == approx(0.05)


# ---------------------------------------------------------------- oracle: second implementation


@pytest.mark.parametrize(
    ("seed", "n"), [(1, 2), (2, 3), (3, 19), (4, 20), (5, 21), (6, 100), (7, 101), (8, 252), (9, 1000)]
)
def test_compute_metrics_with_random_curve_matches_loop_and_pandas_oracle(seed: int, n: int) -> None:
    # Arrange
    equity, benchmark = random_curve(seed, n)
    traded = np.abs(np.random.default_rng(seed + 100).normal(0.0, 50_000.0, n + 1))
    values = equity.tolist()
    r = loop_returns(values)
    series = pd.Series(values)
    pandas_r = series.pct_change().dropna()
    mean, std = statistics.fmean(r), statistics.stdev(r)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / n)
    growth = 1.0
    for x in r:
        growth *= 1.0 + x
    annualised = growth ** (252 / n) - 1
    drawdowns, longest, current = loop_drawdown(values)
    max_dd = min(drawdowns)
    slope, intercept = statistics.linear_regression(benchmark.tolist(), r)
    active = [a - b for a, b in zip(r, benchmark.tolist(), strict=True)]
    tracking = statistics.stdev(active) * SQRT_252
    pnl = [values[i] - values[i - 1] for i in range(1, len(values))]
    var_95, es_95 = loop_var_es(r, 5)
    var_99, es_99 = loop_var_es(r, 1)

    # Act
    m = compute_metrics(equity, benchmark_returns=benchmark, traded_value=traded)

    # Assert
    assert m.cumulative_return == approx(values[-1] / values[0] - 1)
    assert m.annualised_return == approx(annualised)
    assert m.annualised_volatility == approx(std * SQRT_252)
    assert m.annualised_volatility == approx(pandas_r.std() * SQRT_252)
    assert m.sharpe_ratio == approx(mean / std * SQRT_252)
    assert m.sortino_ratio == approx(mean / downside * SQRT_252)
    assert m.max_drawdown == approx(max_dd)
    assert m.max_drawdown == approx((series / series.cummax() - 1).min())
    assert (m.max_drawdown_duration, m.current_drawdown_duration) == (longest, current)
    if max_dd < 0:
        assert m.calmar_ratio == approx(annualised / abs(max_dd))
    else:
        assert math.isnan(m.calmar_ratio)
    assert m.beta == approx(slope)
    assert m.alpha == approx(intercept * 252)
    assert m.tracking_error == approx(tracking)
    assert m.information_ratio == approx(statistics.fmean(active) * 252 / tracking)
    assert m.hit_rate == approx(sum(1 for x in r if x > 0) / n)
    gross_loss = -sum(p for p in pnl if p < 0)
    if gross_loss > 0:
        assert m.profit_factor == approx(sum(p for p in pnl if p > 0) / gross_loss)
    else:
        assert math.isnan(m.profit_factor)
    assert m.turnover == approx(statistics.fmean(traded.tolist()) / statistics.fmean(values) * 252)
    assert (m.var_95, m.es_95) == (approx(var_95), approx(es_95))
    assert (m.var_99, m.es_99) == (approx(var_99), approx(es_99))
    assert m.var_95 == approx(-np.quantile(np.array(r), 0.05, method="inverted_cdf"))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_drawdown_series_with_random_curve_matches_explicit_loop(seed: int) -> None:
    # Arrange
    equity, _ = random_curve(seed, 300)
    expected, _, _ = loop_drawdown(equity.tolist())

    # Act
    dd = drawdown_series(equity)

    # Assert
    np.testing.assert_allclose(dd, expected, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- drawdown shapes


@pytest.mark.parametrize(
    ("equity", "max_drawdown", "longest", "current"),
    [
        # never below a previous peak (a repeat of the peak is not a drawdown)
        ([100, 101, 101, 105], 0.0, 0, 0),
        # 90 and 95 under the 100 peak; 100 again is a recovery; 104 under 105 is still open
        ([100, 90, 95, 100, 105, 104], 90 / 100 - 1, 2, 1),
        # unrecovered: 110, 100, 115 all under the 120 peak, to the end
        ([100, 120, 110, 100, 115], 100 / 120 - 1, 3, 3),
        # the deepest drawdown (-20 %, 1 session) is not the longest (4 sessions, -2 %)
        ([100, 80, 100, 99, 98, 99, 99.5, 101], 80 / 100 - 1, 4, 0),
        # a single session
        ([100], 0.0, 0, 0),
    ],
)
def test_compute_metrics_with_drawdown_shape_reports_depth_and_longest_spell(
    equity: list[float], max_drawdown: float, longest: int, current: int
) -> None:
    # Act
    m = compute_metrics(np.array(equity, dtype=float))

    # Assert
    assert m.max_drawdown == approx(max_drawdown)
    assert m.max_drawdown_duration == longest
    assert m.current_drawdown_duration == current


def test_compute_metrics_with_no_drawdown_reports_zero_and_nan_calmar() -> None:
    # Act
    m = compute_metrics(np.array([100.0, 101.0, 103.0, 104.0]))

    # Assert
    assert m.max_drawdown == 0.0
    assert m.max_drawdown_duration == 0
    assert math.isnan(m.calmar_ratio)
    assert math.isnan(m.sortino_ratio)  # no period below the target
    assert math.isnan(m.profit_factor)  # no losing day


# ---------------------------------------------------------------- undefined values


def test_compute_metrics_with_flat_curve_returns_nan_ratios() -> None:
    # Act
    m = compute_metrics(np.full(10, 100.0))

    # Assert
    assert m.annualised_volatility == 0.0
    assert m.cumulative_return == 0.0
    assert math.isnan(m.sharpe_ratio)
    assert math.isnan(m.sortino_ratio)
    assert math.isnan(m.calmar_ratio)
    assert m.max_drawdown == 0.0
    assert m.max_drawdown_duration == 0
    assert (m.var_95, m.es_95) == (0.0, 0.0)


def test_compute_metrics_with_constant_growth_returns_nan_sharpe() -> None:
    # Arrange: returns equal up to rounding (~1e-17): the spread is noise, not risk
    equity = 100.0 * 1.001 ** np.arange(50)

    # Act
    m = compute_metrics(equity)

    # Assert
    assert math.isnan(m.sharpe_ratio)
    assert m.annualised_return == pytest.approx(1.001**252 - 1, rel=1e-9)


@pytest.mark.parametrize("equity", [[], [100.0], [100.0, 105.0]])
def test_compute_metrics_with_fewer_than_two_returns_returns_nan_statistics(equity: list[float]) -> None:
    # Act
    m = compute_metrics(np.array(equity), benchmark_returns=np.zeros(max(len(equity) - 1, 0)))

    # Assert
    for name in ("annualised_volatility", "sharpe_ratio", "sortino_ratio", "alpha", "beta", "tracking_error",
                 "information_ratio", "var_95", "var_99", "es_95", "es_99"):
        assert math.isnan(getattr(m, name)), name


def test_compute_metrics_with_two_sessions_reports_returns() -> None:
    # Act
    m = compute_metrics(np.array([100.0, 105.0]))

    # Assert: one return of 5 %: cumulative 5 %, annualised 1.05^252 - 1
    assert m.cumulative_return == approx(0.05)
    assert m.annualised_return == approx(1.05**252 - 1)
    assert m.hit_rate == 1.0


def test_compute_metrics_with_benchmark_identical_to_portfolio_returns_beta_one_alpha_zero() -> None:
    # Arrange
    equity, _ = random_curve(21, 120)
    returns = equity[1:] / equity[:-1] - 1

    # Act
    m = compute_metrics(equity, benchmark_returns=returns.copy())

    # Assert
    assert m.beta == approx(1.0)
    assert m.alpha == pytest.approx(0.0, abs=1e-12)
    assert m.tracking_error == 0.0
    assert math.isnan(m.information_ratio)


def test_compute_metrics_with_constant_benchmark_returns_nan_beta() -> None:
    # Act
    m = compute_metrics(EQUITY, benchmark_returns=np.full(3, 0.001))

    # Assert
    assert math.isnan(m.beta) and math.isnan(m.alpha)
    assert m.tracking_error == approx(math.sqrt(0.04 / 3) * SQRT_252)  # active = r - const


def test_compute_metrics_without_benchmark_returns_nan_benchmark_metrics() -> None:
    # Act
    m = compute_metrics(EQUITY)

    # Assert
    assert all(math.isnan(v) for v in (m.alpha, m.beta, m.tracking_error, m.information_ratio))


@pytest.mark.parametrize("trade_pnl", [[], [10.0, 5.0]])
def test_compute_metrics_with_no_trades_or_no_losses_returns_nan_profit_factor(trade_pnl: list[float]) -> None:
    # Act
    m = compute_metrics(EQUITY, trade_pnl=np.array(trade_pnl))

    # Assert
    assert m.hit_rate_basis == HIT_RATE_BASIS_TRADES
    assert m.trades == len(trade_pnl)
    assert math.isnan(m.profit_factor)
    assert math.isnan(m.hit_rate) if not trade_pnl else m.hit_rate == 1.0


# ---------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("equity", "index"),
    [([100.0, 0.0, 50.0], 1), ([100.0, 90.0, -5.0], 2), ([100.0, 90.0, 80.0, math.nan], 3), ([math.inf, 1.0], 0)],
)
def test_compute_metrics_with_non_positive_or_nan_equity_raises_naming_index(equity: list[float], index: int) -> None:
    # Act / Assert
    with pytest.raises(InvalidValueError, match=rf"equity\[{index}\]"):
        compute_metrics(np.array(equity))
    with pytest.raises(InvalidValueError, match=rf"equity\[{index}\]"):
        drawdown_series(np.array(equity))


def test_compute_metrics_with_bad_equity_raises_an_error_catchable_as_value_error() -> None:
    # Act / Assert
    with pytest.raises(ValueError, match=r"equity\[1\] must be a finite number > 0, was -1.0"):
        compute_metrics(np.array([1.0, -1.0]))
    assert issubclass(InvalidValueError, PrometheusError)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"benchmark_returns": np.zeros(2)}, DataValidationError, r"len\(equity\) - 1 = 3\), had 2"),
        ({"benchmark_returns": np.array([0.0, math.nan, 0.0])}, InvalidValueError, r"benchmark_returns\[1\]"),
        ({"trade_pnl": np.array([1.0, math.inf])}, InvalidValueError, r"trade_pnl\[1\]"),
        ({"traded_value": np.zeros(3)}, DataValidationError, r"len\(equity\) = 4\), had 3"),
        ({"traded_value": np.array([0.0, 1.0, -2.0, 0.0])}, InvalidValueError, r"traded_value\[2\] must be >= 0"),
        ({"periods_per_year": 0}, InvalidValueError, "periods_per_year"),
        ({"risk_free_rate": math.nan}, InvalidValueError, "risk_free_rate"),
    ],
)
def test_compute_metrics_with_invalid_optional_input_raises_naming_it(kwargs: dict, error: type, message: str) -> None:
    # Act / Assert
    with pytest.raises(error, match=message):
        compute_metrics(EQUITY, **kwargs)


def test_compute_metrics_with_two_dimensional_equity_raises_data_validation_error() -> None:
    # Act / Assert
    with pytest.raises(DataValidationError, match=r"shape \(2, 2\)"):
        compute_metrics(np.ones((2, 2)))


# ---------------------------------------------------------------- the value


def test_to_dict_with_nan_metrics_is_json_safe_with_none() -> None:
    # Arrange
    m = compute_metrics(np.full(5, 100.0))

    # Act
    d = m.to_dict()

    # Assert
    assert list(d) == [f.name for f in dataclasses.fields(PerformanceMetrics)]
    assert d["sharpe_ratio"] is None and d["beta"] is None
    assert d["max_drawdown"] == 0.0 and d["max_drawdown_duration"] == 0 and d["hit_rate_basis"] == "daily"
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert all(type(v) in (int, float, str, type(None)) for v in d.values())


def test_performance_metrics_with_assignment_raises_frozen_error() -> None:
    # Arrange
    m = compute_metrics(EQUITY)

    # Act / Assert
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sharpe_ratio = 1.0  # type: ignore[misc]
