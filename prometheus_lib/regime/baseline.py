"""The naive regime baseline the HMM engine is measured against: trailing market volatility thresholds.

At each session T, ``v_T`` is the root mean square of the market return over the trailing
``baseline_vol_sessions`` sessions, and ``p_T`` its percentile rank among every ``v_t`` with
``t <= T`` (an expanding window: the thresholds use data up to T only). The state is the number
of cut levels ``c_j = 1 - (1 - j / K)^2`` (j = 1 .. K-1; 0.56 and 0.89 for K = 3) that ``p_T``
exceeds: calm below the 56th percentile of the history, crisis above the 89th. Sessions with
fewer than ``min_train_sessions`` volatility values up to T have no state (None).
"""

from __future__ import annotations

import numpy as np

from prometheus_lib.config.models import RegimeConfig
from prometheus_lib.market_state.panel import MarketPanel
from prometheus_lib.regime.features import trailing_rms

__all__ = ["naive_regime_states"]


def naive_regime_states(panel: MarketPanel, config: RegimeConfig) -> list[str | None]:
    """The baseline's state per panel row (None while its history is shorter than ``min_train_sessions``)."""
    k = config.n_states
    vol = trailing_rms(panel.market_return, config.baseline_vol_sessions)
    finite = np.isfinite(vol)
    history = vol[finite]
    # Percentile rank of each value among the values up to it (ties count as below or equal).
    rank = np.array([np.count_nonzero(history[: i + 1] <= v) / (i + 1) for i, v in enumerate(history)])
    cuts = 1.0 - (1.0 - np.arange(1, k) / k) ** 2
    state = np.searchsorted(cuts, rank, side="left")
    out: list[str | None] = [None] * panel.n_sessions
    for row, n_seen, s in zip(np.flatnonzero(finite), range(1, len(history) + 1), state, strict=True):
        if n_seen >= config.min_train_sessions:
            out[row] = config.state_names[s]
    return out
