"""Technical indicators over a price panel, bit-for-bit TA-Lib's conventions, vectorised.

Inputs are ``float64`` arrays of shape ``(sessions, instruments)``; a 1-D array is one column
and the result is 1-D again. The loops run over sessions only: each step is one numpy
operation on a whole row of instruments, so a 2,600 x 500 panel takes a few tens of
milliseconds per indicator.

Conventions (each matches TA-Lib's function of the same name to ~1e-12 on a gap-free column;
the tests hold them to 1e-10):

``ema(values, period)``
    Seeded with the simple mean of the column's first ``period`` values, written at the row of
    the ``period``-th value; then ``ema = (x - ema) * k + ema`` with ``k = 2 / (period + 1)``.
``rsi(close, period)``
    Wilder's RSI: the first average gain and loss are the simple means of the first ``period``
    changes (first output at the column's ``period + 1``-th value), then Wilder's smoothing
    ``avg = (avg * (period - 1) + x) / period``; ``RSI = 100 * gain / (gain + loss)``. A zero
    average loss with a positive gain gives 100; a zero gain *and* loss (a column flat since its
    seed, where RSI is 0/0) gives 0, as TA-Lib does (TA-Lib >= 0.8 tests for an exact zero; the
    old C library 0.4/0.6 used a 1e-8 band instead, which only differs after ~250 flat sessions).
``macd(close, fast, slow, signal)``
    ``macd = ema_fast - ema_slow`` where, as in TA-Lib, the fast EMA is seeded at the *slow*
    EMA's seed row with the mean of the ``fast`` values ending there (not at the column's first
    ``fast`` values); the signal line is the EMA (``signal`` periods, seeded with a simple mean)
    of ``macd``; ``hist = macd - signal``. All three start at the column's
    ``slow + signal - 1``-th value (TA-Lib's lookback ``slow - 1 + signal - 1``); ``macd`` is
    NaN before that row too, like TA-Lib's.

Missing cells. A cell is valid when it is finite; NaN (or an infinity) means no price. Each
column starts at its own first valid cell (listing). At a missing cell after that (a gap, or
every row after a delisting) the output is NaN and the recursion's state is left unchanged:
the next valid value continues from the state before the gap, and the change across a gap is
taken between the two valid prices on either side of it. Equivalently, each column is computed
on its own sequence of valid values (the gaps removed) and the results are put back at those
cells; warm-up counts valid values, not sessions. TA-Lib itself cannot express gaps (a NaN
poisons every later value), so this rule is ours.

Every output at row ``T`` reads rows ``<= T`` only.
"""

from __future__ import annotations

import numpy as np

from prometheus_lib.errors import ConfigError, DataValidationError

__all__ = ["ema", "macd", "rsi"]


