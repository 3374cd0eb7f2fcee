"""The assessment model's label: the log total return over the horizon after the trade.

The decision at session T trades at T's close (``trade_at: close``, the backtest's default
fill) or at the next session's close (``next_close``, ``shift = 1``). The label of row T is the
sum of the panel's log total returns over rows ``T+1+shift .. T+h+shift``: it ends at row
``T+h+shift`` (``label_end``) and is known only from then on. A missing return inside the window
counts as 0 (a halt; after a delisting the holder has the last price), so a name that crashes
and delists keeps its loss in the label. The label is NaN when the instrument has no close at
``T+shift`` (nothing to buy) or the window runs past the panel's last row.

For training, labels are ranked per date across instruments (``cross_sectional_rank``): the
model learns the ordering, which is what the portfolio uses, not the market's direction.
"""

from __future__ import annotations

import numpy as np

from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.market_state.panel import MarketPanel

__all__ = ["forward_returns", "label_shift"]


def label_shift(config: AssessmentConfig) -> int:
    """Sessions between the decision and the trade: 0 at T's close, 1 at the next close."""
    return 0 if config.trade_at == "close" else 1


def forward_returns(panel: MarketPanel, horizon: int, shift: int = 0) -> np.ndarray:
    """(sessions, instruments) label: the log return over rows ``T+1+shift .. T+h+shift`` (see module)."""
    r = np.nan_to_num(panel.log_return, nan=0.0)
    t, n = r.shape
    cs = np.vstack([np.zeros((1, n)), np.cumsum(r, axis=0)])
    out = np.full((t, n), np.nan)
    last = t - 1 - horizon - shift  # the last row whose window fits in the panel
    if last >= 0:
        rows = np.arange(last + 1)
        out[:last + 1] = cs[rows + horizon + shift + 1] - cs[rows + shift + 1]
        held = np.isfinite(panel.close[shift:shift + last + 1])
        out[:last + 1] = np.where(held, out[:last + 1], np.nan)
    return out
