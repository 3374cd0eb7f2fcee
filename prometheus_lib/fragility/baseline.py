"""The naive fragility baseline the engine must beat: trailing volatility.

``naive_fragility_scores`` is the panel's 21-session volatility at T (a row's score reads row T
only), the textbook proxy for the chance of a large move. Same shape as the engine's scores.
"""

from __future__ import annotations

import numpy as np

from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["naive_fragility_scores"]


def naive_fragility_scores(panel: MarketPanel) -> np.ndarray:
    """``vol_21`` per (session, instrument); NaN where the instrument is not listed or has none."""
    return np.where(panel.listed & np.isfinite(panel.vol_21), panel.vol_21, np.nan)
