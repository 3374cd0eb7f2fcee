"""Lean-style technical alphas (RSI, EMA cross, MACD) vectorised over a price panel.

``indicators`` computes the indicators with TA-Lib's conventions (and a stated rule for gaps);
``insights`` replays QuantConnect Lean's alpha models on them and turns their insights into a
direction, confidence and score per instrument per session. Plain numpy, no look-ahead.
"""

from __future__ import annotations

from prometheus_lib.assessment.alphas.indicators import ema, macd, rsi
from prometheus_lib.assessment.alphas.insights import (
    ALPHAS,
    AlphaSignals,
    compute_alphas,
    ema_cross_alpha,
    macd_alpha,
    rsi_alpha,
)

__all__ = [
    "ALPHAS",
    "AlphaSignals",
    "compute_alphas",
    "ema",
    "ema_cross_alpha",
    "macd",
    "macd_alpha",
    "rsi",
    "rsi_alpha",
]
