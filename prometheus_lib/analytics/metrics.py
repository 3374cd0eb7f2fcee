"""Performance metrics of a daily equity curve, in plain numpy.

Notation
--------
``e_0 .. e_n`` is the equity curve (one value per session, ``n + 1`` sessions), ``P`` is
``periods_per_year`` (252), and the ``n`` simple daily returns are::

    r_t = e_t / e_{t-1} - 1                          t = 1 .. n

The annual risk-free rate ``rf`` is turned into a daily rate geometrically and subtracted::

    rf_d = (1 + rf) ** (1 / P) - 1
    x_t  = r_t - rf_d                                (excess returns)

``mean`` is the arithmetic mean and ``std`` the sample standard deviation (``ddof=1``).

Formulas
--------
cumulative_return       ``e_n / e_0 - 1``
annualised_return       ``(e_n / e_0) ** (P / n) - 1`` (geometric, CAGR over ``n`` returns)
annualised_volatility   ``std(r) * sqrt(P)``
sharpe_ratio            ``mean(x) / std(x) * sqrt(P)``
sortino_ratio           ``mean(x) / DD * sqrt(P)`` with the downside deviation
                        ``DD = sqrt(mean(min(x_t, 0) ** 2))`` taken over *all* ``n`` periods
                        (periods above the target count as zero, they are not dropped). The target
                        is the daily risk-free rate, i.e. 0 with the default ``risk_free_rate=0``.
drawdown                ``d_t = e_t / max(e_0 .. e_t) - 1`` (``drawdown_series``), always ``<= 0``
max_drawdown            ``min(d_t)``, a negative fraction (``-0.25`` is a 25 % peak-to-trough
                        fall), ``0.0`` for a curve that never falls below a previous peak
max_drawdown_duration   the longest underwater spell: the largest number of consecutive sessions
                        with ``d_t < 0``. A spell that recovers ends at the last session before the
                        one that regains the peak (peak at ``i``, recovery at ``j`` gives
                        ``j - i - 1`` sessions); a spell still open at the end counts to the last
                        session. Measured on the whole curve, not only on the deepest drawdown.
current_drawdown_duration  the length of the spell still open at the last session (``0`` when
                        the curve ends at a peak); ``> 0`` says the curve has not recovered.
calmar_ratio            ``annualised_return / |max_drawdown|``
beta, alpha             OLS of the portfolio's excess returns on the benchmark's
                        (``y_t = b_t - rf_d``)::

                            beta    = sum((x - mean x)(y - mean y)) / sum((y - mean y) ** 2)
                            alpha_d = mean(x) - beta * mean(y)
                            alpha   = alpha_d * P                 (annualised arithmetically)
tracking_error          ``std(a) * sqrt(P)`` of the active returns ``a_t = r_t - b_t``
information_ratio       ``mean(a) * P / tracking_error``
hit_rate                with ``trade_pnl``: ``#(pnl > 0) / #trades``; without it
                        ``#(r_t > 0) / n``. A zero counts as not winning. ``hit_rate_basis``
                        says which (``"trades"`` or ``"daily"``).
profit_factor           ``sum(p > 0) / |sum(p < 0)|`` over the trades' P&L ``p`` when
                        ``trade_pnl`` is given, else over the daily P&L ``e_t - e_{t-1}``
                        (same basis as ``hit_rate``)
turnover                ``mean(traded_value) / mean(e) * P``: the annualised number of times the
                        average equity is traded. ``traded_value`` has one absolute traded value
                        per session (aligned with ``equity``).
var_95, var_99          historical value at risk, as a positive loss fraction:
                        ``VaR_c = -q`` where ``q`` is the empirical (inverted-CDF, Hyndman-Fan
                        type 1) quantile of the returns at the tail probability ``p = 1 - c``:
                        ``q = sort(r)[k - 1]`` with ``k = ceil(n * p)`` (1-based). ``q`` is always
                        an observed return, so at most a share ``p`` of the days lost more than
                        ``VaR``. This equals ``numpy.quantile(r, p, method="inverted_cdf")``;
                        ``k`` is computed in exact rational arithmetic so that ``n * 0.05`` does
                        not round up to the next rank. A VaR below zero means even the tail
                        quantile was a gain; it is reported as is, not clipped.
es_95, es_99            historical expected shortfall: ``-mean(r_t | r_t <= q)``, the mean loss
                        on the days at or beyond the VaR (ties with ``q`` included).

Undefined values
----------------
A metric that is undefined is ``NaN``, never an exception: statistics of returns
(volatility, Sharpe, Sortino, alpha, beta, tracking error, information ratio, VaR, ES) need at
least 2 returns; cumulative and annualised return need 1; a ratio whose denominator is zero is
NaN (Sharpe and alpha/beta on a zero-spread series, Sortino with no period below the target,
Calmar with no drawdown, information ratio with zero tracking error, profit factor with no
losses); benchmark metrics without ``benchmark_returns``; turnover without ``traded_value``;
hit rate and profit factor with no trades. A spread (standard deviation or downside deviation)
below ``1e-12`` counts as zero: a constant-growth curve has returns that differ only by rounding
(about ``1e-17``), and dividing by that noise would report an absurd ratio instead of NaN; no
real daily return series has a spread that small.

Invalid input raises: an equity value that is NaN, infinite or ``<= 0`` raises
``InvalidValueError`` naming its index, and so does a non-finite benchmark return, trade P&L or
traded value (or a negative traded value); arrays of the wrong shape or length raise
``DataValidationError``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from prometheus_lib.errors import DataValidationError, InvalidValueError

HIT_RATE_BASIS_TRADES = "trades"
HIT_RATE_BASIS_DAILY = "daily"

# Spreads below this are floating-point noise, not risk (see the module docstring).
_ZERO_SPREAD = 1e-12
# Tail probabilities of the VaR/ES confidence levels, exact so that ceil(n * p) is exact.
_TAIL_95 = Fraction(5, 100)
_TAIL_99 = Fraction(1, 100)
_NAN = float("nan")


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """Performance metrics of one equity curve; see the module docstring for every formula.

    Fractions (returns, volatility, drawdown, alpha, tracking error, VaR, ES) are plain
    fractions (``0.05`` is 5 %). Undefined values are ``NaN``.

    Attributes
    ----------
    sessions, periods
        Number of equity values (``n + 1``) and of returns (``n``).
    periods_per_year, risk_free_rate
        The annualisation factor and annual risk-free rate the metrics were computed with.
    max_drawdown_duration, current_drawdown_duration
        Longest underwater spell and the spell still open at the end, in sessions.
    hit_rate_basis
        ``"trades"`` when ``hit_rate`` and ``profit_factor`` come from per-trade P&L, ``"daily"``
        when they come from daily returns / daily P&L.
    trades
        Number of trades in ``trade_pnl`` (``0`` on the daily basis).
    turnover
        Annualised turnover as a multiple of mean equity (``12.0`` is twelve times a year).
    """

    sessions: int
    periods: int
    periods_per_year: int
    risk_free_rate: float
    cumulative_return: float
    annualised_return: float
    annualised_volatility: float
    sharpe_ratio: float
    sortino_ratio: float
    calmar_ratio: float
    max_drawdown: float
    max_drawdown_duration: int
    current_drawdown_duration: int
    alpha: float
    beta: float
    tracking_error: float
    information_ratio: float
    hit_rate: float
    hit_rate_basis: str
    profit_factor: float
    trades: int
    turnover: float
    var_95: float
    var_99: float
    es_95: float
    es_99: float

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a JSON-safe dict: plain Python numbers, NaN as ``None``.

        Returns
        -------
        dict[str, Any]
            One key per field, in field order.
        """
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, bool | str) or value is None:
                out[key] = value
            elif isinstance(value, int | np.integer):
                out[key] = int(value)
            else:
                f = float(value)
                out[key] = f if math.isfinite(f) else None
        return out


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Return the drawdown of an equity curve at each session.

    ``d_t = e_t / max(e_0 .. e_t) - 1``: zero at a running peak, negative below it.

    Parameters
    ----------
    equity
        One equity value per session, 1-D, every value finite and ``> 0``.

    Returns
    -------
    numpy.ndarray
        Float array of the same length as ``equity``, every value in ``(-1, 0]``.

    Raises
    ------
    InvalidValueError
        If an equity value is NaN, infinite or ``<= 0``; the message names its index.
    DataValidationError
        If ``equity`` is not 1-D.
    """
    e = _equity_array(equity)
    if e.size == 0:
        return e.copy()
    return e / np.maximum.accumulate(e) - 1.0


def compute_metrics(
    equity: np.ndarray,
    *,
    benchmark_returns: np.ndarray | None = None,
    trade_pnl: np.ndarray | None = None,
    traded_value: np.ndarray | None = None,
    periods_per_year: int = 252,
    risk_free_rate: float = 0.0,
) -> PerformanceMetrics:
    """Compute the performance metrics of a daily equity curve.

    Parameters
    ----------
    equity
        One equity value per session, 1-D, oldest first; every value finite and ``> 0``.
    benchmark_returns
        The benchmark's simple daily returns aligned with the portfolio's returns: one per
        return, so ``len(equity) - 1`` values. Without it alpha, beta, tracking error and the
        information ratio are NaN.
    trade_pnl
        Realised P&L of each closed trade. With it, ``hit_rate`` and ``profit_factor`` are
        per trade; without it they are per day.
    traded_value
        Absolute value traded at each session, aligned with ``equity`` (same length). Without
        it ``turnover`` is NaN.
    periods_per_year
        Sessions per year used to annualise.
    risk_free_rate
        Annual risk-free rate, compounded to a daily rate (see the module docstring).

    Returns
    -------
    PerformanceMetrics
        The metrics; undefined ones are NaN.

    Raises
    ------
    InvalidValueError
        If an equity value is NaN, infinite or ``<= 0``, a benchmark return, trade P&L or traded
        value is not finite, a traded value is negative, ``periods_per_year`` is not a positive
        integer or ``risk_free_rate`` is not finite and ``> -1``. The message names the index.
    DataValidationError
        If an array is not 1-D or ``benchmark_returns`` / ``traded_value`` has the wrong length.
    """
    is_integer = isinstance(periods_per_year, int | np.integer) and not isinstance(periods_per_year, bool)
    if not is_integer or periods_per_year <= 0:
        raise InvalidValueError(f"periods_per_year must be a positive integer, was {periods_per_year!r}")
    rf = float(risk_free_rate)
    if not math.isfinite(rf) or rf <= -1.0:
        raise InvalidValueError(f"risk_free_rate must be a finite annual rate > -1, was {risk_free_rate!r}")
    p = int(periods_per_year)

    e = _equity_array(equity)
    n = max(e.size - 1, 0)
    bench = None
    if benchmark_returns is not None:
        bench = _finite_array(benchmark_returns, "benchmark_returns")
        if bench.size != n:
            raise DataValidationError(
                f"benchmark_returns must have one return per portfolio return (len(equity) - 1 = {n}), "
                f"had {bench.size}"
            )
    pnl = None if trade_pnl is None else _finite_array(trade_pnl, "trade_pnl")
    traded = None
    if traded_value is not None:
        traded = _finite_array(traded_value, "traded_value")
        if traded.size != e.size:
            raise DataValidationError(
                f"traded_value must have one value per session (len(equity) = {e.size}), had {traded.size}"
            )
        negative = np.flatnonzero(traded < 0)
        if negative.size:
            i = int(negative[0])
            raise InvalidValueError(
                f"traded_value[{i}] must be >= 0 (an absolute traded value), was {float(traded[i])!r}"
            )

    r = e[1:] / e[:-1] - 1.0 if n else np.empty(0)
    rf_d = (1.0 + rf) ** (1.0 / p) - 1.0
    x = r - rf_d
    root_p = math.sqrt(p)

    cumulative = annualised = _NAN
    if n >= 1:
        growth = e[-1] / e[0]
        cumulative = float(growth - 1.0)
        with np.errstate(over="ignore"):  # a huge gain over a few days annualises to inf, not an error
            annualised = float(growth ** (p / n) - 1.0)

    volatility = sharpe = sortino = _NAN
    if n >= 2:
        sd = float(np.std(r, ddof=1))
        volatility = sd * root_p
        sd_x = float(np.std(x, ddof=1))
        if sd_x >= _ZERO_SPREAD:
            sharpe = float(np.mean(x)) / sd_x * root_p
        downside = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
        if downside >= _ZERO_SPREAD:
            sortino = float(np.mean(x)) / downside * root_p

    if e.size:
        dd = drawdown_series(e)
        max_dd = float(dd.min())
        longest, current = _underwater_spells(dd < 0)
    else:
        max_dd, longest, current = _NAN, 0, 0
    calmar = annualised / abs(max_dd) if max_dd < 0 else _NAN

    alpha = beta = tracking = information = _NAN
    if bench is not None and n >= 2:
        y = bench - rf_d
        dy = y - y.mean()
        if float(np.std(y, ddof=1)) >= _ZERO_SPREAD:
            beta = float(np.sum((x - x.mean()) * dy) / np.sum(dy * dy))
            alpha = (float(x.mean()) - beta * float(y.mean())) * p
        active = r - bench
        tracking = float(np.std(active, ddof=1)) * root_p
        if tracking >= _ZERO_SPREAD * root_p:
            information = float(np.mean(active)) * p / tracking

    if pnl is not None:
        basis, outcomes, trades = HIT_RATE_BASIS_TRADES, pnl, int(pnl.size)
        hit_source = pnl
    else:
        basis, outcomes, trades = HIT_RATE_BASIS_DAILY, np.diff(e), 0
        hit_source = r
    hit_rate = float(np.mean(hit_source > 0)) if hit_source.size else _NAN
    gross_loss = float(-outcomes[outcomes < 0].sum())
    profit_factor = float(outcomes[outcomes > 0].sum()) / gross_loss if gross_loss > 0 else _NAN

    turnover = _NAN
    if traded is not None and e.size:
        turnover = float(traded.mean() / e.mean() * p)

    var_95, es_95 = _historical_var_es(r, _TAIL_95)
    var_99, es_99 = _historical_var_es(r, _TAIL_99)

    return PerformanceMetrics(
        sessions=int(e.size),
        periods=n,
        periods_per_year=p,
        risk_free_rate=rf,
        cumulative_return=cumulative,
        annualised_return=annualised,
        annualised_volatility=volatility,
        sharpe_ratio=sharpe,
        sortino_ratio=sortino,
        calmar_ratio=calmar,
        max_drawdown=max_dd,
        max_drawdown_duration=longest,
        current_drawdown_duration=current,
        alpha=alpha,
        beta=beta,
        tracking_error=tracking,
        information_ratio=information,
        hit_rate=hit_rate,
        hit_rate_basis=basis,
        profit_factor=profit_factor,
        trades=trades,
        turnover=turnover,
        var_95=var_95,
        var_99=var_99,
        es_95=es_95,
        es_99=es_99,
    )


def _as_1d(values: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataValidationError(f"{name} must be a 1-D array of numbers, was {values!r}") from None
    if a.ndim != 1:
        raise DataValidationError(f"{name} must be a 1-D array, had shape {a.shape}")
    return a


def _equity_array(equity: Any, name: str = "equity") -> np.ndarray:
    e = _as_1d(equity, name)
    bad = np.flatnonzero(~(np.isfinite(e) & (e > 0)))
    if bad.size:
        i = int(bad[0])
        raise InvalidValueError(f"{name}[{i}] must be a finite number > 0, was {float(e[i])!r}")
    return e


def _finite_array(values: Any, name: str) -> np.ndarray:
    a = _as_1d(values, name)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        i = int(bad[0])
        raise InvalidValueError(f"{name}[{i}] must be finite, was {float(a[i])!r}")
    return a


def _underwater_spells(underwater: np.ndarray) -> tuple[int, int]:
    """Longest run of True and the run still open at the end."""
    longest = run = 0
    for flag in underwater:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest, run


def _historical_var_es(r: np.ndarray, tail: Fraction) -> tuple[float, float]:
    if r.size < 2:
        return _NAN, _NAN
    k = math.ceil(r.size * tail)  # exact: Fraction arithmetic, 1-based rank
    q = float(np.sort(r)[k - 1])
    return -q + 0.0, -float(r[r <= q].mean()) + 0.0  # + 0.0 turns -0.0 into 0.0


def historical_var_es(returns: np.ndarray, confidence: float) -> tuple[float, float]:
    """Return (VaR, ES) of ``returns`` at ``confidence`` (e.g. 0.95), as positive loss fractions.

    Same definition as ``compute_metrics`` (empirical inverted-CDF quantile, ES the mean at or
    below it); NaN for fewer than two returns. Non-finite returns are dropped.
    """
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    return _historical_var_es(r, _tail(confidence))


@functools.lru_cache(maxsize=64)
def _tail(confidence: float) -> Fraction:
    return Fraction(1) - Fraction(str(confidence))
