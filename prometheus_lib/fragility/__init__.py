"""The fragility alpha engine: per instrument per session, P(a large adverse move) and its drivers.

* ``engine``   — ``FragilityAlphaEngine`` (walk-forward LightGBM) and ``FragilityResult``;
* ``features`` — the causal features, each with its as-of rule;
* ``labels``   — the forward-drawdown target and the walk-forward schedule and training rows;
* ``baseline`` — ``naive_fragility_scores``, the trailing-volatility score to beat.

A plain library: no Dagster, and never the synthetic market or its truth.
"""

from prometheus_lib.fragility.baseline import naive_fragility_scores
from prometheus_lib.fragility.engine import FragilityAlphaEngine, FragilityResult

__all__ = ["FragilityAlphaEngine", "FragilityResult", "naive_fragility_scores"]
