"""The fragility engine's target and its walk-forward schedule (pure functions of panel rows).

The target at row t is the holder's worst loss over the next N sessions, from total-return
prices (cumulated ``log_return``): ``exp(min_{s=1..N} (c[t+s] - c[t])) - 1``, known only when
the instrument is listed at t and has a return at each of t+1..t+N; the label is that loss
reaching ``-drawdown_threshold``. A label at t reads rows t+1..t+N, so it is known at T only
when t + N < T: the model fitted at panel row k trains on rows t <= k - N - 1.

Refits happen at rows k >= min_train with (k - min_train) % every == 0, anchored on the
panel's first row (so a row's model never depends on the range asked for); the model fitted
at k scores rows k .. k + every - 1.
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["drawdown_labels", "forward_drawdown", "refit_rows", "training_rows"]


def forward_drawdown(log_return: np.ndarray, horizon: int) -> np.ndarray:
    """Worst total-return loss over the next ``horizon`` rows, per (row, column); NaN when unknown.

    ``log_return`` is (rows, columns) of log total returns, NaN where missing. The value at t is
    ``exp(min_{s=1..horizon} sum(log_return[t+1 .. t+s])) - 1`` (negative for a loss, and never
    above ``exp(log_return[t+1]) - 1``). It is NaN when any of ``log_return[t+1 .. t+horizon]``
    is missing or lies beyond the last row.
    """
    rows, cols = log_return.shape
    out = np.full((rows, cols), np.nan)
    if rows <= horizon:
        return out
    finite = np.isfinite(log_return)
    cum = np.cumsum(np.where(finite, log_return, 0.0), axis=0)
    known = np.cumsum(finite, axis=0)
    frame = pl.DataFrame(cum, schema=[str(c) for c in range(cols)])
    trailing_min = frame.select(pl.all().rolling_min(horizon)).to_numpy()  # min over rows j-horizon+1 .. j
    complete = known[horizon:] - known[:-horizon] == horizon  # rows t+1..t+horizon all have a return
    worst = trailing_min[horizon:] - cum[:-horizon]
    out[:-horizon] = np.where(complete, np.expm1(worst), np.nan)
    return out


def observed_drawdown(log_return: np.ndarray, horizon: int) -> np.ndarray:
    """The worst loss over the returns observed in ``t+1 .. t+horizon`` (a missing return counts as no move).

    Defined for every row whose window lies inside the array, complete or not: a loss it shows
    happened, whatever the missing returns were (a delisting's last sessions, a data gap).
    """
    rows, cols = log_return.shape
    out = np.full((rows, cols), np.nan)
    if rows <= horizon:
        return out
    cum = np.cumsum(np.where(np.isfinite(log_return), log_return, 0.0), axis=0)
    trailing_min = pl.DataFrame(cum, schema=[str(c) for c in range(cols)]).select(
        pl.all().rolling_min(horizon)).to_numpy()
    out[:-horizon] = np.expm1(trailing_min[horizon:] - cum[:-horizon])
    return out


def drawdown_labels(log_return: np.ndarray, listed: np.ndarray, horizon: int, threshold: float) -> np.ndarray:
    """Float labels (1.0 event, 0.0 none, NaN unknown): the forward loss reaches ``-threshold``.

    An event when the returns observed in the horizon already lose ``threshold`` (so a name that
    crashes and then delists or stops trading within the horizon is an event, not a dropped row:
    no survivorship bias towards the names that kept printing); no event only when every return
    of the horizon is known (``forward_drawdown``) and the loss stays above ``-threshold``;
    unknown otherwise, and where the instrument is not listed at the row.
    """
    loss = forward_drawdown(log_return, horizon)
    seen = observed_drawdown(log_return, horizon)
    event = np.isfinite(seen) & (seen <= -threshold)
    label = np.where(event, 1.0, np.where(np.isfinite(loss), 0.0, np.nan))
    return np.where(listed, label, np.nan)


def refit_rows(n_rows: int, min_train: int, every: int) -> np.ndarray:
    """Panel rows at which a model is fitted: ``min_train, min_train + every, ...`` below ``n_rows``."""
    return np.arange(min_train, n_rows, every)


def training_rows(k: int, horizon: int, window: int, stride: int) -> np.ndarray:
    """Rows whose labels train the model fitted at row ``k``.

    Rows t in ``[k - window, k - horizon - 1]`` (every label ended strictly before k, t + horizon
    < k) with ``t % stride == 0``: labels of neighbouring rows overlap, so one row in ``stride``
    carries nearly all of the information, and anchoring on row 0 makes the selection independent
    of the range asked for.
    """
    lo, hi = max(0, k - window), k - horizon - 1
    if hi < lo:
        return np.arange(0)
    return np.arange(lo + (-lo) % stride, hi + 1, stride)
