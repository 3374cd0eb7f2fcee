"""The ensemble: a confidence-weighted vote of the components, a regime filter, Platt calibration.

**Vote.** Each component gives a signed score in [-1, 1] per instrument per session (direction
x confidence): ``ml`` is the model's prediction ranked across the instruments at T and mapped
to [-1, 1]; ``rsi``, ``ema_cross`` and ``macd`` are the Lean alphas' active insight direction x
confidence (0 while no insight is active; NaN in their warm-up). The ensemble score is
``sum_c w_c s_c / sum_c w_c`` over the components present at the cell (the weights renormalise
when the model is absent, before the first promoted model, or an alpha is warming up).

**Regime filter** (``regime_filter``): ``scale`` multiplies a positive (long) score by
``1 - P(crisis)`` at T; ``block`` sets positive scores to 0 when the crisis state is the most
likely at T; ``off`` leaves them. Short scores are never scaled.

**Platt calibration.** ``fit_platt`` fits ``P(y > 0) = 1 / (1 + exp(-(a s + b)))`` by
maximum likelihood (scikit-learn's logistic regression, no penalty) on pairs (ensemble score at
t, forward return of t) whose label ended before the fit; every score used was itself out of
sample when it was made (the model scoring t was cut at or before t), so the calibration never
sees a score the model was trained on. The same rows give the OLS map from score to expected
forward return (``expected_return = c + d s``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Calibration", "apply_regime_filter", "fit_calibration", "ml_component", "vote"]


def ml_component(prediction: np.ndarray) -> np.ndarray:
    """The model's prediction ranked across each row's finite cells, mapped to [-1, 1]."""
    finite = np.isfinite(prediction)
    order = np.argsort(np.where(finite, prediction, np.inf), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(prediction.shape[1]), prediction.shape).copy(), axis=1)
    n = finite.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 1, 2.0 * ranks / np.maximum(n - 1, 1) - 1.0, 0.0)
    return np.where(finite, out, np.nan)


def vote(components: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The weighted mean of the components present at each cell (NaN where none is)."""
    total = None
    weight = None
    for name, s in components.items():
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        present = np.isfinite(s)
        term = np.where(present, s * w, 0.0)
        total = term if total is None else total + term
        wt = np.where(present, w, 0.0)
        weight = wt if weight is None else weight + wt
    if total is None:
        raise ValueError("vote: no component has a positive weight")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, np.nan)


def apply_regime_filter(score: np.ndarray, p_crisis: np.ndarray, crisis_is_likeliest: np.ndarray, mode: str) -> np.ndarray:
    """Scale or block long scores in the crisis state (see the module docstring); ``p_crisis`` per row."""
    if mode == "off":
        return score
    long = score > 0
    if mode == "scale":
        factor = np.where(np.isfinite(p_crisis), 1.0 - p_crisis, 1.0)[:, None]
        return np.where(long, score * factor, score)
    if mode == "block":
        return np.where(long & crisis_is_likeliest[:, None], 0.0, score)
    raise ValueError(f"regime_filter must be off, scale or block, was {mode!r}")


@dataclass(frozen=True)
class Calibration:
    """Platt and expected-return maps fitted at one cut."""

    a: float
    b: float
    intercept: float
    slope: float
    n_rows: int
    brier_in_sample: float

    def probability(self, score: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-(self.a * score + self.b)))

    def expected_return(self, score: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * score

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "er_intercept": self.intercept, "er_slope": self.slope,
                "n_rows": self.n_rows, "brier_in_sample": self.brier_in_sample}


def fit_calibration(score: np.ndarray, forward_return: np.ndarray, min_rows: int) -> Calibration | None:
    """Fit the Platt and OLS maps on the finite pairs; None with fewer than ``min_rows`` or one class."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(score) & np.isfinite(forward_return)
    s, y = score[ok], forward_return[ok]
    positive = y > 0
    if s.size < min_rows or positive.all() or not positive.any():
        return None
    model = LogisticRegression(C=1e6, solver="lbfgs", max_iter=200)
    model.fit(s[:, None], positive)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    var = float(np.var(s))
    slope = float(np.cov(s, y, bias=True)[0, 1] / var) if var > 0 else 0.0
    intercept = float(y.mean() - slope * s.mean())
    p = 1.0 / (1.0 + np.exp(-(a * s + b)))
    return Calibration(a, b, intercept, slope, int(s.size), float(np.mean((p - positive) ** 2)))