# ------------------------------------------------------------------ panel plumbing
def as_panel(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """``values`` as a 2-D float64 array (sessions x instruments) and whether it was 1-D."""
    panel = np.asarray(values, dtype=np.float64)
    if panel.ndim == 1:
        return panel[:, None], True
    if panel.ndim != 2:
        raise DataValidationError(
            f"a price panel must be 1-D (one instrument) or 2-D (sessions x instruments), got shape {panel.shape}"
        )
    return panel, False


def check_period(name: str, value: int, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``, else a ``ConfigError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Compressed:
    """Each column's valid values moved up to the top rows, in time order, and back.

    ``values[i, j]`` is column ``j``'s ``i``-th valid value (NaN past its count); computing a
    recursion on these rows and putting the results back implements the gap rule exactly.
    """

    def __init__(self, panel: np.ndarray) -> None:
        self.valid = np.isfinite(panel)
        self.order = np.argsort(~self.valid, axis=0, kind="stable")
        self.counts = self.valid.sum(axis=0)
        self.rows = int(self.counts.max()) if panel.size else 0
        self.values = np.take_along_axis(panel, self.order[: self.rows], axis=0)
        self.values[np.arange(self.rows)[:, None] >= self.counts] = np.nan

    def expand(self, compressed: np.ndarray) -> np.ndarray:
        """Results computed on ``values`` put back at the original valid cells (NaN elsewhere)."""
        out = np.full(self.valid.shape, np.nan)
        np.put_along_axis(out, self.order[: self.rows], compressed, axis=0)
        out[~self.valid] = np.nan
        return out


def _ema_rows(x: np.ndarray, period: int, start: int = 0) -> np.ndarray:
    """TA-Lib's EMA on aligned columns, seeded with the mean of ``x[start:start + period]``.

    The seed is written at row ``start + period - 1``; earlier rows are NaN. The sum runs in row
    order and the step is ``(x - prev) * k + prev``, as in TA-Lib's ``TA_INT_EMA``.
    """
    out = np.full(x.shape, np.nan)
    first = start + period - 1
    if first >= x.shape[0]:
        return out
    total = np.zeros(x.shape[1])
    for i in range(start, start + period):
        total += x[i]
    prev = total / period
    out[first] = prev
    k = 2.0 / (period + 1)
    for t in range(first + 1, x.shape[0]):
        prev = (x[t] - prev) * k + prev
        out[t] = prev
    return out


def _shaped(out: np.ndarray, one_d: bool) -> np.ndarray:
    return out[:, 0] if one_d else out


# ------------------------------------------------------------------ indicators
def ema(values: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average per column (TA-Lib ``EMA``), NaN in warm-up and at gaps."""
    period = check_period("period", period)
    panel, one_d = as_panel(values)
    packed = _Compressed(panel)
    return _shaped(packed.expand(_ema_rows(packed.values, period)), one_d)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's relative strength index per column (TA-Lib ``RSI``), in [0, 100]."""
    period = check_period("period", period)
    panel, one_d = as_panel(close)
    packed = _Compressed(panel)
    x = packed.values
    out = np.full(x.shape, np.nan)
    if x.shape[0] > period:
        gain = np.zeros(x.shape[1])
        loss = np.zeros(x.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            for t in range(1, period + 1):
                change = x[t] - x[t - 1]
                down = change < 0
                loss = loss - np.where(down, change, 0.0)
                gain = gain + np.where(down, 0.0, change)
            loss = loss / period
            gain = gain / period
            total = gain + loss
            out[period] = np.where(total != 0, 100.0 * (gain / total), 0.0)
            for t in range(period + 1, x.shape[0]):
                change = x[t] - x[t - 1]
                down = change < 0
                loss = loss * (period - 1)
                gain = gain * (period - 1)
                loss = loss - np.where(down, change, 0.0)
                gain = gain + np.where(down, 0.0, change)
                loss = loss / period
                gain = gain / period
                total = gain + loss
                out[t] = np.where(total != 0, 100.0 * (gain / total), 0.0)
    return _shaped(packed.expand(out), one_d)


def macd(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(macd, signal, hist)`` per column, as TA-Lib's ``MACD`` (fast seed aligned with the slow one)."""
    fast = check_period("fast", fast)
    slow = check_period("slow", slow)
    signal = check_period("signal", signal)
    if fast >= slow:
        raise ConfigError(f"the fast period must be shorter than the slow one, got fast={fast}, slow={slow}")
    panel, one_d = as_panel(close)
    packed = _Compressed(panel)
    x = packed.values
    slow_ema = _ema_rows(x, slow)
    fast_ema = _ema_rows(x, fast, start=slow - fast)
    line = fast_ema - slow_ema
    signal_line = _ema_rows(line, signal, start=slow - 1)
    line[: slow + signal - 2] = np.nan
    hist = line - signal_line
    return (
        _shaped(packed.expand(line), one_d),
        _shaped(packed.expand(signal_line), one_d),
        _shaped(packed.expand(hist), one_d),
    )
