"""Stability vectors and soft-target classes of a market's instruments (a plain library, no Dagster).

* ``engine``     — ``StabilityEngine``: per instrument per session, named stability components in
  [0, 1] (1 = most stable) and an overall score, from the market's panels (``MarketPanel``).
* ``classifier`` — ``SoftTargetClassifier``: per instrument per session, STABLE / WATCH / FRAGILE /
  TARGETABLE membership probabilities from the stability rows, the fragility engine's
  probabilities and (optionally) the regime probabilities.

The components and classes are defined in the two modules' docstrings.
"""

from prometheus_lib.stability.classifier import SOFT_TARGET_CLASSES, SoftTargetClassifier, SoftTargetResult
from prometheus_lib.stability.engine import COMPONENTS, StabilityEngine, StabilityResult

__all__ = ["COMPONENTS", "SOFT_TARGET_CLASSES", "SoftTargetClassifier", "SoftTargetResult", "StabilityEngine",
           "StabilityResult"]
