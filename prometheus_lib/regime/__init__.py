"""The regime engine (a plain library, no Dagster): per market and session, filtered probabilities
over named regime states (calm / volatile / crisis by default) from a walk-forward Gaussian HMM.

* ``features`` — the per-session features, computed causally from a ``MarketPanel``;
* ``engine``   — ``RegimeEngine``: walk-forward fits and the filtered (never smoothed) posterior;
* ``baseline`` — ``naive_regime_states``: trailing market volatility against expanding quantiles.
"""

from prometheus_lib.regime.baseline import naive_regime_states
from prometheus_lib.regime.engine import RegimeEngine, RegimeFit, RegimeResult

__all__ = ["RegimeEngine", "RegimeFit", "RegimeResult", "naive_regime_states"]
